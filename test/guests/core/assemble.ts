// Builds the core test guests (assembly in this folder) with the machine's binutils, into flat
// binaries loaded at 1 MiB and entered in 32-bit protected mode. Cached by source hash.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BootPlan, CpuStartState, SegmentState } from '../../../src/boot/boot-plan.js';

/** The repository root, found from this compiled file (dist/test/guests/core/...). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

export const GUEST_LOAD_ADDRESS = 0x100000;

/** Assembles test/guests/core/NAME.S into a flat binary; returns its path. */
export function assembleGuest(name: string): string {
  const source = resolve(repoRoot(), 'test/guests/core', `${name}.S`);
  // Includes are part of what the binary is made of, so they are part of the cache key.
  const text = Buffer.concat([readFileSync(source), readFileSync(resolve(repoRoot(), 'test/guests/core/common.inc'))]);
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'novm-test-guests');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${name}-${hash}.bin`);
  if (existsSync(out)) return out;
  const object = `${out}.${process.pid}.o`;
  execFileSync('as', ['--32', '-I', dirname(source), source, '-o', object]);
  execFileSync('ld', ['-m', 'elf_i386', '-Ttext', `0x${GUEST_LOAD_ADDRESS.toString(16)}`, '--oformat', 'binary', object, '-o', `${out}.${process.pid}`]);
  renameSync(`${out}.${process.pid}`, out);
  return out;
}

function flat(selector: number, type: number): SegmentState {
  return { base: 0, limit: 0xffffffff, selector, type, present: true, dpl: 0, db: true, s: true, l: false, g: true };
}

/** 32-bit protected mode, flat segments, paging off: how the core test guests start. */
export function protectedModeState(gpr: CpuStartState['gpr'] = {}): CpuStartState {
  return {
    mode: 'protected32', rip: GUEST_LOAD_ADDRESS, rsp: 0x8000, rflags: 2, gpr, cr0: 1, cr3: 0, cr4: 0, efer: 0,
    cs: flat(8, 0xb), ds: flat(0x10, 3), es: flat(0x10, 3), fs: flat(0x10, 3), gs: flat(0x10, 3), ss: flat(0x10, 3),
    tr: { base: 0, limit: 0xffff, selector: 0x18, type: 11, present: true, dpl: 0, db: false, s: false, l: false, g: false },
    ldt: { base: 0, limit: 0xffff, selector: 0, type: 2, present: true, dpl: 0, db: false, s: false, l: false, g: false },
    gdt: { base: 0, limit: 0 }, idt: { base: 0, limit: 0 },
  };
}

export function flatGuestPlan(name: string, gpr: CpuStartState['gpr'] = {}): BootPlan {
  const bytes = readFileSync(assembleGuest(name));
  return {
    segments: [{ address: GUEST_LOAD_ADDRESS, bytes, what: `test guest ${name}` }],
    cpu: protectedModeState(gpr),
    loadedRange: { start: GUEST_LOAD_ADDRESS, end: GUEST_LOAD_ADDRESS + bytes.length },
    description: `flat test guest ${name}`,
  };
}
