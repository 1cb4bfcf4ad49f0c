// bzImage extraction on the host's real Debian kernel: the ELF must equal what the compressor's
// own command-line tool produces, for the real payload and for synthetic bzImages rebuilt with
// every compressor the kernel build supports; the content-hash cache must hit and be atomic.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, before } from 'node:test';
import { extractBzImage } from '../../src/boot/bzimage.js';
import { detectCompression, type Compression } from '../../src/boot/decompress/index.js';
import { parseElf } from '../../src/boot/elf.js';
import { cachedExtract, contentKey } from '../../src/boot/kernel-cache.js';
import { InputError } from '../../src/common/errors.js';
import { hostKernel } from './fixtures.js';

const kernelPath = hostKernel();
const skip = kernelPath === undefined ? 'no /boot/vmlinuz-* on this machine (install linux-image-amd64)' : false;

/** Where the payload lies, computed here independently of src/boot (boot.rst offsets). */
function payloadRange(image: Uint8Array): { start: number; length: number } {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const setupSects = image[0x1f1] || 4;
  return { start: (setupSects + 1) * 512 + v.getUint32(0x248, true), length: v.getUint32(0x24c, true) };
}

function runFilter(command: string, args: readonly string[], input: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr}`))));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

const DECOMPRESS_TOOL: Record<Exclude<Compression, 'lzo'>, string[]> = {
  gzip: ['gzip', '-dc'],
  xz: ['xz', '-dc'],
  zstd: ['zstd', '-dc', '--long=31'],
  lz4: ['lz4', '-dc'],
  bzip2: ['bzip2', '-dc'],
  lzma: ['xz', '--format=lzma', '-dc'],
};

/** Fast levels keep the test short; the kernel's decompressors do not depend on the level. */
const COMPRESS_TOOL: Record<Exclude<Compression, 'lzo'>, string[]> = {
  gzip: ['gzip', '-1', '-n', '-c'],
  xz: ['xz', '-T1', '--check=crc32', '--x86', '--lzma2=preset=0', '-c'], // as scripts/xz_wrap.sh, smaller preset
  zstd: ['zstd', '-1', '--long=27', '-q', '-c'], // the kernel's zstd22 uses a 2^27 window too
  lz4: ['lz4', '-l', '-1', '-c'],
  bzip2: ['bzip2', '-1', '-c'],
  lzma: ['lzma', '-1', '-c'],
};

function u32le(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

/** The real bzImage with its payload replaced, as the kernel build would have written it. */
function rebuildBzImage(real: Uint8Array, compressed: Uint8Array, format: Compression, elfSize: number): Uint8Array {
  const { start } = payloadRange(real);
  // Every format but gzip gets the uncompressed size appended (Makefile.lib size_append).
  const payload = format === 'gzip' ? compressed : Buffer.concat([compressed, u32le(elfSize)]);
  const out = new Uint8Array(start + payload.length);
  out.set(real.subarray(0, start));
  out.set(payload, start);
  new DataView(out.buffer).setUint32(0x24c, payload.length, true);
  return out;
}

describe('bzImage extraction (real kernel)', { skip }, () => {
  let real: Uint8Array;
  let reference: Buffer;
  before(async () => {
    real = readFileSync(kernelPath!);
    const { start, length } = payloadRange(real);
    const payload = real.subarray(start, start + length);
    const format = detectCompression(payload);
    assert.ok(format && format !== 'lzo', `unexpected payload format ${format}`);
    // The reference: the compressor's own tool, on the payload without the appended size.
    const body = format === 'gzip' ? payload : payload.subarray(0, payload.length - 4);
    const [command, ...args] = DECOMPRESS_TOOL[format];
    reference = await runFilter(command!, args, body);
  });

  it('extracts the same ELF as the command-line decompressor', () => {
    const t0 = performance.now();
    const extracted = extractBzImage(real);
    const ms = performance.now() - t0;
    assert.equal(Buffer.compare(Buffer.from(extracted.elf), reference), 0, 'extracted ELF differs from the reference');
    const elf = parseElf(extracted.elf);
    assert.equal(elf.bits, 64);
    assert.equal(elf.machine, 'x86_64');
    assert.ok(elf.loads.length >= 2);
    // vmlinux's e_entry is phys_startup_64 = the first PT_LOAD's physical address (16 MiB).
    assert.equal(Number(elf.entry), elf.loads[0]!.physicalAddress);
    assert.ok(extracted.header.version >= 0x0208);
    console.log(`# extracted ${extracted.compression} payload to ${extracted.elf.length} bytes in ${ms.toFixed(0)} ms`);
  });

  it('extracts synthetic bzImages made with every kernel compressor to the identical ELF', { timeout: 180_000 }, async () => {
    const formats = Object.keys(COMPRESS_TOOL) as Array<Exclude<Compression, 'lzo'>>;
    const compressed = new Map<Compression, Buffer>();
    // Two at a time: the machine has two cores.
    for (let i = 0; i < formats.length; i += 2) {
      await Promise.all(
        formats.slice(i, i + 2).map(async (format) => {
          const [command, ...args] = COMPRESS_TOOL[format];
          compressed.set(format, await runFilter(command!, args, reference));
        }),
      );
    }
    const timings: string[] = [];
    for (const format of formats) {
      const image = rebuildBzImage(real, compressed.get(format)!, format, reference.length);
      const t0 = performance.now();
      const extracted = extractBzImage(image);
      timings.push(`${format} ${(performance.now() - t0).toFixed(0)} ms`);
      assert.equal(extracted.compression, format);
      assert.equal(extracted.elf.length, reference.length, `${format}: length`);
      assert.equal(Buffer.compare(Buffer.from(extracted.elf.buffer, extracted.elf.byteOffset, extracted.elf.length), reference), 0, `${format}: bytes differ`);
    }
    console.log(`# host extraction times: ${timings.join(', ')}`);
  });

  it('caches the extraction by content hash, atomically', () => {
    const dir = mkdtempSync(join(tmpdir(), 'novm-kcache-'));
    try {
      let extractions = 0;
      const extract = (): Uint8Array => {
        extractions++;
        return extractBzImage(real).elf;
      };
      const t0 = performance.now();
      const miss = cachedExtract(real, extract, { dir });
      const t1 = performance.now();
      const hit = cachedExtract(real, extract, { dir });
      const t2 = performance.now();
      assert.equal(miss.fromCache, false);
      assert.equal(hit.fromCache, true);
      assert.equal(extractions, 1);
      assert.equal(Buffer.compare(Buffer.from(hit.bytes), reference), 0);
      assert.deepEqual(readdirSync(dir), [`${contentKey(real)}.vmlinux`], 'only the entry, no temporary file');
      assert.ok(t2 - t1 < t1 - t0, `hit (${(t2 - t1).toFixed(0)} ms) should beat a miss (${(t1 - t0).toFixed(0)} ms)`);
      console.log(`# cache miss ${(t1 - t0).toFixed(0)} ms, hit ${(t2 - t1).toFixed(0)} ms`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an explicit unwritable cache directory is an InputError naming it; the default one only warns', () => {
    const dir = mkdtempSync(join(tmpdir(), 'novm-kcache-'));
    try {
      const blocker = join(dir, 'a-file');
      writeFileSync(blocker, 'not a directory');
      const bad = join(blocker, 'kernels');
      const tiny = new Uint8Array([1, 2, 3]);
      assert.throws(() => cachedExtract(tiny, () => new Uint8Array([9]), { dir: bad }), (e: unknown) => e instanceof InputError && e.message.includes(bad));
      const saved = process.env.XDG_CACHE_HOME;
      process.env.XDG_CACHE_HOME = blocker;
      try {
        const warnings: string[] = [];
        const result = cachedExtract(tiny, () => new Uint8Array([9]), { warn: (m) => warnings.push(m) });
        assert.deepEqual([...result.bytes], [9]);
        assert.equal(warnings.length, 1);
        assert.ok(warnings[0]!.includes(blocker));
      } finally {
        if (saved === undefined) delete process.env.XDG_CACHE_HOME;
        else process.env.XDG_CACHE_HOME = saved;
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the command-line tools exist', () => {
    for (const tool of ['gzip', 'xz', 'zstd', 'lz4', 'bzip2', 'lzma']) assert.equal(spawnSync(tool, ['--version']).error, undefined, tool);
  });
});

