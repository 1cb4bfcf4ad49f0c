// Assembles a VM: KVM VM + in-kernel irqchip and PIT, memfd RAM, boot image, vCPU workers,
// and the main-thread buses on which platform and virtio devices are attached.
import type { BootPlan } from '../boot/boot-plan.js';
import type { InterruptLine } from '../bus/bus-device.js';
import { Bus } from '../bus/bus.js';
import * as K from '../kvm/constants.js';
import { KvmSystem, type CpuidEntry } from '../kvm/system.js';
import type { KvmVcpu } from '../kvm/vcpu.js';
import type { GsiRoute, KvmVm } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { KVM_IDENTITY_MAP_START, KVM_TSS_START, ramLayout } from '../memory/layout.js';
import { createMemfdMemory, releaseRegions, type MappedRegion } from '../memory/memfd-memory.js';
import { cpuidForVcpu } from '../platform/cpuid.js';
import { applyStartState } from './cpu-setup.js';
import type { LocalDeviceSpec } from './local-devices.js';
import { exitKind, type MachineExit } from './machine-exit.js';
import { MailboxServer } from './mailbox-server.js';
import { ExitCause, MACHINE, VcpuStatus } from './shared-state.js';
import type { VcpuExitReport } from './vcpu-messages.js';
import { VcpuThread } from './vcpu-thread.js';

export const DEBUG_EXIT_PORT = 0x501;
export const MAX_VCPUS = 254;

/** What device wiring code gets: the buses and a way to make interrupt lines. */
export interface DeviceContext {
  readonly vm: KvmVm;
  readonly memory: GuestMemory;
  readonly pio: Bus;
  readonly mmio: Bus;
  /** An interrupt line driving in-kernel irqchip input `gsi` (IOAPIC pin, and PIC for < 16). */
  irqLine(gsi: number): InterruptLine;
  /** Ends the machine from the main thread (power-off register, reset, quit key). */
  end(kind: 'poweroff' | 'reboot' | 'quit', detail: string): void;
}

export interface MachineOptions {
  readonly cpus: number;
  readonly memoryBytes: number;
  /** What to load and how the boot vCPU starts (from src/boot). */
  readonly boot: BootPlan;
  /** CPUID entries for each vCPU, from the platform's policy; default: KVM's supported set. */
  readonly cpuid?: (vcpuIndex: number, supported: readonly CpuidEntry[]) => CpuidEntry[];
  readonly msrs?: ReadonlyArray<{ index: number; value: bigint }>;
  /** Extra data to place in guest memory (ACPI tables...). */
  readonly extraSegments?: ReadonlyArray<{ address: number; bytes: Uint8Array }>;
  /** Devices that live inside every vCPU worker (the debug-exit port is always there). */
  readonly localDevices?: readonly LocalDeviceSpec[];
  /** Attaches platform and virtio devices to the main-thread buses. */
  readonly attachDevices?: (context: DeviceContext) => void | (() => void);
}

/**
 * The PC interrupt wiring the ACPI MADT describes: ISA IRQs 0-15 on the 8259 pair, GSIs 0-23 on
 * the IOAPIC, and the interrupt source override IRQ 0 -> GSI 2 (the PIT drives IOAPIC pin 2,
 * as on real chipsets). KVM's default table puts IRQ 0 on pin 0, which contradicts the MADT.
 */
export function pcGsiRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let irq = 0; irq < 16; irq++) {
    if (irq === 2) continue; // the cascade
    routes.push({ gsi: irq, kind: 'irqchip', chip: irq < 8 ? K.KVM_IRQCHIP_PIC_MASTER : K.KVM_IRQCHIP_PIC_SLAVE, pin: irq % 8 });
  }
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi === 2) continue;
    routes.push({ gsi, kind: 'irqchip', chip: K.KVM_IRQCHIP_IOAPIC, pin: gsi === 0 ? 2 : gsi });
  }
  return routes;
}

export class Machine {
  private readonly machineState = new SharedArrayBuffer(MACHINE.length * 4);
  private readonly machineWords = new Int32Array(this.machineState);
  private readonly threads: VcpuThread[] = [];
  private readonly mailboxes: MailboxServer[] = [];
  private readonly pio = new Bus();
  private readonly mmio = new Bus();
  private exitResolve!: (exit: MachineExit) => void;
  readonly exited: Promise<MachineExit> = new Promise((resolve) => { this.exitResolve = resolve; });
  private exitInfo: MachineExit | undefined;
  private stopping: Promise<void> | undefined;
  private detachDevices: (() => void) | undefined;

  private constructor(
    readonly system: KvmSystem,
    readonly vm: KvmVm,
    readonly memory: GuestMemory,
    private readonly regions: MappedRegion[],
    private readonly options: MachineOptions,
  ) {}

