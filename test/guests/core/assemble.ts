// Builds the core test guests (assembly in this folder) with the machine's binutils, into flat
// binaries loaded at 1 MiB and entered in 32-bit protected mode. Cached by source hash.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { repoRoot } from '../build.js';
import type { BootPlan, CpuStartState } from '../../../src/boot/boot-plan.js';
import { planFlatBinary } from '../../../src/boot/flat-binary.js';

export { repoRoot };

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

export function flatGuestPlan(name: string, gpr: CpuStartState['gpr'] = {}): BootPlan {
  return planFlatBinary({ bytes: readFileSync(assembleGuest(name)), loadAddress: GUEST_LOAD_ADDRESS, gpr, what: `test guest ${name}` });
}
