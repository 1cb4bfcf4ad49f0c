// Control state shared between the main thread and vCPU worker threads (SharedArrayBuffer +
// Atomics; a worker blocked in KVM_RUN cannot receive messages, so this is how it is steered).

/** Per-vCPU control block, Int32Array indices. */
export const CTRL = {
  /** Requested by the main thread: one of Command. */
  command: 0,
  /** Reported by the worker: one of VcpuStatus. */
  status: 1,
  /** Worker's pthread_t, low and high 32 bits (for pthread_kill). */
  threadLow: 2,
  threadHigh: 3,
  /** Exits handled, for metrics. */
  exits: 4,
  length: 8,
} as const;

export const enum Command {
  Run = 0,
  Pause = 1,
  Stop = 2,
}

export const enum VcpuStatus {
  Starting = 0,
  Running = 1,
  Paused = 2,
  Exited = 3,
}

/** Machine-wide state, Int32Array indices. */
export const MACHINE = {
  /** 0 while running; otherwise the first ExitCause recorded wins. */
  exitCause: 0,
  /** Status byte for DebugExit, or the vCPU id for errors. */
  exitValue: 1,
  length: 4,
} as const;

export const enum ExitCause {
  None = 0,
  PowerOff = 1,
  Reboot = 2,
  TripleFault = 3,
  Error = 4,
  DebugExit = 5,
  Quit = 6,
}

/**
 * Mailbox through which a vCPU worker forwards a PIO/MMIO access that no device local to the
 * worker claims, to the devices on the main thread; the worker blocks until the answer.
 * Int32Array indices; the data lives in the same buffer as bytes from DATA_BYTE_OFFSET.
 */
export const MAILBOX = {
  requestSeq: 0,
  responseSeq: 1,
  /** 0 PIO read, 1 PIO write, 2 MMIO read, 3 MMIO write. */
  kind: 2,
  size: 3,
  addressLow: 4,
  addressHigh: 5,
  /** Set by the main thread to release workers when the machine stops. */
  closed: 6,
  length: 16,
} as const;
export const MAILBOX_DATA_BYTE_OFFSET = 8 * 4;
export const MAILBOX_BYTES = MAILBOX.length * 4;

export const enum AccessKind {
  PioRead = 0,
  PioWrite = 1,
  MmioRead = 2,
  MmioWrite = 3,
}
