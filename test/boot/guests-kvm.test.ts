// End to end on KVM: the boot test guests, loaded by src/boot and run by novm's machine, must
// report only PASS lines and exit 0; a guest told a wrong expectation must report FAIL and exit 1
// (so the guests' checks can fail). Skips without /dev/kvm.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { BootPlan } from '../../src/boot/boot-plan.js';
import { loadKernel, type LoadKernelOptions } from '../../src/boot/load-kernel.js';
import { Machine } from '../../src/machine/machine.js';
import { MiB } from '../../src/memory/address.js';
import { ramLayout } from '../../src/memory/layout.js';
import { Uart16550 } from '../../src/platform/serial/uart16550.js';
import { blobSpec, BOOT_GUESTS, buildGuest } from '../guests/build.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';
const work = mkdtempSync(join(tmpdir(), 'novm-boot-kvm-'));
after(() => rmSync(work, { recursive: true, force: true }));

const blob = new Uint8Array(30_000).map((_, i) => (i * 31 + 7) & 0xff);
const blobPath = join(work, 'blob');
writeFileSync(blobPath, blob);
const MEMORY = 64 * MiB;

async function run(options: Omit<LoadKernelOptions, 'ram'>): Promise<{ status: number | undefined; kind: string; serial: string; plan: BootPlan }> {
  const plan = await loadKernel({ ...options, ram: ramLayout(MEMORY) });
  let serial = '';
  // novm's own UART: the guests poll its line status register before each byte.
  const uart = new Uart16550({ irq: { setLevel: () => {}, trigger: () => {} }, output: (byte) => { serial += String.fromCharCode(byte); } });
  const machine = Machine.create({ cpus: 1, memoryBytes: MEMORY, boot: plan, attachDevices: (ctx) => ctx.pio.insert(0x3f8, 8, uart) });
  machine.start();
  const timer = setTimeout(() => void machine.stop('test timeout'), 60_000);
  const exit = await machine.exited;
  clearTimeout(timer);
  return { status: exit.kind === 'debug-exit' ? exit.status : undefined, kind: exit.kind, serial, plan };
}

function assertAllPass(result: { status: number | undefined; kind: string; serial: string }, expected: readonly string[]): void {
  assert.equal(result.kind, 'debug-exit', result.serial);
  assert.ok(result.serial.includes('DONE\n'), result.serial);
  assert.ok(!result.serial.includes('FAIL'), result.serial);
  for (const what of expected) assert.ok(result.serial.includes(`PASS ${what}\n`), `PASS ${what} missing:\n${result.serial}`);
  assert.equal(result.status, 0);
}

describe('boot test guests on KVM', { skip }, () => {
  it('multiboot v1 guest', { timeout: 90_000 }, async () => {
    const r = await run({ kernelPath: buildGuest(BOOT_GUESTS.multiboot1), cmdline: 'novm.test=mb1 ram=64 mods=1', modules: [{ path: blobPath, cmdline: `blob ${blobSpec(blob)}` }] });
    assertAllPass(r, ['magic', 'info-flags', 'cmdline', 'meminfo', 'mmap-ram-total', 'mmap-covers-image', 'module-count', 'module0']);
  });

  it('multiboot2 guest', { timeout: 90_000 }, async () => {
    const rsdp = new Uint8Array(20);
    rsdp.set(new TextEncoder().encode('RSD PTR '));
    const r = await run({ kernelPath: buildGuest(BOOT_GUESTS.multiboot2), cmdline: 'novm.test=mb2 ram=64 mods=1 rsdp=1', rsdp, modules: [{ path: blobPath, cmdline: `blob ${blobSpec(blob)}` }] });
    assertAllPass(r, ['magic', 'end-tag', 'cmdline', 'meminfo', 'mmap-tag', 'mmap-ram-total', 'acpi-rsdp', 'module-count', 'module0']);
  });

  it('64-bit Linux-like guest (64-bit boot protocol, boot_params, initrd)', { timeout: 90_000 }, async () => {
    const r = await run({ kernelPath: buildGuest(BOOT_GUESTS.linux64), initrdPath: blobPath, rsdpAddress: 0xe0000, cmdline: `novm.test=linux64 ram=64 rsdp=0xe0000 ${blobSpec(blob, 'initrd_')}` });
    assertAllPass(r, ['paging', 'long-mode', 'interrupts-off', 'selectors', 'setup-header', 'type-of-loader', 'cmdline', 'mmap-ram-total', 'acpi-rsdp-addr', 'initrd-placement', 'initrd']);
  });

  it('a wrong expectation makes the guest report FAIL and exit 1', { timeout: 90_000 }, async () => {
    const wrong = new Uint8Array(blob);
    wrong[100] = wrong[100]! ^ 1;
    const r = await run({ kernelPath: buildGuest(BOOT_GUESTS.linux64), initrdPath: blobPath, cmdline: `novm.test=linux64 ram=128 ${blobSpec(wrong, 'initrd_')}` });
    assert.ok(r.serial.includes('FAIL mmap-ram-total'), r.serial);
    assert.ok(r.serial.includes('FAIL initrd '), r.serial);
    assert.equal(r.status, 1);
  });
});
