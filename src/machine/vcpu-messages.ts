// Messages and start-up data exchanged between the machine and its vCPU workers.
import type { GuestRegion } from '../memory/guest-memory.js';
import type { LocalDeviceSpec } from './local-devices.js';
import type { ExitCause } from './shared-state.js';

export interface VcpuWorkerData {
  readonly vcpuFd: number;
  readonly vcpuId: number;
  readonly mmapSize: number;
  readonly control: SharedArrayBuffer;
  readonly machineState: SharedArrayBuffer;
  readonly mailbox: SharedArrayBuffer;
  readonly localDevices: readonly LocalDeviceSpec[];
  readonly memoryRegions: readonly GuestRegion[];
}

export type VcpuExitReport =
  | { readonly type: 'exit'; readonly vcpuId: number; readonly cause: ExitCause; readonly value: number; readonly detail: string; readonly state: string }
  | { readonly type: 'stopped'; readonly vcpuId: number; readonly exits: number; readonly fixups: number; readonly sinkWrites: number; readonly sinkReads: number };
