/* SMP: the BSP starts every AP with INIT-SIPI-SIPI through its local APIC; each AP, in real
 * mode, records its initial APIC id (CPUID leaf 1) and counts itself in. ECX = number of
 * vCPUs. Passes when every AP id 1..N-1 checked in exactly once. */
.code32
.include "common.inc"
.equ LAPIC, 0xfee00000
.equ TRAMPOLINE, 0x8000
.equ COUNTER, 0x9000
.equ SEEN, 0x9100
.globl _start
_start:
  load_flat_gdt
  mov %ecx, %ebp                   /* vCPU count */
  movl $0, COUNTER
  mov $SEEN, %edi                  /* clear the seen[] bytes */
  mov $256, %ecx
  xor %eax, %eax
  rep stosb
  mov $trampoline_start, %esi      /* copy the AP trampoline below 1 MiB */
  mov $TRAMPOLINE, %edi
  mov $(trampoline_end - trampoline_start), %ecx
  rep movsb
  orl $0x100, LAPIC + 0xf0         /* enable the local APIC (spurious vector register) */
  movl $0x000c4500, LAPIC + 0x300  /* INIT to all excluding self */
  call delay
  movl $0x000c4608, LAPIC + 0x300  /* SIPI, vector 0x08 -> 0x8000 */
  call delay
  movl $0x000c4608, LAPIC + 0x300
  mov %ebp, %ebx
  dec %ebx                         /* expected APs */
  mov $2000000, %ecx               /* bounded wait */
1: cmp COUNTER, %ebx
  je 2f
  pause
  loop 1b
  print fail_count
  exit_with 1
2: mov $1, %ecx                    /* every id 1..N-1 seen exactly once */
3: cmp %ebp, %ecx
  jae 4f
  cmpb $1, SEEN(%ecx)
  jne 5f
  inc %ecx
  jmp 3b
5: print fail_ids
  exit_with 2
4: print pass
  exit_with 0
6: hlt
  jmp 6b

delay:
  mov $2000, %ecx
1: pause
  loop 1b
  ret

.code16
trampoline_start:
  cli
  xor %ax, %ax
  mov %ax, %ds
  mov $1, %eax
  cpuid
  shr $24, %ebx                    /* initial APIC id */
  incb SEEN(%bx)
  lock incl COUNTER
7: hlt
  jmp 7b
trampoline_end:
.code32

define_common
pass: .asciz "PASS all vCPUs came up\n"
fail_count: .asciz "FAIL not every AP checked in\n"
fail_ids: .asciz "FAIL wrong AP APIC ids\n"
