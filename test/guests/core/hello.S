/* Smallest guest: prints a line on the UART at 0x3f8 and exits with status 42. */
.code32
.globl _start
_start:
  mov $0x3f8, %dx
  lea msg, %esi
1: lodsb
  test %al, %al
  jz 2f
  out %al, %dx
  jmp 1b
2: mov $0x501, %dx
  mov $42, %al
  out %al, %dx
3: hlt
  jmp 3b
msg: .asciz "Hello from a novm guest\n"
