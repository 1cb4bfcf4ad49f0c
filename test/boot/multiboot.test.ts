// Multiboot v1/v2 plans built from the real test guests (compiled here with gcc), decoded back
// field by field; header edge cases (a.out kludge, unsupported requirements); and the mb1 guest
// cross-checked under QEMU's own multiboot loader, so the guest's checks are known to be right.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { BootPlan } from '../../src/boot/boot-plan.js';
import { parseElf } from '../../src/boot/elf.js';
import { loadKernel } from '../../src/boot/load-kernel.js';
import { MEMORY_TYPE_CODE } from '../../src/boot/memory-map.js';
import { InputError } from '../../src/common/errors.js';
import { MiB } from '../../src/memory/address.js';
import { ramLayout } from '../../src/memory/layout.js';
import { blobSpec, BOOT_GUESTS, buildGuest } from '../guests/build.js';
import { cStringAt, makeElf, overlappingSegments, readPlan, view } from './fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'novm-boot-mb-'));
after(() => rmSync(work, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array | string): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const modA = pattern(10_000, 1);
const modB = pattern(70_001, 2);
const modules = () => [
  { path: file('mod-a', modA), cmdline: `mod-a ${blobSpec(modA)}` },
  { path: file('mod-b', modB), cmdline: `mod-b ${blobSpec(modB)}` },
];

function decodeMemoryMap(plan: BootPlan): number[][] {
  return (plan.memoryMap ?? []).map((e) => [e.address, e.size, MEMORY_TYPE_CODE[e.type]]);
}

function checkModulesPlaced(plan: BootPlan, placed: ReadonlyArray<{ start: number; end: number }>): void {
  placed.forEach((m, i) => {
    assert.equal(m.start % 4096, 0, 'page-aligned');
    assert.ok(m.start >= plan.loadedRange.end, 'after the kernel');
    assert.deepEqual(readPlan(plan, m.start, m.end - m.start), i === 0 ? modA : modB);
  });
  assert.ok(placed[1]!.start >= placed[0]!.end);
}

describe('multiboot v1', () => {
  it('plans the mb1 guest: magic, info structure, cmdline, mmap, modules', async () => {
    const kernelPath = buildGuest(BOOT_GUESTS.multiboot1);
    const cmdline = 'novm.test=mb1 ram=64 mods=2';
    const reserved = [{ address: 0x9fc00, size: 0x400, type: 'reserved' as const }];
    const plan = await loadKernel({ kernelPath, cmdline, modules: modules(), ram: ramLayout(64 * MiB), reserved });
    assert.equal(plan.protocol, 'multiboot1');
    assert.equal(plan.cpu.mode, 'protected32');
    assert.equal(plan.cpu.rip, Number(parseElf(readFileSync(kernelPath)).entry));
    assert.equal(plan.cpu.gpr.rax, 0x2badb002);
    assert.equal(plan.cpu.cr0 & 0x8000_0001, 1, 'PE on, PG off');
    assert.equal(plan.cpu.cs.db, true);
    assert.equal(plan.cpu.cs.limit, 0xffffffff);
    const infoAt = plan.cpu.gpr.rbx!;
    assert.ok(infoAt > 0 && infoAt + 88 < 2 ** 32);
    const info = view(readPlan(plan, infoAt, 88));
    const flags = info.getUint32(0, true);
    for (const bit of [0, 2, 3, 6, 9]) assert.ok(flags & (1 << bit), `flag bit ${bit}`);
    assert.equal(info.getUint32(4, true), 0x9fc00 / 1024, 'mem_lower');
    assert.equal(info.getUint32(8, true), (64 * MiB - 0x100000) / 1024, 'mem_upper');
    assert.equal(cStringAt(plan, info.getUint32(16, true)), cmdline);
    assert.equal(cStringAt(plan, info.getUint32(64, true)), 'novm');
    // mmap: entries of size 20 (+4), decoded back to the plan's memory map.
    const mmapLength = info.getUint32(44, true);
    const mmap = view(readPlan(plan, info.getUint32(48, true), mmapLength));
    const entries: number[][] = [];
    for (let at = 0; at < mmapLength; at += mmap.getUint32(at, true) + 4) {
      assert.equal(mmap.getUint32(at, true), 20);
      entries.push([Number(mmap.getBigUint64(at + 4, true)), Number(mmap.getBigUint64(at + 12, true)), mmap.getUint32(at + 20, true)]);
    }
    assert.deepEqual(entries, [[0, 0x9fc00, 1], [0x9fc00, 0x400, 2], [0xa0000, 64 * MiB - 0xa0000, 1]]);
    assert.deepEqual(entries, decodeMemoryMap(plan));
    // Modules.
    assert.equal(info.getUint32(20, true), 2);
    const mods = view(readPlan(plan, info.getUint32(24, true), 32));
    const placed = [0, 1].map((i) => ({ start: mods.getUint32(i * 16, true), end: mods.getUint32(i * 16 + 4, true), cmdline: cStringAt(plan, mods.getUint32(i * 16 + 8, true)) }));
    assert.deepEqual(placed.map((m) => m.cmdline), [`mod-a ${blobSpec(modA)}`, `mod-b ${blobSpec(modB)}`]);
    checkModulesPlaced(plan, placed);
    assert.deepEqual(overlappingSegments(plan), []);
  });

  it('loads an a.out-kludge image by the header address fields', async () => {
    // A flat image: header at offset 16 says header_addr 0x200010, load from 0x200000, 4 KiB
    // of file, bss to 0x203000, entry 0x200040.
    const image = new Uint8Array(4096).fill(0x90);
    const v = view(image);
    const flags = 0x0001_0003;
    v.setUint32(16, 0x1badb002, true);
    v.setUint32(20, flags, true);
    v.setUint32(24, (-(0x1badb002 + flags)) >>> 0, true);
    v.setUint32(28, 0x200010, true);
    v.setUint32(32, 0x200000, true);
    v.setUint32(36, 0x201000, true);
    v.setUint32(40, 0x203000, true);
    v.setUint32(44, 0x200040, true);
    const plan = await loadKernel({ kernelPath: file('aout', image), ram: ramLayout(16 * MiB) });
    assert.equal(plan.cpu.rip, 0x200040);
    assert.deepEqual(plan.loadedRange, { start: 0x200000, end: 0x203000 });
    const kernel = plan.segments.filter((s) => s.what.startsWith('kernel'));
    assert.deepEqual(kernel.map((s) => [s.address, s.bytes.length]), [[0x200000, 4096], [0x201000, 0x2000]]);
    assert.deepEqual(Uint8Array.from(kernel[0]!.bytes), image);
  });

  it('loads an ELF64 multiboot kernel by physical address', async () => {
    const header = new Uint8Array(12);
    const hv = view(header);
    hv.setUint32(0, 0x1badb002, true);
    hv.setUint32(4, 3, true);
    hv.setUint32(8, (-(0x1badb002 + 3)) >>> 0, true);
    const elf = makeElf({ bits: 64, entry: 0x300010, segments: [{ paddr: 0x300000, vaddr: 0xffffffff80300000n, data: new Uint8Array(64).fill(0xf4), memsz: 8192 }], extraHeader: { offset: 0x100, bytes: header } });
    const plan = await loadKernel({ kernelPath: file('mb1-elf64', elf), cmdline: 'x', ram: ramLayout(16 * MiB) });
    assert.equal(plan.protocol, 'multiboot1');
    assert.equal(plan.cpu.rip, 0x300010);
    assert.deepEqual(plan.loadedRange, { start: 0x300000, end: 0x302000 });
    assert.equal(plan.cpu.gpr.rax, 0x2badb002);
  });

  it('refuses unsupported requirement bits and bad address fields, naming the file', async () => {
    const image = new Uint8Array(256);
    const v = view(image);
    const flags = 0x0000_0010; // bit 4: unknown requirement
    v.setUint32(0, 0x1badb002, true);
    v.setUint32(4, flags, true);
    v.setUint32(8, (-(0x1badb002 + flags)) >>> 0, true);
    const path = file('mb1-bad-flags', image);
    await assert.rejects(loadKernel({ kernelPath: path, ram: ramLayout(16 * MiB) }), (e: unknown) => e instanceof InputError && e.message.includes(path) && e.message.includes('unsupported features'));
    const badChecksum = Uint8Array.from(image);
    view(badChecksum).setUint32(8, 1, true);
    await assert.rejects(loadKernel({ kernelPath: file('mb1-bad-sum', badChecksum), ram: ramLayout(16 * MiB) }), (e: unknown) => e instanceof InputError && e.message.includes('not an ELF vmlinux, bzImage or multiboot'));
    const missingModule = join(work, 'no-such-module');
    await assert.rejects(loadKernel({ kernelPath: buildGuest(BOOT_GUESTS.multiboot1), modules: [{ path: missingModule }], ram: ramLayout(16 * MiB) }), (e: unknown) => e instanceof InputError && e.message.includes(missingModule));
    const bigModule = file('big-module', new Uint8Array(20 * MiB));
    await assert.rejects(loadKernel({ kernelPath: buildGuest(BOOT_GUESTS.multiboot1), modules: [{ path: bigModule }], ram: ramLayout(16 * MiB) }), (e: unknown) => e instanceof InputError && e.message.includes(bigModule) && e.message.includes('no free guest RAM'));
  });
});

describe('multiboot v2', () => {
  function decodeTags(plan: BootPlan, at: number): Array<{ type: number; body: Uint8Array }> {
    const total = view(readPlan(plan, at, 8)).getUint32(0, true);
    const bytes = readPlan(plan, at, total);
    const tags: Array<{ type: number; body: Uint8Array }> = [];
    for (let p = 8; p < total; p = Math.ceil((p + view(bytes).getUint32(p + 4, true)) / 8) * 8) {
      const type = view(bytes).getUint32(p, true);
      const size = view(bytes).getUint32(p + 4, true);
      tags.push({ type, body: bytes.subarray(p + 8, p + size) });
      if (type === 0) break;
    }
    return tags;
  }

  it('plans the mb2 guest: magic, tags, cmdline, mmap, modules, ACPI RSDP copy', async () => {
    const kernelPath = buildGuest(BOOT_GUESTS.multiboot2);
    const cmdline = 'novm.test=mb2 ram=64 mods=2 rsdp=1';
    const rsdp = new Uint8Array(36);
    rsdp.set(new TextEncoder().encode('RSD PTR '));
    rsdp[15] = 2;
    view(rsdp).setUint32(20, 36, true);
    const plan = await loadKernel({ kernelPath, cmdline, modules: modules(), ram: ramLayout(64 * MiB), rsdp });
    assert.equal(plan.protocol, 'multiboot2');
    assert.equal(plan.cpu.gpr.rax, 0x36d76289);
    const infoAt = plan.cpu.gpr.rbx!;
    assert.equal(infoAt % 8, 0);
    const tags = decodeTags(plan, infoAt);
    assert.deepEqual(tags.map((t) => t.type), [1, 2, 3, 3, 4, 6, 15, 0]);
    const text = (b: Uint8Array): string => new TextDecoder().decode(b.subarray(0, b.indexOf(0)));
    assert.equal(text(tags[0]!.body), cmdline);
    assert.equal(text(tags[1]!.body), 'novm');
    const placed = [tags[2]!, tags[3]!].map((t) => ({ start: view(t.body).getUint32(0, true), end: view(t.body).getUint32(4, true), cmdline: text(t.body.subarray(8)) }));
    assert.deepEqual(placed.map((m) => m.cmdline), [`mod-a ${blobSpec(modA)}`, `mod-b ${blobSpec(modB)}`]);
    checkModulesPlaced(plan, placed);
    const meminfo = view(tags[4]!.body);
    assert.deepEqual([meminfo.getUint32(0, true), meminfo.getUint32(4, true)], [640, (64 * MiB - 0x100000) / 1024]);
    const mmap = view(tags[5]!.body);
    assert.equal(mmap.getUint32(0, true), 24);
    const entries = [];
    for (let at = 8; at < tags[5]!.body.length; at += 24) entries.push([Number(mmap.getBigUint64(at, true)), Number(mmap.getBigUint64(at + 8, true)), mmap.getUint32(at + 16, true)]);
    assert.deepEqual(entries, [[0, 64 * MiB, 1]]);
    assert.deepEqual(tags[6]!.body, rsdp);
    assert.deepEqual(overlappingSegments(plan), []);
  });

  it('refuses a required framebuffer tag, naming the file', async () => {
    // Header: magic, arch 0, length 32, checksum; framebuffer tag (type 5, required, size 20); end tag.
    const image = new Uint8Array(512);
    const v = view(image);
    const length = 8 * 2 + 24 + 8;
    v.setUint32(0, 0xe85250d6, true);
    v.setUint32(4, 0, true);
    v.setUint32(8, length, true);
    v.setUint32(12, (-(0xe85250d6 + length)) >>> 0, true);
    v.setUint16(16, 5, true);
    v.setUint16(18, 0, true);
    v.setUint32(20, 20, true);
    v.setUint16(40, 0, true);
    v.setUint32(44, 8, true);
    const path = file('mb2-fb', image);
    await assert.rejects(loadKernel({ kernelPath: path, ram: ramLayout(16 * MiB) }), (e: unknown) => e instanceof InputError && e.message.includes(path) && e.message.includes('tag 5'));
  });
});

describe('linux64 test guest', () => {
  it('plans the 64-bit Linux-like guest with an initrd', async () => {
    const kernelPath = buildGuest(BOOT_GUESTS.linux64);
    const initrd = pattern(50_000, 3);
    const cmdline = `novm.test=linux64 ram=64 rsdp=0xe0000 ${blobSpec(initrd, 'initrd_')}`;
    const plan = await loadKernel({ kernelPath, initrdPath: file('initrd', initrd), cmdline, ram: ramLayout(64 * MiB), rsdpAddress: 0xe0000 });
    assert.equal(plan.protocol, 'linux-64');
    assert.equal(plan.cpu.rip, 0x200000);
    const bp = view(readPlan(plan, plan.cpu.gpr.rsi!, 4096));
    assert.equal(cStringAt(plan, bp.getUint32(0x228, true)), cmdline);
    assert.deepEqual(readPlan(plan, bp.getUint32(0x218, true), bp.getUint32(0x21c, true)), initrd);
    assert.equal(Number(bp.getBigUint64(0x70, true)), 0xe0000);
  });
});

const qemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;

describe('the mb1 guest under QEMU\'s multiboot loader (checks the guest itself)', { skip: qemu ? false : 'qemu-system-x86_64 not installed' }, () => {
  it('passes every check and exits 0 through the debug-exit port', { timeout: 60_000 }, () => {
    const kernelPath = buildGuest(BOOT_GUESTS.multiboot1);
    // QEMU's -initrd takes "file args,file args"; the whole string is the module's command line.
    const initrd = modules().map((m) => `${m.path} ${m.cmdline}`).join(',');
    // QEMU's firmware reserves a little RAM below 1 MiB and at the top: allow 1 MiB of slack.
    const result = spawnSync('qemu-system-x86_64', ['-accel', 'tcg', '-m', '64', '-nographic', '-no-reboot', '-serial', 'stdio', '-monitor', 'none', '-display', 'none',
      '-device', 'isa-debug-exit,iobase=0x501,iosize=1', '-kernel', kernelPath, '-append', 'novm.test=mb1 ram=64 ram_slack_kib=1024 mods=2', '-initrd', initrd], { timeout: 50_000, encoding: 'utf8' });
    const out = result.stdout;
    assert.ok(out.includes('DONE'), `guest did not finish: ${out}\n${result.stderr}`);
    assert.ok(!out.includes('FAIL'), out);
    for (const what of ['magic', 'info-flags', 'cmdline', 'meminfo', 'mmap-ram-total', 'mmap-covers-image', 'module-count', 'module0', 'module1']) assert.ok(out.includes(`PASS ${what}\n`), `PASS ${what} missing:\n${out}`);
    // isa-debug-exit turns the byte v into exit status (v << 1) | 1.
    assert.equal(result.status, 1, `exit status ${result.status}`);
  });
});
