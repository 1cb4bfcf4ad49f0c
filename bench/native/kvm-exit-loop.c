/* The floor for novm's benchmarks: a minimal VMM in C on the same KVM, same machine setup
 * (in-kernel irqchip + PIT, memfd RAM, one vCPU in 32-bit protected mode).
 * usage: kvm-exit-loop GUEST.bin PIO_COUNT MMIO_COUNT MEMORY_MIB [--first-write]
 * Prints "exits=<n> run_ns=<ns> first_write_ns=<ns since main>" on stdout; with --first-write
 * (bench:start) it prints "FIRST-WRITE rss=<bytes> guest=<bytes>" at the guest's first port
 * write instead, and exits: the process's resident set and the guest RAM part of it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static void die(const char *what) { perror(what); exit(1); }

static void resident(long *rss, long *guest) {
  char line[512]; int in_ram = 0; *rss = 0; *guest = 0;
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "VmRSS:", 6)) *rss = atol(line + 6) * 1024;
  if (f) fclose(f);
  f = fopen("/proc/self/smaps", "r");
  while (f && fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx ", &a, &b) == 2) in_ram = strstr(line, "memfd:ram") != 0;
    else if (in_ram && !strncmp(line, "Rss:", 4)) *guest += atol(line + 4) * 1024;
  }
  if (f) fclose(f);
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage\n"); return 2; }
  long long t0 = now_ns();
  int first_write_mode = argc > 5 && !strcmp(argv[5], "--first-write");
  unsigned pio = strtoul(argv[2], 0, 0), mmio = strtoul(argv[3], 0, 0);
  size_t mem = (size_t)strtoul(argv[4], 0, 0) << 20;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC); if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0); if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbc000) < 0) die("tss");
  if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("irqchip");
  struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
  if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) die("pit");
  int memfd = memfd_create("ram", 0); if (ftruncate(memfd, mem) < 0) die("ftruncate");
  unsigned char *ram = mmap(0, mem, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (ram == MAP_FAILED) die("mmap");
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = mem, .userspace_addr = (unsigned long)ram };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("region");
  FILE *f = fopen(argv[1], "rb"); if (!f) die(argv[1]);
  size_t n = fread(ram + 0x100000, 1, 1 << 20, f); fclose(f); (void)n;
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0); if (vcpu < 0) die("vcpu");
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 e[256]; } cpuid = { .h.nent = 256 };
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) die("cpuid");
  if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) die("set cpuid");
  struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s);
  struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .db = 1, .s = 1, .g = 1 };
  struct kvm_segment data = code; data.selector = 0x10; data.type = 3;
  s.cs = code; s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr.selector = 0x18; s.tr.type = 11; s.tr.present = 1; s.tr.limit = 0xffff; s.tr.s = 0;
  s.cr0 = 1; s.cr4 = 0; s.efer = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("sregs");
  struct kvm_regs r; memset(&r, 0, sizeof r);
  r.rip = 0x100000; r.rsp = 0x8000; r.rflags = 2; r.rcx = pio; r.rbx = mmio;
  if (ioctl(vcpu, KVM_SET_REGS, &r) < 0) die("regs");
  long long start = now_ns(), first = 0; unsigned long exits = 0, sink = 0;
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    exits++;
    if (run->exit_reason == KVM_EXIT_IO) {
      if (first_write_mode) {
        long rss, guest; resident(&rss, &guest);
        printf("FIRST-WRITE rss=%ld guest=%ld\n", rss, guest);
        fflush(stdout);
        return 0;
      }
      if (!first) first = now_ns();
      unsigned char *d = (unsigned char *)run + run->io.data_offset;
      if (run->io.port == 0x501) break;
      if (run->io.port == 0x510) sink += d[0];
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
      sink += run->mmio.data[0];
    } else { fprintf(stderr, "exit %u\n", run->exit_reason); return 1; }
  }
  long long end = now_ns();
  printf("exits=%lu run_ns=%lld first_write_ns=%lld sink=%lu\n", exits, end - start, first - t0, sink & 1);
  return 0;
}
