// Wires virtio device models into a running Machine, over either transport:
//
// - virtio-pci (modern, docs/pci.md): the transport joins the machine's PciSegment; each
//   queue's notify address (BAR 0 + 0x3000 + 4 * q) is bound to an ioeventfd, so a guest kick
//   is an eventfd signal inside KVM, not an exit; the bindings follow BAR 0 whenever the guest
//   moves or disables it (the segment's BarObserver). MSI-X messages go to KVM_SIGNAL_MSI.
//   INTx, when the caller gives a GSI, drives that IOAPIC pin as a level.
// - virtio-mmio (version 2): the transport sits on the MMIO bus at
//   VIRTIO_MMIO_START + index * VIRTIO_MMIO_STRIDE, its interrupt is an edge on an IOAPIC pin
//   (as the ACPI DSDT describes it, see virtioMmioSlot), and QueueNotify is bound to one
//   ioeventfd per queue (datamatch = queue index).
//
// The eventfds are watched by one FdPoller thread (blocking poll(2) off the event loop); its
// callbacks run on the main thread, where the buses and device models live.
//
// Why KVM_SIGNAL_MSI and not GSI routes + irqfds: the device models run on the main thread, so
// an interrupt is one ioctl either way (a write to an irqfd is a syscall too), and signalling
// the message itself needs no routing table to keep in step with the guest's MSI-X table
// writes (KVM_SET_GSI_ROUTING replaces the whole table). irqfds pay off only for devices that
// complete requests on another thread; this module would then add routes, not change its API.
import type { InterruptLine } from '../bus/bus-device.js';
import { VIRTIO_MMIO_START, VIRTIO_MMIO_STRIDE } from '../memory/layout.js';
import * as libc from '../native/libc.js';
import { silentLog, type GuestLog } from '../pci/guest-log.js';
import type { BarMapping, PciDevice } from '../pci/pci-device.js';
import type { PciSegment } from '../pci/segment.js';
import type { AcpiVirtioMmio } from '../platform/acpi/config.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import type { VirtioDeviceModel } from '../virtio/device.js';
import { VIRTIO_MMIO_SIZE, VirtioMmioDevice } from '../virtio/transport/virtio-mmio.js';
import { VIRTIO_PCI_BAR, VirtioPciDevice } from '../virtio/transport/virtio-pci.js';
import type { DeviceContext } from './machine.js';

/** IOAPIC pins given to virtio-mmio devices by default: 16..23 (KVM's IOAPIC has 24 pins; 0-15 are ISA). */
export const VIRTIO_MMIO_FIRST_GSI = 16;
export const VIRTIO_MMIO_DEFAULT_SLOTS = 8;
const IOAPIC_PINS = 24;
/** KVM_IOEVENTFD length for a virtio-pci notify: Linux and novm's guests write 16 bits (4.1.4.4). */
const PCI_NOTIFY_WRITE_BYTES = 2;
/** virtio-mmio registers are 32-bit (4.2.2.2). */
const MMIO_NOTIFY_WRITE_BYTES = 4;

export class VirtioAttachError extends Error {
  readonly kind = 'virtio-attach' as const;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'VirtioAttachError';
  }
}

/** Where virtio-mmio device `index` lives and which IOAPIC pin it raises: feed it to defaultAcpiConfig. */
export function virtioMmioSlot(index: number, gsi = VIRTIO_MMIO_FIRST_GSI + index): AcpiVirtioMmio {
  if (!Number.isInteger(index) || index < 0 || index >= 256) throw new VirtioAttachError(`virtio-mmio index ${index} out of range 0..255`);
  if (!Number.isInteger(gsi) || gsi < 0 || gsi >= IOAPIC_PINS) throw new VirtioAttachError(`virtio-mmio device ${index}: GSI ${gsi} is not an IOAPIC pin (0..${IOAPIC_PINS - 1}); give one explicitly`);
  return { address: VIRTIO_MMIO_START + index * VIRTIO_MMIO_STRIDE, size: VIRTIO_MMIO_SIZE, irq: gsi, trigger: 'edge' };
}

/** Counters a test (or a metrics endpoint) can compare with what the guest saw. */
export interface VirtioWiringStats {
  /** Interrupts sent: MSI-X messages (PCI) or IOAPIC edges (MMIO). */
  interrupts: number;
  /** INTx level changes (PCI without MSI-X). */
  intxChanges: number;
  /** Kicks that arrived through an ioeventfd, per queue (a burst of kicks may count once). */
  readonly ioeventfdKicks: number[];
  /** KVM_SIGNAL_MSI calls KVM refused (a guest-programmed bad message); logged, not thrown. */
  msiErrors: number;
}

