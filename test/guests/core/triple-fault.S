/* Loads an empty IDT and raises an exception: #UD -> #DF -> triple fault. */
.code32
.globl _start
_start:
  lidt idtr
  ud2
idtr: .word 0
  .long 0
