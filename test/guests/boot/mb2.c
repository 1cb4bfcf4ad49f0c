/* Multiboot2 test guest: walks the boot information tags (multiboot2 spec 1.6, 3.6) and checks
 * them; reports PASS/FAIL lines on COM1. Command line conventions: see docs/boot.md. */
#include "common.h"

struct tag {
  u32 type, size;
};

extern char _image_start[], _image_end[];

#define MAX_RANGES 64

static const struct tag *next_tag(const struct tag *t) { return (const struct tag *)(((uptr)t + t->size + 7) & ~(uptr)7); }

void mb2_main(u32 magic, const u8 *info) {
  puts_serial("novm multiboot2 guest\n");
  check(magic == 0x36D76289, "magic", "EAX is not 0x36D76289");
  check(((uptr)info & 7) == 0, "info-aligned", "not 8-byte aligned");
  u32 total = *(const u32 *)info;
  const char *cmdline = "";
  const char *loader = 0;
  int have_meminfo = 0, have_mmap = 0, have_end = 0, have_rsdp = 0, mods = 0;
  u32 mem_lower = 0, mem_upper = 0;
  struct mem_range ranges[MAX_RANGES];
  int count = 0;
  const struct tag *module_tags[8];
  const struct tag *t = (const struct tag *)(info + 8);
  while ((const u8 *)t < info + total) {
    if (t->type == 0) {
      have_end = t->size == 8;
      break;
    }
    const u8 *body = (const u8 *)t + 8;
    switch (t->type) {
    case 1: cmdline = (const char *)body; break;
    case 2: loader = (const char *)body; break;
    case 3: if (mods < 8) module_tags[mods] = t; mods++; break;
    case 4: have_meminfo = 1; mem_lower = ((const u32 *)body)[0]; mem_upper = ((const u32 *)body)[1]; break;
    case 6: {
      have_mmap = 1;
      u32 entry_size = ((const u32 *)body)[0];
      for (const u8 *e = body + 8; e + entry_size <= (const u8 *)t + t->size && count < MAX_RANGES && entry_size >= 24; e += entry_size) {
        ranges[count].address = *(const u64 *)e;
        ranges[count].length = *(const u64 *)(e + 8);
        ranges[count].type = *(const u32 *)(e + 16);
        count++;
      }
      break;
    }
    case 14:
    case 15: {
      const char *sig = "RSD PTR ";
      int ok = 1;
      for (int i = 0; i < 8; i++) ok &= body[i] == (u8)sig[i];
      have_rsdp = ok;
      break;
    }
    default: break;
    }
    t = next_tag(t);
  }
  check(have_end, "end-tag", "no end tag within total_size");
  puts_serial("cmdline: ");
  puts_serial(cmdline);
  puts_serial("\n");
  check(has_word(cmdline, "novm.test=mb2"), "cmdline", "novm.test=mb2 missing");
  check(loader && str_len(loader) > 0, "loader-name", "no boot loader name tag");
  check(have_meminfo && mem_lower > 0 && mem_lower <= 640 && mem_upper > 0, "meminfo", "basic memory information missing or wrong");
  check(have_mmap, "mmap-tag", "no memory map tag");
  check_memory_map(ranges, count, cmdline, (uptr)_image_start, (uptr)_image_end);
  if (has_word(cmdline, "rsdp=1")) check(have_rsdp, "acpi-rsdp", "no ACPI RSDP tag with an RSDP signature");

  const char *want = find_arg(cmdline, "mods");
  check(mods == (want ? (int)parse_number(want) : 0), "module-count", "module tags differ from mods=");
  for (int i = 0; i < mods && i < 8; i++) {
    char what[] = "module0";
    what[6] = (char)('0' + i);
    const u32 *m = (const u32 *)((const u8 *)module_tags[i] + 8);
    int placed = (m[0] & 0xfff) == 0 && m[0] >= (uptr)_image_end && m[1] >= m[0];
    check(placed, "module-placement", "not page-aligned or overlaps the kernel");
    check_blob(what, (const u8 *)(uptr)m[0], m[1] - m[0], (const char *)(m + 2));
  }
  finish();
}
