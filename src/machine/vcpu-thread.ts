// The main thread's handle on one vCPU worker: start, pause, resume, stop, kick.
import { Worker } from 'node:worker_threads';
import { RUN } from '../kvm/layouts.js';
import type { KvmVcpu } from '../kvm/vcpu.js';
import * as libc from '../native/libc.js';
import type { GuestRegion } from '../memory/guest-memory.js';
import type { LocalDeviceSpec } from './local-devices.js';
import { CTRL, Command, VcpuStatus } from './shared-state.js';
import type { VcpuExitReport, VcpuWorkerData } from './vcpu-messages.js';

let kickHandlerInstalled = false;

/**
 * KVM_RUN returns EINTR only if the kick signal has a real handler (otherwise SIGUSR2 would
 * kill the process); a no-op listener makes libuv install one process-wide.
 */
function installKickHandler(): void {
  if (kickHandlerInstalled) return;
  process.on('SIGUSR2', () => {});
  kickHandlerInstalled = true;
}

export class VcpuThread {
  readonly control = new SharedArrayBuffer(CTRL.length * 4);
  private readonly words = new Int32Array(this.control);
  private readonly run: libc.Mapping;
  private readonly runBytes: Uint8Array;
  private worker: Worker | undefined;
  private exited: Promise<void> | undefined;
  stats = { exits: 0, fixups: 0, sinkWrites: 0, sinkReads: 0 };

  constructor(readonly vcpu: KvmVcpu) {
    this.run = vcpu.mapRun();
    this.runBytes = new Uint8Array(libc.viewOf(this.run.address, vcpu.mmapSize));
  }

  start(machineState: SharedArrayBuffer, mailbox: SharedArrayBuffer, localDevices: readonly LocalDeviceSpec[], memoryRegions: readonly GuestRegion[], onReport: (report: VcpuExitReport) => void): void {
    installKickHandler();
    const workerData: VcpuWorkerData = {
      vcpuFd: this.vcpu.fd, vcpuId: this.vcpu.id, mmapSize: this.vcpu.mmapSize,
      control: this.control, machineState, mailbox, localDevices,
      // Plain descriptors only: the mapping objects hold koffi pointers that cannot be cloned.
      memoryRegions: memoryRegions.map((r) => ({ start: r.start, size: r.size, fd: r.fd, fdOffset: r.fdOffset, hostAddress: r.hostAddress })),
    };
    const worker = new Worker(new URL('./vcpu-worker.js', import.meta.url), { workerData, stdout: false, stderr: false });
    this.worker = worker;
    worker.on('message', (message: VcpuExitReport) => {
      if (message.type === 'stopped') this.stats = { exits: message.exits, fixups: message.fixups, sinkWrites: message.sinkWrites, sinkReads: message.sinkReads };
      onReport(message);
    });
    this.exited = new Promise((resolve) => {
      worker.on('error', (error) => {
        onReport({ type: 'exit', vcpuId: this.vcpu.id, cause: 4, value: this.vcpu.id, detail: `vCPU worker failed: ${error.message}`, state: '' });
      });
      worker.on('exit', () => resolve());
    });
  }

  get status(): VcpuStatus {
    return Atomics.load(this.words, CTRL.status) as VcpuStatus;
  }

  /** Makes KVM_RUN return now (or right at its next entry) so the worker looks at its command. */
  kick(): void {
    this.runBytes[RUN.immediate_exit] = 1;
    const low = BigInt(Atomics.load(this.words, CTRL.threadLow) >>> 0);
    const high = BigInt(Atomics.load(this.words, CTRL.threadHigh) >>> 0);
    const thread = (high << 32n) | low;
    if (thread !== 0n && this.status !== VcpuStatus.Exited) libc.pthreadKill(thread, libc.SIGUSR2);
  }

  private command(command: Command): void {
    Atomics.store(this.words, CTRL.command, command);
    Atomics.notify(this.words, CTRL.command);
    this.kick();
  }

  pause(): void {
    this.command(Command.Pause);
  }

  resume(): void {
    Atomics.store(this.words, CTRL.command, Command.Run);
    Atomics.notify(this.words, CTRL.command);
  }

  /** Stops the worker; keeps kicking until it has left KVM_RUN (a signal can race with entry). */
  async stop(): Promise<void> {
    if (this.worker === undefined || this.exited === undefined) return;
    this.command(Command.Stop);
    let done = false;
    const exited = this.exited.then(() => { done = true; });
    while (!done) {
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20))]);
      if (!done) this.kick();
    }
  }

  /** Waits until the worker reports the given status (for pause), kicking as needed. */
  async waitForStatus(status: VcpuStatus, timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.status !== status && this.status !== VcpuStatus.Exited) {
      if (Date.now() > deadline) return false;
      const r = Atomics.waitAsync(this.words, CTRL.status, this.status, 20);
      if (r.async) await r.value;
      if (this.status !== status) this.kick();
    }
    return this.status === status;
  }

  release(): void {
    libc.munmap(this.run);
    this.vcpu.close();
  }
}
