// Builds freestanding test guests from C and assembly sources with the machine's gcc and ld,
// into a temporary directory, cached by a hash of the sources, the flags and the compiler.
// Used by the boot tests (to check BootPlans) and by the machine tests (to run the guests).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface GuestSpec {
  /** Output name, e.g. "mb1". */
  readonly name: string;
  /** Folder of the sources, relative to the repository root. */
  readonly dir: string;
  /** .c and .S files in `dir`. */
  readonly sources: readonly string[];
  /** Linker script in `dir`. */
  readonly linkerScript: string;
  readonly arch: 'i386' | 'x86_64';
}

/** The guests in test/guests/boot (see docs/boot.md for their command-line conventions). */
export const BOOT_GUESTS = {
  multiboot1: { name: 'mb1', dir: 'test/guests/boot', sources: ['mb1-entry.S', 'mb1.c', 'common.c'], linkerScript: 'guest32.ld', arch: 'i386' },
  multiboot2: { name: 'mb2', dir: 'test/guests/boot', sources: ['mb2-entry.S', 'mb2.c', 'common.c'], linkerScript: 'guest32.ld', arch: 'i386' },
  linux64: { name: 'linux64', dir: 'test/guests/boot', sources: ['linux64-entry.S', 'linux64.c', 'common.c'], linkerScript: 'linux64.ld', arch: 'x86_64' },
} as const satisfies Record<string, GuestSpec>;

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

function compilerFlags(arch: GuestSpec['arch']): string[] {
  const common = ['-ffreestanding', '-fno-pic', '-fno-pie', '-fno-stack-protector', '-fno-asynchronous-unwind-tables', '-fno-builtin', '-nostdlib', '-nostdinc', '-O2', '-Wall', '-Wextra', '-Werror', '-mno-sse', '-mno-mmx', '-mno-80387'];
  return arch === 'i386' ? ['-m32', '-march=i686', ...common] : ['-m64', '-mno-red-zone', '-mcmodel=small', ...common];
}

/** Compiles and links a guest; returns the path of its ELF file. Throws with gcc's output on error. */
export function buildGuest(spec: GuestSpec): string {
  const root = repoRoot();
  const dir = join(root, spec.dir);
  const headers = readdirSync(dir).filter((f) => f.endsWith('.h')).sort();
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ spec, flags: compilerFlags(spec.arch) }));
  for (const f of [...spec.sources, spec.linkerScript, ...headers]) hash.update(f).update(readFileSync(join(dir, f)));
  hash.update(execFileSync('gcc', ['--version']));
  const key = hash.digest('hex').slice(0, 16);
  const outDir = join(tmpdir(), 'novm-test-guests');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${spec.name}-${key}.elf`);
  if (existsSync(out)) return out;
  const work = join(outDir, `${spec.name}-${key}.${process.pid}.tmp`);
  mkdirSync(work, { recursive: true });
  try {
    const objects = spec.sources.map((source) => {
      const object = join(work, `${source}.o`);
      execFileSync('gcc', [...compilerFlags(spec.arch), '-I', dir, '-c', join(dir, source), '-o', object], { stdio: ['ignore', 'pipe', 'pipe'] });
      return object;
    });
    const linked = join(work, 'guest.elf');
    execFileSync('ld', ['-m', spec.arch === 'i386' ? 'elf_i386' : 'elf_x86_64', '-nostdlib', '--build-id=none', '-z', 'noexecstack', '-z', 'max-page-size=4096', '-T', join(dir, spec.linkerScript), '-o', linked, ...objects], { stdio: ['ignore', 'pipe', 'pipe'] });
    renameSync(linked, out);
    return out;
  } catch (error) {
    const stderr = error && typeof error === 'object' && 'stderr' in error ? String(error.stderr) : '';
    throw new Error(`building test guest ${spec.name} failed: ${stderr || String(error)}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** FNV-1a 32-bit, as the guests compute it over modules and the initrd (common.c). */
export function fnv1a32(bytes: Uint8Array): number {
  let hash = 2166136261;
  for (const b of bytes) {
    hash ^= b;
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  return hash >>> 0;
}

/** The "len=<n> sum=0x<hash>" words a guest checks a module (or, with prefix "initrd_", the initrd) against. */
export function blobSpec(bytes: Uint8Array, prefix = ''): string {
  return `${prefix}len=${bytes.length} ${prefix}sum=0x${fnv1a32(bytes).toString(16)}`;
}
