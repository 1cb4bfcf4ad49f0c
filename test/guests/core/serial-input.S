/* Serial input with interrupts: the guest programs the 16550A (FIFO on, receive-data
 * interrupt enabled, OUT2 set), routes IOAPIC pin 4 (COM1) to vector 0x24, prints "READY",
 * and its interrupt handler drains the receive FIFO into a buffer. When a newline arrives it
 * prints "GOT <line>" and exits with 0; 40 interrupts at most, or 1 on a bounded timeout. */
.code32
.include "common.inc"
.equ LAPIC, 0xfee00000
.equ IOAPIC, 0xfec00000
.equ IDT, 0x7000
.equ COM1, 0x3f8
.globl _start
_start:
  load_flat_gdt
  mov $0x80000, %esp
  mov $0x24, %ecx                    /* IDT entry for vector 0x24 */
  mov $uart_handler, %eax
  call set_gate
  lidt idt_descriptor
  mov $0xff, %al                     /* mask the 8259s */
  out %al, $0x21
  out %al, $0xa1
  movl $0x1ff, LAPIC + 0xf0
  mov $4, %ecx                       /* pin 4 (COM1): vector 0x24 */
  mov $0x24, %eax
  call route_pin
  mov $COM1 + 2, %dx                 /* FCR: enable and clear FIFOs, trigger at 1 byte */
  mov $0x07, %al
  out %al, %dx
  mov $COM1 + 4, %dx                 /* MCR: DTR, RTS, OUT2 (interrupts reach the PIC/IOAPIC) */
  mov $0x0b, %al
  out %al, %dx
  mov $COM1 + 1, %dx                 /* IER: received data available */
  mov $0x01, %al
  out %al, %dx
  mov $COM1 + 2, %dx                 /* IIR: bits 7:6 = 11 means a 16550A with FIFOs */
  in %dx, %al
  and $0xc0, %al
  cmp $0xc0, %al
  jne no_fifo
  print ready
  sti
  mov $2000000, %ecx
1: cmpb $0, line_done
  jne 2f
  hlt
  loop 1b
  print timeout
  exit_with 1
2: cli
  print got
  lea line, %esi
  call print_string
  exit_with 0
no_fifo:
  print msg_no_fifo
  exit_with 2

uart_handler:
  pusha
3: mov $COM1 + 5, %dx                /* LSR: data ready? */
  in %dx, %al
  test $1, %al
  jz 4f
  mov $COM1, %dx
  in %dx, %al
  mov line_len, %ebx
  cmp $60, %ebx
  jae 3b
  mov %al, line(%ebx)
  incl line_len
  cmp $10, %al
  jne 3b
  movb $1, line_done
  jmp 3b
4: incl interrupts
  movl $0, LAPIC + 0xb0
  popa
  iret

define_interrupt_helpers
define_common
.align 4
interrupts: .long 0
line_len: .long 0
line_done: .byte 0
line: .fill 64, 1, 0
idt_descriptor:
  .word 256 * 8 - 1
  .long IDT
ready: .asciz "READY\n"
got: .asciz "GOT "
timeout: .asciz "FAIL no line received\n"
msg_no_fifo: .asciz "FAIL the UART is not a 16550A\n"
