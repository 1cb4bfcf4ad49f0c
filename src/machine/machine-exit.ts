// How a machine ended, for the CLI's exit status and the API.
import { ExitCause } from './shared-state.js';

export type MachineExitKind = 'poweroff' | 'reboot' | 'triple-fault' | 'error' | 'debug-exit' | 'quit';

export interface MachineExit {
  readonly kind: MachineExitKind;
  /** The guest's byte for debug-exit; 0 otherwise. */
  readonly status: number;
  readonly detail: string;
  /** Register dump of the vCPU that failed, for triple faults and errors. */
  readonly state: string;
}

export function exitKind(cause: ExitCause): MachineExitKind {
  switch (cause) {
    case ExitCause.PowerOff: return 'poweroff';
    case ExitCause.Reboot: return 'reboot';
    case ExitCause.TripleFault: return 'triple-fault';
    case ExitCause.DebugExit: return 'debug-exit';
    case ExitCause.Quit: return 'quit';
    default: return 'error';
  }
}

/** Process exit status for `novm boot`: documented in docs/cli.md. */
export function processStatus(exit: MachineExit): number {
  switch (exit.kind) {
    case 'poweroff': return 0;
    case 'quit': return 0;
    case 'debug-exit': return exit.status;
    case 'reboot': return 3;
    case 'triple-fault': return 4;
    case 'error': return 5;
  }
}