export interface AttachedVirtioPci {
  readonly kind: 'pci';
  readonly transport: VirtioPciDevice;
  readonly slot: number;
  readonly stats: VirtioWiringStats;
}

export interface AttachedVirtioMmio {
  readonly kind: 'mmio';
  readonly transport: VirtioMmioDevice;
  readonly base: number;
  readonly gsi: number;
  readonly stats: VirtioWiringStats;
}

export interface AttachPciOptions {
  /** PCI slot 1..31; the first free one by default. */
  readonly slot?: number;
  /** GSI for legacy INTx (level); without it INTx is not connected (MSI-X only, as the ACPI _PRT says). */
  readonly intxGsi?: number;
  /** Guest misbehaviour lines; default: dropped. */
  readonly log?: GuestLog;
}

export interface AttachMmioOptions {
  /** IOAPIC pin; default VIRTIO_MMIO_FIRST_GSI + index. Must match what the ACPI tables say. */
  readonly gsi?: number;
  readonly log?: GuestLog;
}

interface NotifyBinding {
  readonly fd: number;
  /** Where the ioeventfd is registered now (undefined while BAR 0 is not decoded). */
  address: number | undefined;
  readonly length: number;
  readonly datamatch: bigint | undefined;
}

interface PciRecord {
  readonly transport: VirtioPciDevice;
  readonly bindings: NotifyBinding[];
}

function newStats(queues: number): VirtioWiringStats {
  return { interrupts: 0, intxChanges: 0, ioeventfdKicks: new Array<number>(queues).fill(0), msiErrors: 0 };
}

/**
 * One per machine: owns the eventfds, their KVM registrations and the poller thread.
 * Create it inside `attachDevices(ctx)` and return `() => void wiring.close()` from there.
 */
