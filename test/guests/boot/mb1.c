/* Multiboot v1 test guest: checks what the boot loader handed over (multiboot 0.6.96, 3.2/3.3)
 * and reports PASS/FAIL lines on COM1. Command line conventions: see docs/boot.md. */
#include "common.h"

struct mb1_info {
  u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  u32 syms[4];
  u32 mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name;
} __attribute__((packed));

struct mb1_module {
  u32 mod_start, mod_end, string, reserved;
} __attribute__((packed));

struct mb1_mmap {
  u32 size;
  u64 base, length;
  u32 type;
} __attribute__((packed));

extern char _image_start[], _image_end[];

#define MAX_RANGES 64

void mb1_main(u32 magic, const struct mb1_info *info) {
  puts_serial("novm multiboot1 guest\n");
  check(magic == 0x2BADB002, "magic", "EAX is not 0x2BADB002");
  const u32 wanted = (1u << 0) | (1u << 2) | (1u << 3) | (1u << 6);
  check((info->flags & wanted) == wanted, "info-flags", "mem, cmdline, mods or mmap flag missing");
  const char *cmdline = (info->flags & (1u << 2)) ? (const char *)(uptr)info->cmdline : "";
  puts_serial("cmdline: ");
  puts_serial(cmdline);
  puts_serial("\n");
  check(has_word(cmdline, "novm.test=mb1"), "cmdline", "novm.test=mb1 missing");
  check(info->mem_lower > 0 && info->mem_lower <= 640 && info->mem_upper > 0, "meminfo", "mem_lower/mem_upper out of range");
  if (info->flags & (1u << 9)) check(str_len((const char *)(uptr)info->boot_loader_name) > 0, "loader-name", "empty");

  struct mem_range ranges[MAX_RANGES];
  int count = 0;
  if (info->flags & (1u << 6)) {
    uptr at = info->mmap_addr;
    uptr end = at + info->mmap_length;
    while (at < end && count < MAX_RANGES) {
      const struct mb1_mmap *e = (const struct mb1_mmap *)at;
      ranges[count].address = e->base;
      ranges[count].length = e->length;
      ranges[count].type = e->type;
      count++;
      at += e->size + 4; /* the size field does not count itself */
    }
  }
  check_memory_map(ranges, count, cmdline, (uptr)_image_start, (uptr)_image_end);

  const char *mods = find_arg(cmdline, "mods");
  u32 expected_mods = mods ? (u32)parse_number(mods) : 0;
  check(info->mods_count == expected_mods, "module-count", "mods_count differs from mods=");
  const struct mb1_module *m = (const struct mb1_module *)(uptr)info->mods_addr;
  for (u32 i = 0; i < info->mods_count && i < 8; i++) {
    char what[] = "module0";
    what[6] = (char)('0' + i);
    const char *spec = (const char *)(uptr)m[i].string;
    int placed = (m[i].mod_start & 0xfff) == 0 && m[i].mod_start >= (uptr)_image_end && m[i].mod_end >= m[i].mod_start;
    check(placed, "module-placement", "not page-aligned or overlaps the kernel");
    check_blob(what, (const u8 *)(uptr)m[i].mod_start, m[i].mod_end - m[i].mod_start, spec);
  }
  finish();
}
