// Linux boot plans: boot_params checked field by field at the boot protocol's offsets
// (Documentation/arch/x86/zero-page.rst, boot.rst), the 64-bit entry state, PVH, and the
// one-line InputErrors for bad inputs.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BootPlan } from '../../src/boot/boot-plan.js';
import { loadKernel } from '../../src/boot/load-kernel.js';
import { InputError } from '../../src/common/errors.js';
import { MiB, GiB } from '../../src/memory/address.js';
import { ramLayout } from '../../src/memory/layout.js';
import { cStringAt, hostKernel, makeElf, overlappingSegments, readPlan, view } from './fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'novm-boot-linux-'));
after(() => rmSync(work, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array | string): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

/** A small synthetic vmlinux: one 8 KiB segment at 16 MiB with a 4 KiB bss, a PVH note. */
function fakeVmlinux(): Uint8Array {
  const code = new Uint8Array(8192).fill(0x90);
  const pvh = new Uint8Array(8);
  new DataView(pvh.buffer).setBigUint64(0, 0x1000100n, true);
  return makeElf({ bits: 64, entry: 0x1000000, segments: [{ paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: code, memsz: 12288 }], notes: [{ name: 'Xen', type: 18, desc: pvh }] });
}

function rejects(promise: Promise<unknown>, ...needles: string[]): Promise<void> {
  return assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    for (const n of needles) assert.ok(e.message.includes(n), `"${e.message}" should mention "${n}"`);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

function decodeE820(zeroPage: Uint8Array): Array<{ address: number; size: number; type: number }> {
  const v = view(zeroPage);
  const count = zeroPage[0x1e8]!;
  return Array.from({ length: count }, (_, i) => ({
    address: Number(v.getBigUint64(0x2d0 + i * 20, true)),
    size: Number(v.getBigUint64(0x2d0 + i * 20 + 8, true)),
    type: v.getUint32(0x2d0 + i * 20 + 16, true),
  }));
}

const kernelPath = hostKernel();

describe('Linux 64-bit boot of the real Debian bzImage', { skip: kernelPath === undefined ? 'no /boot/vmlinuz-*' : false }, () => {
  let plan: BootPlan;
  let image: Uint8Array;
  const cmdline = 'console=ttyS0 root=/dev/vda ro novm.test=1';
  const initrdBytes = new Uint8Array(3 * MiB + 123).map((_, i) => (i * 7) & 0xff);
  const reserved = [
    { address: 0x9fc00, size: 0x60400, type: 'reserved' as const },
    { address: 0xe0000, size: 0x10000, type: 'acpi' as const },
    { address: 0xe000_0000, size: 256 * MiB, type: 'reserved' as const },
  ];
  before(async () => {
    image = readFileSync(kernelPath!);
    plan = await loadKernel({ kernelPath: kernelPath!, initrdPath: file('initrd.img', initrdBytes), cmdline, ram: ramLayout(4 * GiB), reserved, rsdpAddress: 0xe0000, cacheDir: join(work, 'cache') });
  });

  it('fills boot_params per the protocol', () => {
    const zp = plan.cpu.gpr.rsi!;
    assert.equal(zp % 4096, 0);
    const bp = readPlan(plan, zp, 4096);
    const v = view(bp);
    const headerEnd = 0x202 + image[0x201]!;
    // The setup header is the bzImage's, except the fields a boot loader writes.
    const written = new Set<number>();
    for (const [at, size] of [[0x210, 1], [0x211, 1], [0x218, 4], [0x21c, 4], [0x228, 4]] as const) for (let i = 0; i < size; i++) written.add(at + i);
    for (let at = 0x1f1; at < headerEnd; at++) if (!written.has(at)) assert.equal(bp[at], image[at], `header byte 0x${at.toString(16)}`);
    for (let at = headerEnd; at < 0x290; at++) assert.equal(bp[at], 0, `past the header: 0x${at.toString(16)}`);
    assert.equal(v.getUint16(0x1fe, true), 0xaa55);
    assert.equal(v.getUint32(0x202, true), 0x53726448);
    assert.equal(bp[0x210], 0xff, 'type_of_loader');
    assert.equal(bp[0x211]! & 0x01, 0x01, 'LOADED_HIGH');
    assert.equal(bp[0x1ef], 0, 'sentinel');
    // Command line: cmd_line_ptr + ext_cmd_line_ptr.
    const cmdPtr = v.getUint32(0x228, true) + v.getUint32(0x0c8, true) * 2 ** 32;
    assert.equal(cStringAt(plan, cmdPtr), cmdline);
    // Initrd: ramdisk_image/size + ext_ fields; page-aligned, high, below initrd_addr_max.
    const rdImage = v.getUint32(0x218, true) + v.getUint32(0x0c0, true) * 2 ** 32;
    const rdSize = v.getUint32(0x21c, true) + v.getUint32(0x0c4, true) * 2 ** 32;
    assert.equal(rdSize, initrdBytes.length);
    assert.equal(rdImage % 4096, 0);
    const initrdAddrMax = view(image).getUint32(0x22c, true);
    assert.ok(rdImage + rdSize - 1 <= initrdAddrMax, 'below initrd_addr_max');
    assert.ok(rdImage >= plan.loadedRange.end || rdImage + rdSize <= plan.loadedRange.start, 'not over the kernel');
    assert.ok(rdImage > 1 * GiB, `placed high (at 0x${rdImage.toString(16)})`);
    assert.deepEqual(readPlan(plan, rdImage, rdSize), initrdBytes);
    // acpi_rsdp_addr (2.14).
    assert.equal(Number(v.getBigUint64(0x070, true)), 0xe0000);
    assert.ok(bp[0x1e8]! > 0, 'e820_entries');
  });

  it('reports an exact e820 table', () => {
    const e820 = decodeE820(readPlan(plan, plan.cpu.gpr.rsi!, 4096));
    assert.deepEqual(e820, [
      { address: 0, size: 0x9fc00, type: 1 },
      { address: 0x9fc00, size: 0x60400, type: 2 },
      { address: 0xe0000, size: 0x10000, type: 3 },
      { address: 0x100000, size: 3 * GiB - 0x100000, type: 1 },
      { address: 0xe000_0000, size: 256 * MiB, type: 2 },
      { address: 4 * GiB, size: 1 * GiB, type: 1 },
    ]);
  });

  it('starts in long mode with identity paging, the boot GDT and interrupts off', () => {
    const cpu = plan.cpu;
    assert.equal(cpu.mode, 'long64');
    assert.equal(cpu.rip, 0x1000000);
    assert.equal(cpu.cr0 & 1, 1, 'PE');
    assert.ok(cpu.cr0 >= 0x8000_0000, 'PG');
    assert.equal(cpu.cr4 & 0x20, 0x20, 'PAE');
    assert.equal(cpu.efer & 0x500, 0x500, 'LME|LMA');
    assert.equal(cpu.rflags & 0x200, 0, 'IF clear');
    assert.equal(cpu.cs.selector, 0x10);
    assert.equal(cpu.ds.selector, 0x18);
    assert.equal(cpu.cs.l, true);
    const gdt = view(readPlan(plan, cpu.gdt.base, cpu.gdt.limit + 1));
    assert.equal(gdt.getBigUint64(0x10, true), 0x00af9b000000ffffn, '64-bit code');
    assert.equal(gdt.getBigUint64(0x18, true), 0x00cf93000000ffffn, 'flat data');
    // Walk the page tables for a few addresses: each must map to itself with a 2 MiB page.
    const tables = (address: number): number => Number(view(readPlan(plan, address, 8)).getBigUint64(0, true));
    for (const va of [0, 0x1000000, 0x1234567, 3 * GiB + 0x1ff000, 4 * GiB - 1]) {
      const pml4e = tables(cpu.cr3 + Math.floor(va / 2 ** 39) * 8);
      assert.equal(pml4e & 1, 1);
      const pdpte = tables((pml4e - (pml4e % 4096)) + (Math.floor(va / 2 ** 30) % 512) * 8);
      assert.equal(pdpte & 1, 1);
      const pde = tables((pdpte - (pdpte % 4096)) + (Math.floor(va / 2 ** 21) % 512) * 8);
      assert.equal(pde & 0x83, 0x83, 'present, writable, 2 MiB');
      assert.equal(pde - (pde % 2 ** 21) + (va % 2 ** 21), va);
    }
    assert.deepEqual(overlappingSegments(plan), []);
  });

  it('reports the PVH entry and can plan a PVH start', async () => {
    assert.ok(plan.pvhEntry !== undefined && plan.pvhEntry > 0x1000000 && plan.pvhEntry < plan.loadedRange.end, 'PVH entry inside the kernel');
    const pvh = await loadKernel({ kernelPath: kernelPath!, cmdline: 'pvh', ram: ramLayout(256 * MiB), rsdpAddress: 0xe0000, reserved: [{ address: 0xe0000, size: 0x1000, type: 'acpi' }], cacheDir: join(work, 'cache'), linuxEntry: 'pvh' });
    assert.ok(pvh.description.includes('from cache'));
    assert.equal(pvh.cpu.mode, 'protected32');
    assert.equal(pvh.cpu.rip, plan.pvhEntry);
    const si = view(readPlan(pvh, pvh.cpu.gpr.rbx!, 56));
    assert.equal(si.getUint32(0, true), 0x336ec578);
    assert.equal(si.getUint32(4, true), 1);
    assert.equal(cStringAt(pvh, Number(si.getBigUint64(24, true))), 'pvh');
    assert.equal(Number(si.getBigUint64(32, true)), 0xe0000);
    const entries = si.getUint32(48, true);
    const mm = view(readPlan(pvh, Number(si.getBigUint64(40, true)), entries * 24));
    assert.deepEqual(
      Array.from({ length: entries }, (_, i) => [Number(mm.getBigUint64(i * 24, true)), Number(mm.getBigUint64(i * 24 + 8, true)), mm.getUint32(i * 24 + 16, true)]),
      [[0, 0xe0000, 1], [0xe0000, 0x1000, 3], [0xe1000, 256 * MiB - 0xe1000, 1]],
    );
  });
});

describe('Linux boot of a synthetic ELF vmlinux', () => {
  it('loads segments by physical address and synthesizes a setup header', async () => {
    const plan = await loadKernel({ kernelPath: file('vmlinux', fakeVmlinux()), cmdline: 'x', ram: ramLayout(64 * MiB) });
    const kernel = plan.segments.filter((s) => s.what.startsWith('kernel'));
    assert.deepEqual(kernel.map((s) => [s.address, s.bytes.length]), [[0x1000000, 8192], [0x1002000, 4096]]);
    assert.ok(kernel[1]!.bytes.every((b) => b === 0));
    assert.equal(plan.pvhEntry, 0x1000100);
    const bp = view(readPlan(plan, plan.cpu.gpr.rsi!, 4096));
    assert.equal(bp.getUint16(0x1fe, true), 0xaa55);
    assert.equal(bp.getUint32(0x202, true), 0x53726448);
    assert.equal(bp.getUint8(0x210), 0xff);
    assert.deepEqual(decodeE820(readPlan(plan, plan.cpu.gpr.rsi!, 4096)), [{ address: 0, size: 64 * MiB, type: 1 }]);
  });

  it('translates a virtual e_entry to its physical address', async () => {
    const elf = makeElf({ bits: 64, entry: 0xffffffff81000010n, segments: [{ paddr: 0x200000, vaddr: 0xffffffff81000000n, data: new Uint8Array(64) }] });
    const plan = await loadKernel({ kernelPath: file('virt-entry', elf), cmdline: '', ram: ramLayout(16 * MiB) });
    assert.equal(plan.cpu.rip, 0x200010);
  });

  it('gives one-line InputErrors naming the file', async () => {
    const ram = ramLayout(64 * MiB);
    await rejects(loadKernel({ kernelPath: join(work, 'missing'), ram }), join(work, 'missing'), 'no such file');
    await rejects(loadKernel({ kernelPath: file('garbage', new Uint8Array(4096).fill(0x5a)), ram }), 'garbage', 'not an ELF vmlinux, bzImage or multiboot');
    await rejects(loadKernel({ kernelPath: file('empty', new Uint8Array(0)), ram }), 'empty');
    const elf = fakeVmlinux();
    await rejects(loadKernel({ kernelPath: file('truncated-elf', elf.subarray(0, 100)), ram }), 'truncated-elf');
    await rejects(loadKernel({ kernelPath: file('cut-elf', elf.subarray(0, 4000)), ram }), 'cut-elf', 'past the end');
    const big = makeElf({ bits: 64, entry: 0x1000000, segments: [{ paddr: 0x1000000, data: new Uint8Array(16), memsz: 64 * MiB }] });
    await rejects(loadKernel({ kernelPath: file('too-big', big), ram }), 'too-big', 'not inside guest RAM');
    const kernel = file('vmlinux-ok', elf);
    await rejects(loadKernel({ kernelPath: kernel, cmdline: 'x'.repeat(2048), ram }), 'vmlinux-ok', 'command line is 2048 bytes');
    await rejects(loadKernel({ kernelPath: kernel, initrdPath: file('huge-initrd', new Uint8Array(60 * MiB)), ram }), 'huge-initrd', 'does not fit');
    await rejects(loadKernel({ kernelPath: kernel, initrdPath: join(work, 'no-initrd'), ram }), 'no-initrd', 'no such file');
    await rejects(loadKernel({ kernelPath: kernel, ram, reserved: [{ address: 0x1000000, size: 4096, type: 'reserved' }] }), 'vmlinux-ok', 'overlaps reserved');
    const elf32 = makeElf({ bits: 32, entry: 0x100000, segments: [{ paddr: 0x100000, data: new Uint8Array(16) }] });
    await rejects(loadKernel({ kernelPath: file('elf32', elf32), ram }), 'elf32', 'not a 64-bit');
  });

  it('rejects a truncated or corrupt bzImage with the file named', { skip: kernelPath === undefined ? 'no /boot/vmlinuz-*' : false }, async () => {
    const real = readFileSync(kernelPath!);
    const ram = ramLayout(256 * MiB);
    await rejects(loadKernel({ kernelPath: file('bz-truncated', real.subarray(0, 200_000)), ram, cacheDir: null }), 'bz-truncated', 'truncated');
    const corrupt = Uint8Array.from(real);
    const setupSects = corrupt[0x1f1] || 4;
    const payloadAt = (setupSects + 1) * 512 + view(corrupt).getUint32(0x248, true);
    corrupt.fill(0x33, payloadAt + 4096, payloadAt + 8192);
    await rejects(loadKernel({ kernelPath: file('bz-corrupt', corrupt), ram, cacheDir: null }), 'bz-corrupt', 'xz');
  });
});
