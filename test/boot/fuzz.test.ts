// Hostile inputs: mutated kernels, bzImages (every compressor), multiboot images and modules go
// through loadKernel; the only error allowed out is an InputError, and nothing hangs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { loadKernel } from '../../src/boot/load-kernel.js';
import { InputError } from '../../src/common/errors.js';
import { MiB } from '../../src/memory/address.js';
import { ramLayout } from '../../src/memory/layout.js';
import { BOOT_GUESTS, buildGuest } from '../guests/build.js';
import { hostKernel, makeElf } from './fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'novm-boot-fuzz-'));
after(() => rmSync(work, { recursive: true, force: true }));
const ram = ramLayout(64 * MiB);
let counter = 0;

/** Mutations: overwrite a few bytes, and sometimes cut the file. */
function mutated(seed: Uint8Array, hotStart = 0, hotEnd = seed.length) {
  return fc
    .record({
      edits: fc.array(fc.record({ at: fc.integer({ min: hotStart, max: Math.max(hotStart, hotEnd - 1) }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
      cut: fc.option(fc.integer({ min: 0, max: seed.length }), { freq: 4 }),
    })
    .map(({ edits, cut }) => {
      const out = Uint8Array.from(seed);
      for (const e of edits) out[e.at] = e.value;
      return cut === null ? out : out.subarray(0, cut);
    });
}

async function onlyInputErrors(bytes: Uint8Array, extra: { modules?: Array<{ path: string }>; initrdPath?: string } = {}): Promise<void> {
  const kernelPath = join(work, `k${counter++}`);
  writeFileSync(kernelPath, bytes);
  try {
    const plan = await loadKernel({ kernelPath, cmdline: 'fuzz', ram, cacheDir: null, ...extra });
    assert.ok(plan.segments.length > 0);
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    assert.ok(!error.message.includes('\n'));
  } finally {
    rmSync(kernelPath, { force: true });
  }
}

describe('hostile boot inputs', () => {
  it('mutated ELF vmlinux images', { timeout: 60_000 }, async () => {
    const elf = makeElf({ bits: 64, entry: 0x1000000, segments: [{ paddr: 0x1000000, data: new Uint8Array(512).fill(0x90), memsz: 4096 }], notes: [{ name: 'Xen', type: 18, desc: new Uint8Array(8) }] });
    await fc.assert(fc.asyncProperty(mutated(elf, 0, 0x120), (b) => onlyInputErrors(b)), { numRuns: 300 });
  });

  it('mutated multiboot guests (headers and ELF)', { timeout: 60_000 }, async () => {
    for (const guest of [BOOT_GUESTS.multiboot1, BOOT_GUESTS.multiboot2]) {
      const image = readFileSync(buildGuest(guest));
      await fc.assert(fc.asyncProperty(mutated(image, 0, 0x1080), (b) => onlyInputErrors(b)), { numRuns: 200 });
    }
  });

  it('mutated bzImages with each compressor', { timeout: 120_000, skip: hostKernel() === undefined ? 'no /boot/vmlinuz-*' : false }, async () => {
    const real = readFileSync(hostKernel()!);
    const setupSects = real[0x1f1] || 4;
    const payloadAt = (setupSects + 1) * 512 + new DataView(real.buffer, real.byteOffset).getUint32(0x248, true);
    const small = makeElf({ bits: 64, entry: 0x1000000, segments: [{ paddr: 0x1000000, data: new Uint8Array(20_000).map((_, i) => (i * 13) & 0x7f) }] });
    const tools: Array<[string, string[]]> = [['gzip', ['-c']], ['xz', ['--check=crc32', '--x86', '--lzma2=preset=6', '-c']], ['zstd', ['-q', '-c']], ['lz4', ['-l', '-c']], ['bzip2', ['-c']], ['lzma', ['-c']]];
    for (const [tool, args] of tools) {
      const compressed = execFileSync(tool, args, { input: small });
      const size = new Uint8Array(4);
      new DataView(size.buffer).setUint32(0, small.length, true);
      const payload = tool === 'gzip' ? compressed : Buffer.concat([compressed, size]);
      const image = new Uint8Array(payloadAt + payload.length);
      image.set(real.subarray(0, payloadAt));
      image.set(payload, payloadAt);
      new DataView(image.buffer).setUint32(0x24c, payload.length, true);
      await onlyInputErrors(image); // the unmutated image boots
      await fc.assert(fc.asyncProperty(mutated(image, payloadAt, image.length), (b) => onlyInputErrors(b)), { numRuns: 60 });
      await fc.assert(fc.asyncProperty(mutated(image, 0x1f1, 0x270), (b) => onlyInputErrors(b)), { numRuns: 30 });
    }
  });
});