  static create(options: MachineOptions): Machine {
    if (!Number.isInteger(options.cpus) || options.cpus < 1 || options.cpus > MAX_VCPUS) {
      throw new RangeError(`CPU count must be between 1 and ${MAX_VCPUS}`);
    }
    const layout = ramLayout(options.memoryBytes);
    const system = KvmSystem.open();
    let vm: KvmVm | undefined;
    let regions: MappedRegion[] = [];
    try {
      for (const [cap, name] of [[K.KVM_CAP_IRQCHIP, 'an in-kernel irqchip'], [K.KVM_CAP_USER_MEMORY, 'user memory'],
        [K.KVM_CAP_SET_TSS_ADDR, 'KVM_SET_TSS_ADDR'], [K.KVM_CAP_PIT2, 'an in-kernel PIT'], [K.KVM_CAP_IRQFD, 'irqfd'],
        [K.KVM_CAP_IOEVENTFD, 'ioeventfd'], [K.KVM_CAP_IMMEDIATE_EXIT, 'immediate_exit'], [K.KVM_CAP_IRQ_ROUTING, 'irq routing'],
        [K.KVM_CAP_EXT_CPUID, 'KVM_SET_CPUID2']] as const) {
        system.requireExtension(cap, name);
      }
      const maxVcpus = system.checkExtension(K.KVM_CAP_MAX_VCPUS) || system.checkExtension(K.KVM_CAP_NR_VCPUS);
      if (options.cpus > maxVcpus) throw new RangeError(`this host's KVM supports at most ${maxVcpus} vCPUs`);
      vm = system.createVm();
      vm.setTssAddress(KVM_TSS_START);
      vm.setIdentityMapAddress(KVM_IDENTITY_MAP_START);
      vm.createIrqchip();
      vm.setGsiRouting(pcGsiRoutes());
      vm.createPit2();
      const mapped = createMemfdMemory(layout);
      regions = mapped.regions;
      regions.forEach((r, slot) => vm!.setUserMemoryRegion(slot, r.start, r.size, r.hostAddress));
      const machine = new Machine(system, vm, mapped.memory, regions, options);
      machine.load();
      return machine;
    } catch (error) {
      releaseRegions(regions);
      vm?.close();
      system.close();
      throw error;
    }
  }

  private load(): void {
    for (const segment of this.options.boot.segments) {
      if (!this.memory.isValidRange(segment.address, segment.bytes.length)) {
        throw new RangeError(`${segment.what} (0x${segment.address.toString(16)}, ${segment.bytes.length} bytes) does not fit in guest RAM`);
      }
      this.memory.write(segment.address, segment.bytes);
    }
    for (const segment of this.options.extraSegments ?? []) this.memory.write(segment.address, segment.bytes);
    const supported = this.system.supportedCpuid();
    for (let i = 0; i < this.options.cpus; i++) {
      const vcpu: KvmVcpu = this.vm.createVcpu(i);
      this.threads.push(new VcpuThread(vcpu));
      vcpu.setCpuid(this.options.cpuid ? this.options.cpuid(i, supported) : cpuidForVcpu(supported, { vcpuIndex: i, vcpuCount: this.options.cpus, apicId: i }));
      if (this.options.msrs && this.options.msrs.length > 0) vcpu.setMsrs(this.options.msrs);
      // Application processors stay in wait-for-SIPI; the guest starts them via its LAPIC.
      if (i === 0) applyStartState(vcpu, this.options.boot.cpu);
    }
  }

  private deviceContext(): DeviceContext {
    const vm = this.vm;
    return {
      vm, memory: this.memory, pio: this.pio, mmio: this.mmio,
      irqLine(gsi: number): InterruptLine {
        return {
          setLevel: (high) => vm.irqLine(gsi, high),
          trigger: () => { vm.irqLine(gsi, true); vm.irqLine(gsi, false); },
        };
      },
      end: (kind, detail) => this.endFromMain(kind === 'poweroff' ? ExitCause.PowerOff : kind === 'reboot' ? ExitCause.Reboot : ExitCause.Quit, detail),
    };
  }

  /** Starts every vCPU. Resolves `exited` when the guest powers off, resets, faults or quits. */
  start(): void {
    const detach = this.options.attachDevices?.(this.deviceContext());
    if (typeof detach === 'function') this.detachDevices = detach;
    const local: LocalDeviceSpec[] = [{ kind: 'debug-exit', space: 'pio', base: DEBUG_EXIT_PORT }, ...(this.options.localDevices ?? [])];
    for (const thread of this.threads) {
      const mailbox = new MailboxServer(this.pio, this.mmio, (error) => this.endFromMain(ExitCause.Error, `device error: ${String(error)}`));
      this.mailboxes.push(mailbox);
      mailbox.start();
      thread.start(this.machineState, mailbox.buffer, local, this.regions, (report) => this.onReport(report));
    }
  }

  private onReport(report: VcpuExitReport): void {
    if (report.type !== 'exit') return;
    if (this.exitInfo === undefined) this.exitInfo = { kind: exitKind(report.cause), status: report.value, detail: report.detail, state: report.state };
    void this.shutdown();
  }

  private endFromMain(cause: ExitCause, detail: string): void {
    if (Atomics.compareExchange(this.machineWords, MACHINE.exitCause, ExitCause.None, cause) === ExitCause.None) {
      this.exitInfo = { kind: exitKind(cause), status: 0, detail, state: '' };
    }
    void this.shutdown();
  }

  /** Ends the machine from outside (API, CLI quit key, test timeout). */
  async stop(detail = 'stopped by the host'): Promise<MachineExit> {
    this.endFromMain(ExitCause.Quit, detail);
    return this.exited;
  }

  async pause(): Promise<void> {
    for (const t of this.threads) t.pause();
    await Promise.all(this.threads.map((t) => t.waitForStatus(VcpuStatus.Paused)));
  }

  resume(): void {
    for (const t of this.threads) t.resume();
  }

  get vcpuStats(): ReadonlyArray<VcpuThread['stats']> {
    return this.threads.map((t) => t.stats);
  }

  get mailboxAccesses(): number {
    return this.mailboxes.reduce((n, m) => n + m.handled, 0);
  }

  private shutdown(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      await Promise.all(this.threads.map((t) => t.stop()));
      for (const m of this.mailboxes) m.close();
      try {
        this.detachDevices?.();
      } finally {
        for (const t of this.threads) t.release();
        releaseRegions(this.regions);
        this.vm.close();
        this.system.close();
      }
      this.exitResolve(this.exitInfo ?? { kind: 'error', status: 0, detail: 'machine stopped without a cause', state: '' });
    })();
    return this.stopping;
  }
}
