/* Shared helpers for the boot test guests: serial output on COM1 (0x3f8), PASS/FAIL lines,
 * command-line parsing, a checksum, and the debug-exit port (0x501: the byte written becomes
 * the VM's exit status). Freestanding: no libc, no interrupts. */
#ifndef NOVM_GUEST_COMMON_H
#define NOVM_GUEST_COMMON_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
#if defined(__x86_64__)
typedef unsigned long uptr;
#else
typedef unsigned int uptr;
#endif

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0x501

static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) {
  u8 value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

void putc_serial(char c);
void puts_serial(const char *s);
void put_hex(u64 value);
void put_dec(u64 value);
/* Reports "PASS what" or "FAIL what (detail)" and counts failures. */
void check(int ok, const char *what, const char *detail);
/* Prints DONE, writes the exit status (0 = all passed, 1 = a failure) to the debug-exit port
 * and halts forever. */
void finish(void) __attribute__((noreturn));

int str_len(const char *s);
int str_eq(const char *a, const char *b);
/* Finds "key=" as a whole word in a space-separated command line; returns the value or 0. */
const char *find_arg(const char *cmdline, const char *key);
/* Parses a decimal number or a 0x-prefixed hex number up to a space or NUL. */
u64 parse_number(const char *s);
/* True when the command line contains the word `word` (space separated). */
int has_word(const char *cmdline, const char *word);
/* FNV-1a, 32 bit: the tests compute the same value over modules and the initrd. */
u32 fnv1a32(const u8 *data, u64 length);

void *memset(void *dst, int value, uptr n);
void *memcpy(void *dst, const void *src, uptr n);

#endif

/* One memory-map entry as every protocol reports it (type 1 = available RAM). */
struct mem_range {
  u64 address;
  u64 length;
  u32 type;
};

/* Checks a memory map against the command line's ram=<MiB> (and ram_slack_kib=<KiB>, default
 * 2048: RAM the platform may reserve): sorted, non-overlapping, available RAM within the slack of
 * ram=, and the guest image [image_start, image_end) inside available RAM. */
void check_memory_map(const struct mem_range *entries, int count, const char *cmdline, uptr image_start, uptr image_end);
/* Checks a module or initrd against "len=<n> sum=0x<fnv1a32>" in `spec`. */
void check_blob(const char *what, const u8 *data, u64 length, const char *spec);
