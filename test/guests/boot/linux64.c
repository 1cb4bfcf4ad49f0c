/* A 64-bit "Linux-like" test guest, entered as the x86 64-bit boot protocol enters vmlinux
 * (Documentation/arch/x86/boot.rst): it checks the CPU state and the boot_params ("zero page",
 * zero-page.rst) that RSI points to, and reports PASS/FAIL lines on COM1. */
#include "common.h"

extern char _image_start[], _image_end[];

static u32 rd32(const u8 *bp, int off) { return *(const u32 *)(bp + off); }
static u64 rd64(const u8 *bp, int off) { return *(const u64 *)(bp + off); }

static u64 read_msr(u32 index) {
  u32 lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(index));
  return ((u64)hi << 32) | lo;
}

#define MAX_RANGES 128

void linux64_main(const u8 *bp) {
  puts_serial("novm linux64 guest\n");
  u64 cr0, cr4, flags;
  u16 cs, ds;
  __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
  __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
  __asm__ volatile("pushfq; popq %0" : "=r"(flags));
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  __asm__ volatile("mov %%ds, %0" : "=r"(ds));
  check((cr0 & 0x80000001u) == 0x80000001u && (cr4 & 0x20) != 0, "paging", "CR0.PE|PG or CR4.PAE clear");
  check((read_msr(0xC0000080) & 0x500) == 0x500, "long-mode", "EFER.LME|LMA clear");
  check((flags & 0x200) == 0, "interrupts-off", "IF set");
  check(cs == 0x10 && ds == 0x18, "selectors", "CS is not 0x10 or DS is not 0x18");
  check(((uptr)bp & 0xfff) == 0 && bp != 0, "boot-params-aligned", "RSI is not a page-aligned address");
  check(*(const u16 *)(bp + 0x1fe) == 0xAA55 && rd32(bp, 0x202) == 0x53726448, "setup-header", "boot_flag or HdrS magic missing");
  check(bp[0x210] == 0xff, "type-of-loader", "not 0xff");
  check((bp[0x211] & 1) != 0, "loadflags", "LOADED_HIGH clear");

  const char *cmdline = (const char *)(uptr)(rd32(bp, 0x228) | ((u64)rd32(bp, 0x0c8) << 32));
  puts_serial("cmdline: ");
  puts_serial(cmdline);
  puts_serial("\n");
  check(has_word(cmdline, "novm.test=linux64"), "cmdline", "novm.test=linux64 missing");

  struct mem_range ranges[MAX_RANGES];
  int count = bp[0x1e8];
  for (int i = 0; i < count && i < MAX_RANGES; i++) {
    ranges[i].address = rd64(bp, 0x2d0 + i * 20);
    ranges[i].length = rd64(bp, 0x2d0 + i * 20 + 8);
    ranges[i].type = rd32(bp, 0x2d0 + i * 20 + 16);
  }
  check_memory_map(ranges, count, cmdline, (uptr)_image_start, (uptr)_image_end);

  const char *rsdp = find_arg(cmdline, "rsdp");
  if (rsdp) check(rd64(bp, 0x070) == parse_number(rsdp), "acpi-rsdp-addr", "acpi_rsdp_addr differs from rsdp=");

  u64 initrd = rd32(bp, 0x218) | ((u64)rd32(bp, 0x0c0) << 32);
  u64 initrd_size = rd32(bp, 0x21c) | ((u64)rd32(bp, 0x0c4) << 32);
  if (find_arg(cmdline, "initrd_len")) {
    int placed = (initrd & 0xfff) == 0 && initrd >= (uptr)_image_end && initrd + initrd_size <= 0x100000000ull;
    check(placed, "initrd-placement", "not page-aligned, over the kernel or above 4 GiB");
    /* Reuse the len=/sum= checker with the initrd_ keys rewritten by hand. */
    const char *len = find_arg(cmdline, "initrd_len");
    const char *sum = find_arg(cmdline, "initrd_sum");
    int ok = sum && parse_number(len) == initrd_size && parse_number(sum) == fnv1a32((const u8 *)(uptr)initrd, initrd_size);
    check(ok, "initrd", "size or checksum differs from initrd_len=/initrd_sum=");
  } else {
    check(initrd == 0 && initrd_size == 0, "no-initrd", "ramdisk fields set without an initrd");
  }
  finish();
}
