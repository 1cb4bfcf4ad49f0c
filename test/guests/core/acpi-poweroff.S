/* ACPI power-off the way an OS does it: scan 0xE0000-0xFFFFF for the RSDP, follow the XSDT
 * to the FADT ("FACP"), read PM1a_CNT_BLK from it and write SLP_TYP=5 (the \_S5 value novm
 * uses) | SLP_EN. The VM must end as "poweroff"; reaching the end of this code is a failure. */
.code32
.include "common.inc"
.globl _start
_start:
  load_flat_gdt
  mov $0xe0000, %esi
1: cmpl $0x20445352, (%esi)            /* "RSD " */
  jne 2f
  cmpl $0x20525450, 4(%esi)           /* "PTR " */
  je 3f
2: add $16, %esi
  cmp $0x100000, %esi
  jb 1b
  print no_rsdp
  exit_with 1
3: mov 24(%esi), %ebx                  /* XsdtAddress (low half) */
  cmpl $0x54445358, (%ebx)            /* "XSDT" */
  jne bad_xsdt
  mov 4(%ebx), %ecx                    /* length */
  sub $36, %ecx
  shr $3, %ecx                         /* number of 64-bit entries */
  lea 36(%ebx), %edi
4: test %ecx, %ecx
  jz no_fadt
  mov (%edi), %eax
  cmpl $0x50434146, (%eax)            /* "FACP" */
  je 5f
  add $8, %edi
  dec %ecx
  jmp 4b
5: mov 64(%eax), %ebx                  /* PM1a_CNT_BLK (print clobbers edx) */
  print found
  mov %ebx, %edx
  mov $0x3400, %ax                     /* SLP_TYP 5 << 10 | SLP_EN */
  out %ax, %dx
  print still_running
  exit_with 2
bad_xsdt: print msg_bad_xsdt
  exit_with 3
no_fadt: print msg_no_fadt
  exit_with 4

define_common
no_rsdp: .asciz "FAIL no RSDP in 0xE0000-0xFFFFF\n"
msg_bad_xsdt: .asciz "FAIL RSDP does not point at an XSDT\n"
msg_no_fadt: .asciz "FAIL no FACP in the XSDT\n"
found: .asciz "PASS found PM1a_CNT in the FADT\n"
still_running: .asciz "FAIL still running after S5\n"
