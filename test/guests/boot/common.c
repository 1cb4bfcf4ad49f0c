#include "common.h"

static int failures;

/* Wait for an empty transmit holding register (LSR bit 5) as a real driver does: QEMU's UART drops
 * a byte written while the previous one is still held (seen under CI load). Bounded, so a UART
 * that never reports THRE still gets its bytes. */
void putc_serial(char c) {
  for (int spins = 0; spins < 100000 && !(inb(COM1 + 5) & 0x20); spins++) {
  }
  outb(COM1, (u8)c);
}

void puts_serial(const char *s) {
  while (*s) putc_serial(*s++);
}

void put_hex(u64 value) {
  char digits[17];
  int i = 16;
  digits[i] = 0;
  do {
    digits[--i] = "0123456789abcdef"[value & 15];
    value >>= 4;
  } while (value && i > 0);
  puts_serial("0x");
  puts_serial(&digits[i]);
}

void put_dec(u64 value) {
  /* 64-bit division would need libgcc in the 32-bit guests: large values go out in hex. */
  if (value >> 32) {
    put_hex(value);
    return;
  }
  u32 v = (u32)value;
  char digits[11];
  int i = 10;
  digits[i] = 0;
  do {
    digits[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v && i > 0);
  puts_serial(&digits[i]);
}

void check(int ok, const char *what, const char *detail) {
  puts_serial(ok ? "PASS " : "FAIL ");
  puts_serial(what);
  if (!ok && detail && *detail) {
    puts_serial(" (");
    puts_serial(detail);
    puts_serial(")");
  }
  puts_serial("\n");
  if (!ok) failures++;
}

void finish(void) {
  puts_serial("DONE\n");
  outb(DEBUG_EXIT_PORT, failures ? 1 : 0);
  for (;;) __asm__ volatile("cli; hlt");
}

int str_len(const char *s) {
  int n = 0;
  while (s[n]) n++;
  return n;
}

int str_eq(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

static int word_start(const char *cmdline, const char *p) { return p == cmdline || p[-1] == ' '; }

const char *find_arg(const char *cmdline, const char *key) {
  int n = str_len(key);
  for (const char *p = cmdline; *p; p++) {
    if (!word_start(cmdline, p)) continue;
    int i = 0;
    while (i < n && p[i] == key[i]) i++;
    if (i == n && p[n] == '=') return p + n + 1;
  }
  return 0;
}

int has_word(const char *cmdline, const char *word) {
  int n = str_len(word);
  for (const char *p = cmdline; *p; p++) {
    if (!word_start(cmdline, p)) continue;
    int i = 0;
    while (i < n && p[i] == word[i]) i++;
    if (i == n && (p[n] == ' ' || p[n] == 0)) return 1;
  }
  return 0;
}

u64 parse_number(const char *s) {
  u64 value = 0;
  if (s[0] == '0' && s[1] == 'x') {
    for (s += 2; *s && *s != ' '; s++) {
      char c = *s;
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) break;
      value = value * 16 + (u64)d;
    }
  } else {
    for (; *s >= '0' && *s <= '9'; s++) value = value * 10 + (u64)(*s - '0');
  }
  return value;
}

u32 fnv1a32(const u8 *data, u64 length) {
  u32 hash = 2166136261u;
  for (u64 i = 0; i < length; i++) {
    hash ^= data[i];
    hash *= 16777619u;
  }
  return hash;
}

void *memset(void *dst, int value, uptr n) {
  u8 *d = dst;
  while (n--) *d++ = (u8)value;
  return dst;
}

void *memcpy(void *dst, const void *src, uptr n) {
  u8 *d = dst;
  const u8 *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void check_memory_map(const struct mem_range *entries, int count, const char *cmdline, uptr image_start, uptr image_end) {
  int sorted = 1;
  u64 available = 0;
  int covers_image = 0;
  for (int i = 0; i < count; i++) {
    if (i > 0 && entries[i].address < entries[i - 1].address + entries[i - 1].length) sorted = 0;
    if (entries[i].type == 1) {
      available += entries[i].length;
      if (entries[i].address <= image_start && image_end <= entries[i].address + entries[i].length) covers_image = 1;
    }
  }
  check(count > 0, "mmap-present", "no entries");
  check(sorted, "mmap-sorted", "entries overlap or are unsorted");
  check(covers_image, "mmap-covers-image", "no available entry holds the guest image");
  const char *ram = find_arg(cmdline, "ram");
  if (ram) {
    u64 expected = parse_number(ram) << 20;
    const char *slack_arg = find_arg(cmdline, "ram_slack_kib");
    u64 slack = (slack_arg ? parse_number(slack_arg) : 2048) << 10;
    int ok = available <= expected && available + slack >= expected;
    check(ok, "mmap-ram-total", "available RAM differs from ram=");
    if (!ok) {
      puts_serial("  available ");
      put_dec(available);
      puts_serial(" expected ");
      put_dec(expected);
      puts_serial("\n");
    }
  } else {
    check(0, "mmap-ram-total", "no ram=<MiB> on the command line");
  }
}

void check_blob(const char *what, const u8 *data, u64 length, const char *spec) {
  const char *len = spec ? find_arg(spec, "len") : 0;
  const char *sum = spec ? find_arg(spec, "sum") : 0;
  if (!len || !sum) {
    check(0, what, "no len=/sum= to compare with");
    return;
  }
  int ok = parse_number(len) == length && parse_number(sum) == fnv1a32(data, length);
  check(ok, what, "length or checksum differs");
}
