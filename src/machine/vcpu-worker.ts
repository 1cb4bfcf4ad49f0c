// A vCPU worker thread: KVM_RUN in a synchronous loop, exits dispatched to the worker's local
// buses and, for everything else, through a mailbox to the main thread's buses. Nothing on the
// exit path allocates: the kvm_run page is read through one DataView, accesses go through
// preallocated scratch arrays.
import { parentPort, workerData } from 'node:worker_threads';
import { Bus } from '../bus/bus.js';
import * as K from '../kvm/constants.js';
import { RUN } from '../kvm/layouts.js';
import { KvmVcpu } from '../kvm/vcpu.js';
import * as libc from '../native/libc.js';
import { memoryFromDescriptors } from '../memory/memfd-memory.js';
import { completeInstruction } from './emulation-fixups.js';
import { CountingSinkDevice, DebugExitDevice, type LocalDeviceSpec } from './local-devices.js';
import { AccessKind, CTRL, Command, ExitCause, MACHINE, MAILBOX, MAILBOX_DATA_BYTE_OFFSET, VcpuStatus } from './shared-state.js';
import type { VcpuExitReport, VcpuWorkerData } from './vcpu-messages.js';

const data = workerData as VcpuWorkerData;
const control = new Int32Array(data.control);
const machine = new Int32Array(data.machineState);
const mailbox = new Int32Array(data.mailbox);
const mailboxBytes = new Uint8Array(data.mailbox, MAILBOX_DATA_BYTE_OFFSET, 8);
const vcpu = new KvmVcpu(data.vcpuFd, data.vcpuId, data.mmapSize);
const runMapping = vcpu.mapRun();
const runBuffer = libc.viewOf(runMapping.address, data.mmapSize);
const run = new DataView(runBuffer);
const runBytes = new Uint8Array(runBuffer);

// The worker's own view of guest RAM (same pages), for completing emulation failures.
const memory = memoryFromDescriptors(data.memoryRegions);
const pioBus = new Bus();
const mmioBus = new Bus();
const sinks: CountingSinkDevice[] = [];

function report(message: VcpuExitReport): void {
  parentPort!.postMessage(message);
}

/** Records the machine's exit cause (the first one wins) and tells the main thread. */
function endMachine(cause: ExitCause, value: number, detail: string): void {
  if (Atomics.compareExchange(machine, MACHINE.exitCause, ExitCause.None, cause) === ExitCause.None) {
    Atomics.store(machine, MACHINE.exitValue, value);
  }
  report({ type: 'exit', vcpuId: data.vcpuId, cause, value, detail, state: cause === ExitCause.Error || cause === ExitCause.TripleFault ? describeState() : '' });
}

for (const spec of data.localDevices as readonly LocalDeviceSpec[]) {
  if (spec.kind === 'debug-exit') {
    pioBus.insert(spec.base, 1, new DebugExitDevice((status) => {
      endMachine(ExitCause.DebugExit, status, `guest wrote ${status} to the debug-exit port`);
      Atomics.store(control, CTRL.command, Command.Stop);
    }));
  } else {
    const sink = new CountingSinkDevice();
    sinks.push(sink);
    (spec.space === 'pio' ? pioBus : mmioBus).insert(spec.base, spec.size, sink);
  }
}

// Scratch arrays per access size: devices get an exact-size array and must not keep it.
const scratch: Uint8Array[] = [new Uint8Array(0), new Uint8Array(1), new Uint8Array(2), new Uint8Array(3), new Uint8Array(4),
  new Uint8Array(5), new Uint8Array(6), new Uint8Array(7), new Uint8Array(8)];

/** Forwards one access to the main thread and waits for it to be handled. */
function remote(kind: AccessKind, address: number, buffer: Uint8Array): void {
  Atomics.store(mailbox, MAILBOX.kind, kind);
  Atomics.store(mailbox, MAILBOX.size, buffer.length);
  Atomics.store(mailbox, MAILBOX.addressLow, address % 0x1_0000_0000);
  Atomics.store(mailbox, MAILBOX.addressHigh, Math.floor(address / 0x1_0000_0000));
  if (kind === AccessKind.PioWrite || kind === AccessKind.MmioWrite) mailboxBytes.set(buffer);
  const seq = Atomics.load(mailbox, MAILBOX.responseSeq);
  Atomics.add(mailbox, MAILBOX.requestSeq, 1);
  Atomics.notify(mailbox, MAILBOX.requestSeq);
  while (Atomics.load(mailbox, MAILBOX.responseSeq) === seq) {
    if (Atomics.load(mailbox, MAILBOX.closed) !== 0) return;
    Atomics.wait(mailbox, MAILBOX.responseSeq, seq, 100);
  }
  if (kind === AccessKind.PioRead || kind === AccessKind.MmioRead) {
    for (let i = 0; i < buffer.length; i++) buffer[i] = mailboxBytes[i]!;
  }
}

