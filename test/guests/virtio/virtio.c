/* A minimal virtio 1.2 driver as a test guest (32-bit, flat, no paging, multiboot v1).
 *
 * Command line (all numbers decimal or 0x-hex):
 *   transport=pci|mmio   which transport to drive
 *   mmio_gsi=N           IOAPIC pin of virtio-mmio slot 0 (slot n uses N + n)
 *   sectors=N            expected blk capacity in 512-byte sectors
 *   sum0=0x...           FNV-1a of sector 0 as the host wrote it
 *   wsector=N seed=N     the sector to write, and the seed of its pattern (see pattern_byte)
 *   move_bar=1           (pci) move the rng device's BAR 0 before using it
 *   pci_irq=intx         (pci) use INTx (the IOAPIC pin in Interrupt Line, level-triggered,
 *                        deasserted by reading ISR status) instead of MSI-X
 *
 * Devices: virtio-pci functions found through ECAM (0xE0000000, bus 0), or virtio-mmio slots
 * at 0xD0000000 + n * 0x1000 (magic "virt", version 2). Each device is brought up per virtio
 * 1.2 section 3.1.1 with VERSION_1 as the only feature, one split queue of 8 entries, its
 * interrupt (MSI-X vector 0 -> IDT vector 0x40 + n, or IOAPIC pin -> 0x40 + n) enabled; every
 * request waits in HLT for its interrupt, then checks the used ring. The guest prints
 * "INFO <transport> <device> kicks=K irqs=I bytes=B" lines the host compares with its counters. */
#include "../boot/common.h"

#define ECAM_BASE 0xE0000000u
#define MMIO_BASE 0xD0000000u
#define MMIO_STRIDE 0x1000u
#define MMIO_SLOTS 8
#define LAPIC 0xFEE00000u
#define IOAPIC 0xFEC00000u
#define DEVICE_VECTOR 0x40
#define TIMER_VECTOR 0x50
#define SPURIOUS_VECTOR 0xFF
#define QSZ 8
#define MAX_DEVICES 2
/* LAPIC timer: periodic, divide by 1, this many bus cycles (1 ns each on KVM): 10 ms. */
#define TIMER_COUNT 10000000u
/* How long a request may take before the guest gives up: ticks of the timer above. */
#define REQUEST_TIMEOUT_TICKS 1000u

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4
#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2

static inline u32 rd32(uptr a) { return *(volatile u32 *)a; }
static inline u16 rd16(uptr a) { return *(volatile u16 *)a; }
static inline u8 rd8(uptr a) { return *(volatile u8 *)a; }
static inline void wr32(uptr a, u32 v) { *(volatile u32 *)a = v; }
static inline void wr16(uptr a, u16 v) { *(volatile u16 *)a = v; }
static inline void wr8(uptr a, u8 v) { *(volatile u8 *)a = v; }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* ---- split virtqueue (virtio 1.2 section 2.7) ---- */
struct vq_desc {
  u64 addr;
  u32 len;
  u16 flags;
  u16 next;
};
struct vq_avail {
  u16 flags;
  u16 idx;
  u16 ring[QSZ];
  u16 used_event;
};
struct vq_used_elem {
  u32 id;
  u32 len;
};
struct vq_used {
  u16 flags;
  u16 idx;
  struct vq_used_elem ring[QSZ];
  u16 avail_event;
};
struct queue_mem {
  struct vq_desc desc[QSZ];
  struct vq_avail avail __attribute__((aligned(16)));
  struct vq_used used __attribute__((aligned(16)));
} __attribute__((aligned(4096)));

static struct queue_mem queues[MAX_DEVICES];

/* ---- one device, either transport ---- */
struct vdev {
  int index;
  int is_pci;
  int type;
  const char *name;
  uptr base;     /* mmio: register base; pci: BAR 0 */
  uptr common;   /* pci structures */
  uptr devcfg;
  uptr notify;   /* address to write the queue index to */
  uptr isr;      /* pci ISR status byte (read to deassert INTx) */
  int intx;      /* pci: INTx instead of MSI-X */
  struct queue_mem *q;
  u16 last_used;
  u32 kicks;
  u32 bytes;
  int ok;
};

