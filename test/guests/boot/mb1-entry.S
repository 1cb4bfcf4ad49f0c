/* Multiboot v1 header and 32-bit entry. Flags: bit 0 (page-aligned modules), bit 1 (memory
 * information). Entered with EAX = 0x2BADB002, EBX = the information structure. */
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
    mov $_stack_top, %esp
    push %ebx
    push %eax
    call mb1_main
1:  hlt
    jmp 1b
