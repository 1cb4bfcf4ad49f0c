/* A guest that never ends: spins in kernel mode forever. The host must still stop it. */
.code32
.globl _start
_start:
1: jmp 1b