function handleIo(): void {
  const port = run.getUint16(RUN.io_port, true);
  const size = run.getUint8(RUN.io_size);
  const count = run.getUint32(RUN.io_count, true);
  const isOut = run.getUint8(RUN.io_direction) === K.KVM_EXIT_IO_OUT;
  let offset = Number(run.getBigUint64(RUN.io_data_offset, true));
  const buffer = scratch[size];
  if (buffer === undefined || size === 0) return;
  for (let i = 0; i < count; i++, offset += size) {
    if (offset + size > runBytes.length) return;
    if (isOut) {
      for (let b = 0; b < size; b++) buffer[b] = runBytes[offset + b]!;
      if (!pioBus.claims(port)) remote(AccessKind.PioWrite, port, buffer);
      else pioBus.write(port, buffer);
    } else {
      if (!pioBus.claims(port)) remote(AccessKind.PioRead, port, buffer);
      else pioBus.read(port, buffer);
      for (let b = 0; b < size; b++) runBytes[offset + b] = buffer[b]!;
    }
  }
}

function handleMmio(): void {
  const address = Number(run.getBigUint64(RUN.mmio_phys_addr, true));
  const length = run.getUint32(RUN.mmio_len, true);
  const buffer = scratch[length];
  if (buffer === undefined || length === 0) return;
  if (run.getUint8(RUN.mmio_is_write) !== 0) {
    for (let b = 0; b < length; b++) buffer[b] = runBytes[RUN.mmio_data + b]!;
    if (!mmioBus.claims(address)) remote(AccessKind.MmioWrite, address, buffer);
    else mmioBus.write(address, buffer);
  } else {
    if (!mmioBus.claims(address)) remote(AccessKind.MmioRead, address, buffer);
    else mmioBus.read(address, buffer);
    for (let b = 0; b < length; b++) runBytes[RUN.mmio_data + b] = buffer[b]!;
  }
}

function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

function describeState(): string {
  try {
    const r = vcpu.getRegs();
    const s = vcpu.getSregs();
    return [
      `vcpu ${data.vcpuId}: rip=${hex(r.rip)} rsp=${hex(r.rsp)} rflags=${hex(r.rflags)}`,
      `  rax=${hex(r.rax)} rbx=${hex(r.rbx)} rcx=${hex(r.rcx)} rdx=${hex(r.rdx)} rsi=${hex(r.rsi)} rdi=${hex(r.rdi)} rbp=${hex(r.rbp)}`,
      `  cr0=${hex(s.cr0)} cr2=${hex(s.cr2)} cr3=${hex(s.cr3)} cr4=${hex(s.cr4)} efer=${hex(s.efer)}`,
      `  cs=${hex(s.cs.selector)} base=${hex(s.cs.base)} l=${s.cs.l} db=${s.cs.db} ss=${hex(s.ss.selector)} gdt=${hex(s.gdt.base)}/${s.gdt.limit} idt=${hex(s.idt.base)}/${s.idt.limit}`,
    ].join('\n');
  } catch (error) {
    return `vcpu ${data.vcpuId}: registers unavailable (${String(error)})`;
  }
}

function handleInternalError(): boolean {
  const suberror = run.getUint32(RUN.internal_suberror, true);
  if (suberror === K.KVM_INTERNAL_ERROR_EMULATION) {
    const size = Math.min(run.getUint8(RUN.emulation_insn_size), 15);
    const bytes = runBytes.slice(RUN.emulation_insn_bytes, RUN.emulation_insn_bytes + size);
    if (size > 0 && completeInstruction(vcpu, bytes, memory) !== undefined) {
      fixups++;
      return true;
    }
    const insn = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
    endMachine(ExitCause.Error, data.vcpuId, `KVM could not emulate an instruction (bytes: ${insn || 'none reported'})`);
    return false;
  }
  endMachine(ExitCause.Error, data.vcpuId, `KVM internal error, suberror ${suberror}`);
  return false;
}

