/* 64-bit entry of the Linux-like guest: entered like vmlinux's startup_64 (long mode, identity
 * paging, RSI = boot_params). */
    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    mov %rsi, %rdi
    lea _stack_top(%rip), %rsp
    call linux64_main
1:  hlt
    jmp 1b