static struct vdev devices[MAX_DEVICES];
static volatile u32 irq_count[MAX_DEVICES];
static volatile u32 irq_bad_status[MAX_DEVICES];
static volatile u32 timer_ticks;
static volatile u32 intx_not_mine;
static volatile u32 unexpected_count;
static const char *cmdline = "";

/* ---- interrupts ---- */
extern void isr_device0(void), isr_device1(void), isr_timer(void), isr_unexpected(void);
static u64 idt[256] __attribute__((aligned(8)));
static struct {
  u16 limit;
  u32 base;
} __attribute__((packed)) idt_descriptor;

static void set_gate(int vector, void (*handler)(void)) {
  u32 h = (u32)(uptr)handler;
  idt[vector] = (u64)(h & 0xffff) | ((u64)0x08 << 16) | ((u64)0x8e00 << 32) | ((u64)(h >> 16) << 48);
}

void device_irq(int n) {
  struct vdev *d = &devices[n];
  if (d->is_pci && d->intx) {
    /* 4.1.4.5: reading ISR status clears it and deasserts INTx; bit 0 = queue interrupt. A
     * level interrupt with ISR 0 is "not mine" (as on a shared line): counted apart. This
     * host's nested KVM delivers each level-triggered IOAPIC interrupt a second time (found
     * in the LAPIC's IRR, not ISR, inside the first handler), so these do occur here. */
    if (rd8(d->isr) & 1) irq_count[n]++;
    else intx_not_mine++;
    wr32(LAPIC + 0xb0, 0);
    return;
  }
  irq_count[n]++;
  if (!d->is_pci && d->base) {
    /* 4.2.2: read InterruptStatus, acknowledge what was seen; bit 0 = used buffer. */
    u32 status = rd32(d->base + 0x60);
    wr32(d->base + 0x64, status);
    if (!(status & 1)) irq_bad_status[n]++;
  }
  wr32(LAPIC + 0xb0, 0);
}

void timer_irq(int unused) {
  (void)unused;
  timer_ticks++;
  wr32(LAPIC + 0xb0, 0);
}

void unexpected_irq(int unused) {
  (void)unused;
  unexpected_count++;
  wr32(LAPIC + 0xb0, 0);
}

static void setup_interrupts(void) {
  for (int v = 0; v < 256; v++) set_gate(v, isr_unexpected);
  set_gate(DEVICE_VECTOR + 0, isr_device0);
  set_gate(DEVICE_VECTOR + 1, isr_device1);
  set_gate(TIMER_VECTOR, isr_timer);
  idt_descriptor.limit = sizeof idt - 1;
  idt_descriptor.base = (u32)(uptr)idt;
  __asm__ volatile("lidt %0" : : "m"(idt_descriptor));
  outb(0x21, 0xff); /* mask both 8259s: the IOAPIC and MSIs deliver */
  outb(0xa1, 0xff);
  wr32(LAPIC + 0xf0, 0x100 | SPURIOUS_VECTOR); /* LAPIC software enable */
  wr32(LAPIC + 0x3e0, 0xb);                    /* timer divide by 1 */
  wr32(LAPIC + 0x320, (1u << 17) | TIMER_VECTOR); /* periodic */
  wr32(LAPIC + 0x380, TIMER_COUNT);
}

/* IOAPIC pin -> vector: fixed delivery, physical destination APIC 0, active high, edge or
 * level (bit 15). */
static void route_pin(u32 pin, u32 vector, int level) {
  wr32(IOAPIC, 0x10 + 2 * pin);
  wr32(IOAPIC + 0x10, vector | (level ? 1u << 15 : 0));
  wr32(IOAPIC, 0x11 + 2 * pin);
  wr32(IOAPIC + 0x10, 0);
}

/* Sleeps until device n's interrupt count passes `before`; 0 on timeout. */
static int wait_irq(int n, u32 before) {
  u32 start = timer_ticks;
  while (irq_count[n] == before) {
    if (timer_ticks - start > REQUEST_TIMEOUT_TICKS) return 0;
    __asm__ volatile("sti; hlt; cli" ::: "memory");
  }
  return 1;
}

