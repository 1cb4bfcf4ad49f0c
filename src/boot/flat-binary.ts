// A raw binary loaded at a fixed address and entered in 32-bit protected mode with flat
// segments and paging off (the state multiboot defines, without the information structure).
// novm's own small guests use it: the host probe and the core test guests.
import type { BootPlan, CpuStartState } from './boot-plan.js';
import { buildGdt, cpuStartState } from './x86-state.js';

/** Where the GDT of a flat binary goes: low RAM, clear of the BIOS data area. */
export const FLAT_BINARY_GDT_ADDRESS = 0x500;
export const FLAT_BINARY_STACK = 0x8000;

export interface FlatBinaryInput {
  readonly bytes: Uint8Array;
  readonly loadAddress: number;
  /** Entry point; default: the load address. */
  readonly entry?: number;
  readonly gpr?: CpuStartState['gpr'];
  readonly what: string;
}

export function planFlatBinary(input: FlatBinaryInput): BootPlan {
  const gdt = buildGdt('protected32');
  return {
    segments: [
      { address: FLAT_BINARY_GDT_ADDRESS, bytes: gdt, what: 'GDT' },
      { address: input.loadAddress, bytes: input.bytes, what: input.what },
    ],
    cpu: cpuStartState('protected32', { rip: input.entry ?? input.loadAddress, rsp: FLAT_BINARY_STACK, gdtBase: FLAT_BINARY_GDT_ADDRESS, gpr: input.gpr ?? {} }),
    loadedRange: { start: input.loadAddress, end: input.loadAddress + input.bytes.length },
    description: `${input.what}: flat binary at 0x${input.loadAddress.toString(16)}, 32-bit protected mode`,
  };
}
