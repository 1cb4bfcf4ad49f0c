/* Exit benchmark guest, 32-bit protected mode, flat segments, no paging.
 * ECX = number of port writes to 0x510, EBX = number of MMIO writes to 0xd0000000
 * (no RAM there: every write is an MMIO exit). Ends by writing 0 to the debug-exit port. */
.code32
.globl _start
_start:
  mov $0x510, %dx
1: test %ecx, %ecx
  jz 2f
  out %al, %dx
  dec %ecx
  jmp 1b
2: mov $0xd0000000, %edi
3: test %ebx, %ebx
  jz 4f
  movl %eax, (%edi)
  dec %ebx
  jmp 3b
4: mov $0x501, %dx
  xor %al, %al
  out %al, %dx
5: hlt
  jmp 5b