/* ---- transport register access ---- */
static u8 get_status(struct vdev *d) { return d->is_pci ? rd8(d->common + 0x14) : (u8)rd32(d->base + 0x70); }
static void set_status(struct vdev *d, u8 s) {
  if (d->is_pci) wr8(d->common + 0x14, s);
  else wr32(d->base + 0x70, s);
}
static u32 device_features(struct vdev *d, u32 word) {
  if (d->is_pci) {
    wr32(d->common + 0x00, word);
    return rd32(d->common + 0x04);
  }
  wr32(d->base + 0x14, word);
  return rd32(d->base + 0x10);
}
static void driver_features(struct vdev *d, u32 word, u32 value) {
  if (d->is_pci) {
    wr32(d->common + 0x08, word);
    wr32(d->common + 0x0c, value);
  } else {
    wr32(d->base + 0x24, word);
    wr32(d->base + 0x20, value);
  }
}
static u32 config32(struct vdev *d, u32 offset) { return rd32((d->is_pci ? d->devcfg : d->base + 0x100) + offset); }

static void kick(struct vdev *d) {
  barrier();
  d->kicks++;
  /* 4.1.4.4 / 4.2.2: the value is the queue index; PCI uses a 16-bit write as Linux does. */
  if (d->is_pci) wr16(d->notify, 0);
  else wr32(d->notify, 0);
}

/* Sets queue 0 up (size QSZ) and enables it; on PCI routes it to MSI-X vector 0. */
static int setup_queue(struct vdev *d) {
  struct queue_mem *q = d->q;
  memset(q, 0, sizeof *q);
  u32 desc = (u32)(uptr)q->desc, avail = (u32)(uptr)&q->avail, used = (u32)(uptr)&q->used;
  if (d->is_pci) {
    uptr c = d->common;
    wr16(c + 0x16, 0);
    u16 max = rd16(c + 0x18);
    if (max < QSZ) return 0;
    wr16(c + 0x18, QSZ);
    wr16(c + 0x1a, 0); /* queue_msix_vector = 0 */
    if (rd16(c + 0x1a) != 0) return 0;
    wr32(c + 0x20, desc); wr32(c + 0x24, 0);
    wr32(c + 0x28, avail); wr32(c + 0x2c, 0);
    wr32(c + 0x30, used); wr32(c + 0x34, 0);
    wr16(c + 0x1c, 1);
    if (rd16(c + 0x1c) != 1) return 0;
  } else {
    uptr b = d->base;
    wr32(b + 0x30, 0);
    if (rd32(b + 0x44) != 0) return 0;
    if (rd32(b + 0x34) < QSZ) return 0;
    wr32(b + 0x38, QSZ);
    wr32(b + 0x80, desc); wr32(b + 0x84, 0);
    wr32(b + 0x90, avail); wr32(b + 0x94, 0);
    wr32(b + 0xa0, used); wr32(b + 0xa4, 0);
    wr32(b + 0x44, 1);
    if (rd32(b + 0x44) != 1) return 0;
  }
  return 1;
}

