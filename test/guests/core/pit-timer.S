/* The PIT reaches the IOAPIC on pin 2, as the MADT's override IRQ 0 -> GSI 2 says: the guest
 * routes pin 2 to vector 0x40 (and pin 0 to 0x41, which must stay silent), starts PIT channel 0
 * at about 1 kHz and waits for 5 ticks. */
.code32
.include "common.inc"
.equ LAPIC, 0xfee00000
.equ IOAPIC, 0xfec00000
.equ IDT, 0x7000
.globl _start
_start:
  load_flat_gdt
  mov $0x80000, %esp
  mov $0x40, %ecx
  mov $tick_pin2, %eax
  call set_gate
  mov $0x41, %ecx
  mov $tick_pin0, %eax
  call set_gate
  lidt idt_descriptor
  mov $0xff, %al                     /* mask the 8259s */
  out %al, $0x21
  out %al, $0xa1
  movl $0x1ff, LAPIC + 0xf0
  mov $2, %ecx
  mov $0x40, %eax
  call route_pin
  mov $0, %ecx
  mov $0x41, %eax
  call route_pin
  mov $0x34, %al                     /* PIT channel 0, lobyte/hibyte, rate generator */
  out %al, $0x43
  mov $1193, %ax                     /* ~1 kHz */
  out %al, $0x40
  mov %ah, %al
  out %al, $0x40
  sti
  mov $3000000, %ecx
1: cmpl $5, ticks2
  jae 2f
  hlt
  loop 1b
  cli
  print msg_none
  exit_with 1
2: cli
  cmpl $0, ticks0
  jne 3f
  print pass
  exit_with 0
3: print msg_pin0
  exit_with 2



tick_pin2:
  incl ticks2
  movl $0, LAPIC + 0xb0
  iret
tick_pin0:
  incl ticks0
  movl $0, LAPIC + 0xb0
  iret

define_interrupt_helpers
define_common
.align 4
ticks2: .long 0
ticks0: .long 0
idt_descriptor:
  .word 256 * 8 - 1
  .long IDT
pass: .asciz "PASS PIT ticks arrive on IOAPIC pin 2\n"
msg_none: .asciz "FAIL no PIT ticks on IOAPIC pin 2\n"
msg_pin0: .asciz "FAIL PIT ticks also arrive on IOAPIC pin 0\n"
