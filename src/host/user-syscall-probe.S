/* Host probe guest: can this host's KVM run guest user space?
 * Starts in 32-bit protected mode, builds identity page tables (user-accessible), enters long
 * mode, sets up SYSCALL (STAR/LSTAR/SFMASK), drops to ring 3 with SYSRET, and makes a system
 * call from user mode. The entry point reports the privilege level it runs at: 0 on a correct
 * CPU, 3 on nested PVM hosts (see syscall_entry). */
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
  /* Report the privilege level the entry point runs at with a store to 0x30000000: not RAM
   * (the probe VM has 16 MiB), so it is an MMIO exit at any privilege level, unlike port I/O,
   * which ring 3 may not do. 0x50 + CPL; 0x5f if RAX did not survive the system call. */
  mov %cs, %ebx
  and $3, %ebx
  add $0x50, %ebx
  cmp $0x1234, %rax
  je 3f
  mov $0x5f, %ebx
3: movl %ebx, 0x30000000
  /* The same value on the debug-exit port, for QEMU (isa-debug-exit); at ring 3 it faults. */
  mov $0x501, %dx
  mov %bl, %al
  out %al, %dx
4: jmp 4b
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