/* virtio 1.2 section 3.1.1, steps 1-8 (DRIVER_OK included). */
static int bring_up(struct vdev *d) {
  set_status(d, 0);
  if (get_status(d) != 0) return 0;
  set_status(d, STATUS_ACK);
  set_status(d, STATUS_ACK | STATUS_DRIVER);
  u32 high = device_features(d, 1);
  if (!(high & 1)) { /* VERSION_1 is bit 32 */
    check(0, "version-1-offered", d->name);
    return 0;
  }
  driver_features(d, 0, 0);
  driver_features(d, 1, 1);
  set_status(d, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
  if (!(get_status(d) & STATUS_FEATURES_OK)) {
    check(0, "features-ok", d->name);
    return 0;
  }
  if (!setup_queue(d)) {
    check(0, "queue-setup", d->name);
    return 0;
  }
  set_status(d, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  return get_status(d) == (STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/* Submits a chain of n descriptors, kicks, sleeps until the interrupt, checks the used ring.
 * Returns the used length, or -1. */
static int request(struct vdev *d, int n, const u32 *addr, const u32 *len, const u16 *write) {
  struct queue_mem *q = d->q;
  for (int i = 0; i < n; i++) {
    q->desc[i].addr = addr[i];
    q->desc[i].len = len[i];
    q->desc[i].flags = (u16)((i + 1 < n ? DESC_F_NEXT : 0) | (write[i] ? DESC_F_WRITE : 0));
    q->desc[i].next = (u16)(i + 1 < n ? i + 1 : 0);
  }
  q->avail.ring[q->avail.idx % QSZ] = 0;
  barrier();
  q->avail.idx++;
  u32 before = irq_count[d->index];
  kick(d);
  if (!wait_irq(d->index, before)) {
    check(0, "interrupt", d->name);
    return -1;
  }
  barrier();
  if (q->used.idx != (u16)(d->last_used + 1)) {
    check(0, "used-index", d->name);
    return -1;
  }
  struct vq_used_elem *e = &q->used.ring[d->last_used % QSZ];
  d->last_used++;
  if (e->id != 0) {
    check(0, "used-id", d->name);
    return -1;
  }
  d->bytes += e->len;
  return (int)e->len;
}

static void report(struct vdev *d, const char *transport) {
  puts_serial("INFO ");
  puts_serial(transport);
  puts_serial(" ");
  puts_serial(d->name);
  puts_serial(" kicks=");
  put_dec(d->kicks);
  puts_serial(" irqs=");
  put_dec(irq_count[d->index]);
  puts_serial(" bytes=");
  put_dec(d->bytes);
  puts_serial("\n");
}

/* ---- the device tests ---- */
static u8 rng_a[16], rng_b[16];

static void test_rng(struct vdev *d) {
  u32 addr[1];
  u32 len[1] = {16};
  u16 write[1] = {1};
  addr[0] = (u32)(uptr)rng_a;
  int n1 = request(d, 1, addr, len, write);
  addr[0] = (u32)(uptr)rng_b;
  int n2 = request(d, 1, addr, len, write);
  check(n1 == 16 && n2 == 16, "rng-length", "used length is not 16");
  int nonzero = 0, differ = 0;
  for (int i = 0; i < 16; i++) {
    nonzero |= rng_a[i] | rng_b[i];
    differ |= rng_a[i] != rng_b[i];
  }
  check(nonzero, "rng-nonzero", "all bytes zero");
  check(differ, "rng-differ", "two reads returned the same bytes");
}

static u8 pattern_byte(u32 seed, u32 i) { return (u8)((seed + i * 7 + (i >> 8)) & 0xff); }

struct blk_header {
  u32 type;
  u32 reserved;
  u64 sector;
};
static struct blk_header blk_hdr;
static u8 blk_data[512] __attribute__((aligned(16)));
static u8 blk_status;

/* type 0 = IN (device writes data), 1 = OUT. Returns the status byte or 0xff. */
static u8 blk_request(struct vdev *d, u32 type, u32 sector) {
  blk_hdr.type = type;
  blk_hdr.reserved = 0;
  blk_hdr.sector = sector;
  blk_status = 0xee;
  u32 addr[3] = {(u32)(uptr)&blk_hdr, (u32)(uptr)blk_data, (u32)(uptr)&blk_status};
  u32 len[3] = {sizeof blk_hdr, 512, 1};
  u16 write[3] = {0, type == 0, 1};
  int used = request(d, 3, addr, len, write);
  /* 5.2.6: the device reports the bytes it wrote: data + status for IN, the status for OUT. */
  if (used != (type == 0 ? 513 : 1)) {
    check(0, "blk-used-length", d->name);
    return 0xff;
  }
  return blk_status;
}

static void test_blk(struct vdev *d) {
  const char *s = find_arg(cmdline, "sectors");
  u64 capacity = (u64)config32(d, 0) | ((u64)config32(d, 4) << 32);
  check(s && capacity == parse_number(s), "blk-capacity", "capacity differs from sectors=");
  const char *sum0 = find_arg(cmdline, "sum0");
  check(blk_request(d, 0, 0) == 0, "blk-read-status", "status not OK");
  u32 sum = fnv1a32(blk_data, 512);
  check(sum0 && sum == (u32)parse_number(sum0), "blk-read-sector0", "checksum differs from sum0=");
  if (!sum0 || sum != (u32)parse_number(sum0)) {
    puts_serial("  sector 0 sum ");
    put_hex(sum);
    puts_serial(", first bytes ");
    put_hex(*(u32 *)blk_data);
    puts_serial("\n");
  }
  const char *ws = find_arg(cmdline, "wsector");
  const char *sd = find_arg(cmdline, "seed");
  u32 sector = ws ? (u32)parse_number(ws) : 1;
  u32 seed = sd ? (u32)parse_number(sd) : 0;
  for (u32 i = 0; i < 512; i++) blk_data[i] = pattern_byte(seed, i);
  check(blk_request(d, 1, sector) == 0, "blk-write-status", "status not OK");
  memset(blk_data, 0, sizeof blk_data);
  check(blk_request(d, 0, sector) == 0, "blk-readback-status", "status not OK");
  int same = 1;
  for (u32 i = 0; i < 512; i++) same &= blk_data[i] == pattern_byte(seed, i);
  check(same, "blk-readback", "read back differs from what was written");
}

/* ---- discovery ---- */
static uptr ecam(u32 slot, u32 reg) { return ECAM_BASE + (slot << 15) + reg; }

/* Walks the capability list: the virtio structures (4.1.4) and MSI-X; enables vector 0 to
 * IDT vector 0x40 + index. Returns 0 if a required structure is missing. */
static int pci_setup(struct vdev *d, u32 slot) {
  u32 bar_lo = rd32(ecam(slot, 0x10)), bar_hi = rd32(ecam(slot, 0x14));
  if ((bar_lo & 0x6) != 0x4 || bar_hi != 0) {
    check(0, "pci-bar0-64bit-below-4g", d->name);
    return 0;
  }
  wr16(ecam(slot, 0x04), 0x6); /* memory space + bus master */
  d->base = bar_lo & ~0xfu;
  if (d->type == VIRTIO_ID_RNG && has_word(cmdline, "move_bar=1")) {
    /* Move BAR 0 while decoding is off (the host must follow with its ioeventfds). */
    u32 target = 0xC0800000u + (slot << 16);
    wr16(ecam(slot, 0x04), 0x0);
    wr32(ecam(slot, 0x10), target);
    wr32(ecam(slot, 0x14), 0);
    wr16(ecam(slot, 0x04), 0x6);
    check((rd32(ecam(slot, 0x10)) & ~0xfu) == target, "pci-bar-moved", "BAR 0 did not take the new address");
    d->base = target;
  }
  u32 notify_mult = 0, notify_off_found = 0;
  uptr msix_table = 0;
  u32 msix_cap = 0;
  u32 cap = rd8(ecam(slot, 0x34)) & 0xfc;
  for (int guard = 0; cap && guard < 48; guard++) {
    u8 id = rd8(ecam(slot, cap));
    if (id == 0x09) {
      u8 type = rd8(ecam(slot, cap + 3));
      u8 bar = rd8(ecam(slot, cap + 4));
      u32 offset = rd32(ecam(slot, cap + 8));
      if (bar == 0) {
        if (type == 1) d->common = d->base + offset;
        if (type == 2) {
          d->notify = d->base + offset;
          notify_mult = rd32(ecam(slot, cap + 16));
          notify_off_found = 1;
        }
        if (type == 3) d->isr = d->base + offset;
        if (type == 4) d->devcfg = d->base + offset;
      }
    } else if (id == 0x11) {
      msix_cap = cap;
      u32 table = rd32(ecam(slot, cap + 4));
      if ((table & 7) == 0) msix_table = d->base + (table & ~7u);
    }
    cap = rd8(ecam(slot, cap + 1)) & 0xfc;
  }
  if (!d->common || !notify_off_found || !d->isr || !msix_cap || !msix_table || (d->type == VIRTIO_ID_BLOCK && !d->devcfg)) {
    check(0, "pci-capabilities", d->name);
    return 0;
  }
  /* queue 0's notify address: cap offset + queue_notify_off * notify_off_multiplier */
  wr16(d->common + 0x16, 0);
  d->notify += (uptr)rd16(d->common + 0x1e) * notify_mult;
  if (has_word(cmdline, "pci_irq=intx")) {
    u8 line = rd8(ecam(slot, 0x3c));
    check(rd8(ecam(slot, 0x3d)) == 1 && line < 24, "pci-intx-line", d->name);
    d->intx = 1;
    route_pin(line, DEVICE_VECTOR + (u32)d->index, 1);
    return 1;
  }
  /* MSI-X entry 0: to APIC 0, fixed, edge, vector 0x40 + index; unmasked; then enable. */
  wr32(msix_table + 0, LAPIC);
  wr32(msix_table + 4, 0);
  wr32(msix_table + 8, DEVICE_VECTOR + (u32)d->index);
  wr32(msix_table + 12, 0);
  u16 control = rd16(ecam(slot, msix_cap + 2));
  wr16(ecam(slot, msix_cap + 2), (u16)((control | 0x8000) & ~0x4000));
  wr16(d->common + 0x10, 0xffff); /* no configuration-change vector */
  return 1;
}

static int find_pci(void) {
  int found = 0;
  for (u32 slot = 0; slot < 32 && found < MAX_DEVICES; slot++) {
    u32 id = rd32(ecam(slot, 0));
    if ((id & 0xffff) != 0x1af4) continue;
    u32 device_id = id >> 16;
    if (device_id != 0x1040 + VIRTIO_ID_RNG && device_id != 0x1040 + VIRTIO_ID_BLOCK) continue;
    struct vdev *d = &devices[found];
    d->index = found;
    d->is_pci = 1;
    d->type = (int)(device_id - 0x1040);
    d->name = d->type == VIRTIO_ID_RNG ? "rng" : "blk";
    d->q = &queues[found];
    if (!pci_setup(d, slot)) return found;
    found++;
  }
  return found;
}

static int find_mmio(void) {
  const char *g = find_arg(cmdline, "mmio_gsi");
  u32 gsi = g ? (u32)parse_number(g) : 16;
  int found = 0;
  for (u32 n = 0; n < MMIO_SLOTS && found < MAX_DEVICES; n++) {
    uptr base = MMIO_BASE + n * MMIO_STRIDE;
    if (rd32(base) != 0x74726976 || rd32(base + 4) != 2) continue;
    u32 type = rd32(base + 8);
    if (type != VIRTIO_ID_RNG && type != VIRTIO_ID_BLOCK) continue;
    struct vdev *d = &devices[found];
    d->index = found;
    d->is_pci = 0;
    d->type = (int)type;
    d->name = type == VIRTIO_ID_RNG ? "rng" : "blk";
    d->base = base;
    d->notify = base + 0x50;
    d->q = &queues[found];
    route_pin(gsi + n, DEVICE_VECTOR + (u32)found, 0);
    found++;
  }
  return found;
}

struct mb1_info {
  u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};

void virtio_main(u32 magic, const struct mb1_info *info) {
  if (magic == 0x2BADB002 && (info->flags & (1u << 2))) cmdline = (const char *)(uptr)info->cmdline;
  int pci = has_word(cmdline, "transport=pci");
  const char *transport = pci ? "pci" : "mmio";
  setup_interrupts();
  int found = pci ? find_pci() : find_mmio();
  check(found == 2, pci ? "pci-devices-found" : "mmio-devices-found", "expected an rng and a blk device");
  for (int i = 0; i < found; i++) {
    struct vdev *d = &devices[i];
    if (!bring_up(d)) {
      check(0, "bring-up", d->name);
      continue;
    }
    check(1, d->type == VIRTIO_ID_RNG ? "rng-bring-up" : "blk-bring-up", "");
    if (d->type == VIRTIO_ID_RNG) test_rng(d);
    else test_blk(d);
    check(irq_count[i] > 0 && irq_bad_status[i] == 0, d->type == VIRTIO_ID_RNG ? "rng-interrupts" : "blk-interrupts", "no interrupt seen, or InterruptStatus lacked the used-buffer bit");
    report(d, transport);
  }
  check(unexpected_count == 0, "no-unexpected-interrupts", "an interrupt arrived on an unused vector");
  puts_serial("INFO timer-ticks=");
  put_dec(timer_ticks);
  puts_serial(" intx-not-mine=");
  put_dec(intx_not_mine);
  puts_serial("\n");
  finish();
}
