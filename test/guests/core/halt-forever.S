/* A guest that halts with interrupts off: the vCPU sleeps in KVM_RUN for good. */
.code32
.globl _start
_start:
  cli
1: hlt
  jmp 1b
