/* Interrupts: the guest routes IOAPIC pins 5 and 6 to vectors 0x30 and 0x31, then asks the
 * host (a write of the pin number to port 0x520) to raise pin 5 with KVM_IRQ_LINE, pin 6
 * through an irqfd, and an MSI to vector 0x32 (value 7). Each must arrive exactly once.
 * Then it writes 100 times to MMIO 0xd0001000, which the host bound to an ioeventfd
 * (the host checks the count and that none of them became an exit). */
.code32
.include "common.inc"
.equ LAPIC, 0xfee00000
.equ IOAPIC, 0xfec00000
.equ IDT, 0x7000
.equ DOORBELL, 0x520
.globl _start
_start:
  load_flat_gdt
  mov $0x80000, %esp
  xor %ecx, %ecx                     /* IDT: every vector to `unexpected`... */
1: mov $unexpected, %eax
  call set_gate
  inc %ecx
  cmp $256, %ecx
  jne 1b
  mov $0x30, %ecx                    /* ...then 0x30/0x31/0x32 to their handlers */
  mov $handler_a, %eax
  call set_gate
  mov $0x31, %ecx
  mov $handler_b, %eax
  call set_gate
  mov $0x32, %ecx
  mov $handler_c, %eax
  call set_gate
  lidt idt_descriptor
  mov $0xff, %al                     /* mask both 8259s: only the IOAPIC delivers */
  out %al, $0x21
  out %al, $0xa1
  movl $0x1ff, LAPIC + 0xf0          /* LAPIC on, spurious vector 0xff */
  mov $5, %ecx                       /* pin 5 -> vector 0x30, edge, fixed, APIC 0 */
  mov $0x30, %eax
  call route_pin
  mov $6, %ecx
  mov $0x31, %eax
  call route_pin
  sti

  mov $5, %al                        /* KVM_IRQ_LINE on GSI 5 */
  mov $count_a, %edi
  call ring_and_wait
  jnz fail_a
  print pass_a
  mov $6, %al                        /* irqfd on GSI 6 */
  mov $count_b, %edi
  call ring_and_wait
  jnz fail_b
  print pass_b
  mov $7, %al                        /* MSI to vector 0x32 */
  mov $count_c, %edi
  call ring_and_wait
  jnz fail_c
  print pass_c
  cmpl $0, count_bad
  jne fail_bad

  mov $100, %ecx                     /* ioeventfd: 100 writes, no exits */
  mov $0xd0001000, %edi
2: movl %ecx, (%edi)
  loop 2b
  print pass_d
  exit_with 0

fail_a: print msg_fail_a
  exit_with 1
fail_b: print msg_fail_b
  exit_with 2
fail_c: print msg_fail_c
  exit_with 3
fail_bad: print msg_fail_bad
  exit_with 4

/* Writes AL to the doorbell, then waits (halting) until the counter at EDI is 1.
 * Returns ZF set on success. */
ring_and_wait:
  mov $DOORBELL, %dx
  out %al, %dx
  mov $100000, %ecx
1: cmpl $1, (%edi)
  je 2f
  hlt                                /* an interrupt (or the timeout loop) wakes us */
  loop 1b
  cmpl $1, (%edi)
2: ret



handler_a:
  incl count_a
  movl $0, LAPIC + 0xb0
  iret
handler_b:
  incl count_b
  movl $0, LAPIC + 0xb0
  iret
handler_c:
  incl count_c
  movl $0, LAPIC + 0xb0
  iret
unexpected:
  incl count_bad
  movl $0, LAPIC + 0xb0
  iret

define_interrupt_helpers
define_common
.align 4
count_a: .long 0
count_b: .long 0
count_c: .long 0
count_bad: .long 0
idt_descriptor:
  .word 256 * 8 - 1
  .long IDT
pass_a: .asciz "PASS IOAPIC interrupt from KVM_IRQ_LINE\n"
pass_b: .asciz "PASS IOAPIC interrupt from an irqfd\n"
pass_c: .asciz "PASS MSI\n"
pass_d: .asciz "PASS ioeventfd writes done\n"
msg_fail_a: .asciz "FAIL KVM_IRQ_LINE interrupt\n"
msg_fail_b: .asciz "FAIL irqfd interrupt\n"
msg_fail_c: .asciz "FAIL MSI\n"
msg_fail_bad: .asciz "FAIL unexpected interrupt vector\n"
