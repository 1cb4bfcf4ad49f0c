/* Multiboot v1 entry of the virtio test guest: loads a flat GDT (0x08 code, 0x10 data) so that
 * interrupt gates have a valid code selector, sets up a stack and calls virtio_main(magic, info).
 * The interrupt stubs save the caller-saved state and call C handlers (virtio.c). */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00000003

    .section .multiboot, "a"
    .balign 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)

    .text
    .code32
    .globl _start
_start:
    cli
    mov %eax, %esi
    lgdt gdt_descriptor
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $_stack_top, %esp
    push %ebx
    push %esi
    call virtio_main
2:  hlt
    jmp 2b

/* One stub per device vector (0x40 + n), the LAPIC timer and everything else. */
.macro stub name, handler, arg
    .globl \name
\name:
    pusha
    push $\arg
    call \handler
    add $4, %esp
    popa
    iret
.endm
    stub isr_device0, device_irq, 0
    stub isr_device1, device_irq, 1
    stub isr_timer, timer_irq, 0
    stub isr_unexpected, unexpected_irq, 0

    .section .rodata
    .balign 16
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt
