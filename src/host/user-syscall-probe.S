/* Host probe guest: can this host's KVM run guest user space?
 * Starts in 32-bit protected mode, builds identity page tables (user-accessible), enters long
 * mode, sets up SYSCALL (STAR/LSTAR/SFMASK), drops to ring 3 with SYSRET, and makes a system
 * call from user mode. The entry point checks it really runs at ring 0 and reports 0x55 on the
 * debug-exit port; if the entry runs at ring 3 (as on nested PVM hosts) its port write faults
 * and with no IDT the guest triple-faults. */
.code32
.globl _start
_start:
  jmp entry
/* A multiboot v1 header (a.out kludge) so the same binary also runs under QEMU's -kernel,
 * which is how the probe itself is validated on a software CPU. */
.align 4
mb_header:
  .long 0x1badb002
  .long 0x00010000
  .long -(0x1badb002 + 0x00010000)
  .long mb_header
  .long _start
  .long 0
  .long 0
  .long entry
entry:
  mov $0x200000, %edi
  mov $(3 * 1024), %ecx
  xor %eax, %eax
  rep stosl
  movl $0x201007, 0x200000
  movl $0x202007, 0x201000
  mov $0x202000, %edi
  mov $0x87, %eax
  mov $512, %ecx
1: mov %eax, (%edi)
  movl $0, 4(%edi)
  add $0x200000, %eax
  add $8, %edi
  loop 1b
  mov %cr4, %eax
  or $0x20, %eax
  mov %eax, %cr4
  mov $0x200000, %eax
  mov %eax, %cr3
  mov $0xc0000080, %ecx
  rdmsr
  or $0x101, %eax
  wrmsr
  lgdt gdtr
  mov %cr0, %eax
  or $0x80000001, %eax
  mov %eax, %cr0
  ljmp $0x08, $long_mode
.code64
long_mode:
  mov $0x10, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov $0x90000, %rsp
  /* STAR: SYSCALL CS=0x08 SS=0x10; SYSRET base 0x18 -> SS=0x20|3, CS=0x28|3 */
  mov $0xc0000081, %ecx
  xor %eax, %eax
  mov $0x00180008, %edx
  wrmsr
  mov $0xc0000082, %ecx
  lea syscall_entry(%rip), %rax
  mov %rax, %rdx
  shr $32, %rdx
  wrmsr
  mov $0xc0000084, %ecx
  mov $0x200, %eax
  xor %edx, %edx
  wrmsr
  lea user_code(%rip), %rcx
  mov $0x2, %r11
  mov $0x300000, %rsp
  sysretq
user_code:
  mov $0x1234, %rax
  syscall
2: jmp 2b
syscall_entry:
  mov %cs, %bx
  and $3, %bx
  jnz 3f
  cmp $0x1234, %rax
  jne 3f
  mov $0x501, %dx
  mov $0x55, %al
  out %al, %dx
3: mov $0x501, %dx
  mov $0x66, %al
  out %al, %dx
4: hlt
  jmp 4b
.align 16
gdt:
  .quad 0
  .quad 0x00af9a000000ffff
  .quad 0x00cf92000000ffff
  .quad 0x00cffa000000ffff
  .quad 0x00cff2000000ffff
  .quad 0x00affa000000ffff
gdt_end:
gdtr:
  .word gdt_end - gdt - 1
  .long gdt
