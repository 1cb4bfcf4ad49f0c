/* Multiboot2 header (architecture 0 = i386) asking for the command line, modules, basic memory
 * information and the memory map, and the 32-bit entry: EAX = 0x36D76289, EBX = information. */
#define MB2_MAGIC 0xE85250D6

    .section .multiboot, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + 0 + (mb2_header_end - mb2_header))
    /* information request tag: cmdline (1), modules (3), basic meminfo (4), mmap (6) */
    .balign 8
    .short 1, 0
    .long 24
    .long 1, 3, 4, 6
    /* module alignment tag */
    .balign 8
    .short 6, 0
    .long 8
    /* end tag */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

    .text
    .code32
    .globl _start
_start:
    cli
    mov $_stack_top, %esp
    push %ebx
    push %eax
    call mb2_main
1:  hlt
    jmp 1b