export class VirtioWiring {
  private readonly poller: FdPoller;
  private readonly bindings: NotifyBinding[] = [];
  private readonly pciDevices = new Map<PciDevice, PciRecord>();
  private readonly observedSegments = new Set<PciSegment>();
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly ctx: DeviceContext, private readonly hostLog: (line: string) => void = (line) => process.stderr.write(`${line}\n`)) {
    this.poller = new FdPoller((message) => this.hostLog(`virtio notify poller: ${message}`));
  }

  /** Resolves once the poller thread runs (kicks before that are not lost, only delayed). */
  get ready(): Promise<void> {
    return this.poller.ready;
  }

  /** Adds a virtio-pci function for `device` to `segment`. */
  attachPci(segment: PciSegment, device: VirtioDeviceModel, options: AttachPciOptions = {}): AttachedVirtioPci {
    this.assertOpen();
    const stats = newStats(device.queueMaxSizes.length);
    const vm = this.ctx.vm;
    const intx = options.intxGsi === undefined ? undefined : this.ctx.irqLine(options.intxGsi);
    const log = options.log ?? silentLog;
    const transport = new VirtioPciDevice(device, {
      memory: this.ctx.memory,
      log,
      interrupts: {
        msi: (address, data) => {
          stats.interrupts++;
          try {
            vm.signalMsi(address, data);
          } catch (error: unknown) {
            // The guest wrote the message; a bad one must not end the machine (DESIGN rule 6).
            stats.msiErrors++;
            log(`MSI to 0x${address.toString(16)} data 0x${data.toString(16)} refused: ${String(error)}`);
          }
        },
        intx: (level) => {
          stats.intxChanges++;
          intx?.setLevel(level);
        },
      },
    });
    const bindings = device.queueMaxSizes.map((_, q) => this.newBinding(q, PCI_NOTIFY_WRITE_BYTES, undefined, stats, (queue) => transport.queueNotified(queue)));
    this.pciDevices.set(transport, { transport, bindings });
    this.observe(segment);
    // 0xFF in Interrupt Line means "not connected" (PCI 3.0 6.2.4).
    const slot = segment.addDevice(transport, { ...(options.slot !== undefined ? { slot: options.slot } : {}), interruptLine: options.intxGsi ?? 0xff });
    // The segment decodes BAR 0 only once the guest sets Command.MEM; if it already is, bind now.
    const mapping = segment.mapping(slot, VIRTIO_PCI_BAR);
    if (mapping !== undefined) this.bindPci(transport, mapping);
    return { kind: 'pci', transport, slot, stats };
  }

  /** Puts a virtio-mmio transport for `device` at slot `index` (see virtioMmioSlot). */
  attachMmio(index: number, device: VirtioDeviceModel, options: AttachMmioOptions = {}): AttachedVirtioMmio {
    this.assertOpen();
    const slot = virtioMmioSlot(index, options.gsi);
    const stats = newStats(device.queueMaxSizes.length);
    const line = this.ctx.irqLine(slot.irq);
    const counted: InterruptLine = {
      setLevel: (high) => line.setLevel(high),
      trigger: () => {
        stats.interrupts++;
        line.trigger();
      },
    };
    const transport = new VirtioMmioDevice(device, { memory: this.ctx.memory, interrupt: counted, triggerMode: 'edge', log: options.log ?? silentLog });
    this.ctx.mmio.insert(slot.address, slot.size, transport);
    const notify = VirtioMmioDevice.notifyAddress(slot.address);
    device.queueMaxSizes.forEach((_, q) => {
      const binding = this.newBinding(q, MMIO_NOTIFY_WRITE_BYTES, BigInt(q), stats, (queue) => transport.queueNotified(queue));
      this.register(binding, notify);
    });
    return { kind: 'mmio', transport, base: slot.address, gsi: slot.irq, stats };
  }

  /** Drops every ioeventfd, stops the poller thread, closes the eventfds. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    for (const binding of this.bindings) {
      this.poller.unwatch(binding.fd);
      this.unregister(binding);
    }
    this.closing = this.poller.stop().then(() => {
      for (const binding of this.bindings) libc.close(binding.fd);
    });
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closed) throw new VirtioAttachError('virtio wiring is closed');
  }

  private newBinding(queue: number, length: number, datamatch: bigint | undefined, stats: VirtioWiringStats, notify: (queue: number) => void): NotifyBinding {
    const fd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
    const binding: NotifyBinding = { fd, address: undefined, length, datamatch };
    this.bindings.push(binding);
    this.poller.watch(fd, 'eventfd', () => {
      if (this.closed) return;
      stats.ioeventfdKicks[queue]!++;
      try {
        notify(queue);
      } catch (error: unknown) {
        // The transport turns device failures into NEEDS_RESET; anything else is a host bug.
        this.hostLog(`virtio queue ${queue} notify failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
      }
    });
    return binding;
  }

  private register(binding: NotifyBinding, address: number): void {
    if (binding.address === address) return;
    this.unregister(binding);
    const options = binding.datamatch === undefined ? {} : { datamatch: binding.datamatch };
    this.ctx.vm.ioeventfd(binding.fd, address, binding.length, options);
    binding.address = address;
  }

  private unregister(binding: NotifyBinding): void {
    if (binding.address === undefined) return;
    const address = binding.address;
    binding.address = undefined;
    const options = binding.datamatch === undefined ? { deassign: true } : { deassign: true, datamatch: binding.datamatch };
    try {
      this.ctx.vm.ioeventfd(binding.fd, address, binding.length, options);
    } catch (error: unknown) {
      this.hostLog(`virtio: dropping the ioeventfd at 0x${address.toString(16)} failed: ${String(error)}`);
    }
  }

  private observe(segment: PciSegment): void {
    if (this.observedSegments.has(segment)) return;
    this.observedSegments.add(segment);
    segment.observe({
      barMapped: (device, mapping) => {
        const record = this.pciDevices.get(device);
        if (record !== undefined && !this.closed) this.bindPci(record.transport, mapping);
      },
      barUnmapped: (device, mapping) => {
        const record = this.pciDevices.get(device);
        if (record === undefined || mapping.bar !== VIRTIO_PCI_BAR) return;
        for (const binding of record.bindings) this.unregister(binding);
      },
    });
  }

  /** BAR 0 is decoded at `mapping.address`: move every queue's ioeventfd there. */
  private bindPci(transport: VirtioPciDevice, mapping: BarMapping): void {
    if (mapping.bar !== VIRTIO_PCI_BAR) return;
    const record = this.pciDevices.get(transport);
    if (record === undefined) return;
    const addresses = transport.notifyAddresses();
    record.bindings.forEach((binding, q) => {
      const address = addresses[q];
      if (address === undefined) this.unregister(binding);
      else this.register(binding, address);
    });
  }
}