let fixups = 0;

function loop(): void {
  const thread = BigInt(libc.pthreadSelf());
  Atomics.store(control, CTRL.threadLow, Number(thread & 0xffffffffn) | 0);
  Atomics.store(control, CTRL.threadHigh, Number(thread >> 32n) | 0);
  Atomics.store(control, CTRL.status, VcpuStatus.Running);
  Atomics.notify(control, CTRL.status);
  let exits = 0;
  for (;;) {
    const command = Atomics.load(control, CTRL.command);
    if (command === Command.Stop) break;
    if (command === Command.Pause) {
      runBytes[RUN.immediate_exit] = 0;
      Atomics.store(control, CTRL.status, VcpuStatus.Paused);
      Atomics.notify(control, CTRL.status);
      Atomics.wait(control, CTRL.command, Command.Pause);
      Atomics.store(control, CTRL.status, VcpuStatus.Running);
      Atomics.notify(control, CTRL.status);
      continue;
    }
    const result = libc.ioctlInt(data.vcpuFd, K.KVM_RUN, 0);
    if (result < 0) {
      const errno = libc.lastErrno();
      if (errno === libc.EINTR || errno === libc.EAGAIN) {
        // A kick: the main thread set immediate_exit and signalled; look at the command.
        runBytes[RUN.immediate_exit] = 0;
        continue;
      }
      endMachine(ExitCause.Error, data.vcpuId, `KVM_RUN failed: ${libc.errnoName(errno)}`);
      break;
    }
    exits++;
    if ((exits & 0xfff) === 0) Atomics.store(control, CTRL.exits, exits);
    switch (run.getUint32(RUN.exit_reason, true)) {
      case K.KVM_EXIT_IO:
        handleIo();
        break;
      case K.KVM_EXIT_MMIO:
        handleMmio();
        break;
      case K.KVM_EXIT_INTR:
        break;
      case K.KVM_EXIT_HLT:
        // Only reached without an in-kernel LAPIC; novm always has one, so HLT with
        // interrupts off is a guest that has stopped for good.
        endMachine(ExitCause.Error, data.vcpuId, 'vCPU halted with no way to wake it');
        return finish(exits);
      case K.KVM_EXIT_SHUTDOWN:
        endMachine(ExitCause.TripleFault, data.vcpuId, 'triple fault (KVM_EXIT_SHUTDOWN)');
        return finish(exits);
      case K.KVM_EXIT_SYSTEM_EVENT: {
        const type = run.getUint32(RUN.system_event_type, true);
        if (type === K.KVM_SYSTEM_EVENT_RESET) endMachine(ExitCause.Reboot, 0, 'guest requested a reset');
        else if (type === K.KVM_SYSTEM_EVENT_SHUTDOWN) endMachine(ExitCause.PowerOff, 0, 'guest powered off');
        else endMachine(ExitCause.Error, data.vcpuId, `guest system event ${type}`);
        return finish(exits);
      }
      case K.KVM_EXIT_INTERNAL_ERROR:
        if (!handleInternalError()) return finish(exits);
        break;
      case K.KVM_EXIT_FAIL_ENTRY:
        endMachine(ExitCause.Error, data.vcpuId, `VM entry failed, hardware reason ${hex(run.getBigUint64(RUN.fail_entry_reason, true))}`);
        return finish(exits);
      default:
        endMachine(ExitCause.Error, data.vcpuId, `unexpected KVM exit reason ${run.getUint32(RUN.exit_reason, true)}`);
        return finish(exits);
    }
  }
  finish(exits);
}

function finish(exits: number): void {
  Atomics.store(control, CTRL.exits, exits);
  Atomics.store(control, CTRL.status, VcpuStatus.Exited);
  Atomics.notify(control, CTRL.status);
  report({ type: 'stopped', vcpuId: data.vcpuId, exits, fixups, sinkWrites: sinks.reduce((n, s) => n + s.writes, 0), sinkReads: sinks.reduce((n, s) => n + s.reads, 0) });
  libc.munmap(runMapping);
}

loop();
