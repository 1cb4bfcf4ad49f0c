// virtio-console (virtio 1.2 §5.3) with VIRTIO_CONSOLE_F_MULTIPORT and F_SIZE. Queues: port 0
// receiveq/transmitq (0, 1), control receiveq/transmitq (2, 3), then port N at 2N+2, 2N+3.
// The host side of each port is a ConsolePort: write() sends bytes to the guest (buffered,
// bounded), onData receives what the guest writes, onOpen tells whether a guest program has
// the port open. The device does no I/O of its own.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { DescriptorChain } from '../../queue/descriptor-chain.js';
import { hasFeature } from '../../queue/features.js';
import { QueueDevice, queueFeatures, type DeviceOptions } from '../queue-device.js';

export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_CONSOLE_F_SIZE = 1n << 0n;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1n << 1n;

export const enum ControlEvent {
  DeviceReady = 0,
  DeviceAdd = 1,
  DeviceRemove = 2,
  PortReady = 3,
  ConsolePort = 4,
  Resize = 5,
  PortOpen = 6,
  PortName = 7,
}

const CONFIG_SIZE = 12;
const CONTROL_HEADER = 8;
/** Bytes buffered per port toward a guest that is not reading; beyond that write() refuses. */
const MAX_PENDING_BYTES = 1 << 20;
/** Largest control message accepted from the driver (header plus a port name). */
const MAX_CONTROL_MESSAGE = 4096;
const MAX_FROM_GUEST_PER_CHAIN = 1 << 20;

export interface PortSpec {
  /** Name the guest sees in /sys/class/virtio-ports/vportNpM/name (udev: /dev/virtio-ports/NAME). */
  readonly name?: string;
  /** A console port (hvc): at most one, normally port 0. */
  readonly console?: boolean;
}

export class ConsolePort {
  /** Bytes the guest wrote to this port. The array is only valid during the call. */
  onData: (data: Uint8Array) => void = () => {};
  /** The guest opened (true) or closed (false) the port. */
  onOpen: (open: boolean) => void = () => {};
  /** write() refused bytes earlier and the guest has since taken some: room again. */
  onSpace: () => void = () => {};
  guestOpen = false;
  /** The driver acknowledged the port (PORT_READY). */
  ready = false;
  /** PORT_ADD was sent for this port in the current activation. */
  added = false;
  /** The device told the driver this is its console port (CONSOLE_PORT sent). */
  announcedAsConsole = false;
  /**
   * The last PORT_OPEN value the driver itself sent: Linux sends 1 for a console port once it
   * has hooked it to an hvc (init_port_console), and for other ports when a program opens them.
   */
  openedByDriver = false;
  /** write() returned false since the last onSpace. */
  refused = false;
  pending: Uint8Array[] = [];
  pendingBytes = 0;
  /** Offset into pending[0] already delivered. */
  pendingOffset = 0;

  constructor(readonly id: number, readonly spec: PortSpec, private readonly kick: (id: number) => void) {}

  /** Bytes write() would still accept now. */
  get room(): number {
    return MAX_PENDING_BYTES - this.pendingBytes;
  }

  /** Queues bytes for the guest; false if more than 1 MiB is already waiting (backpressure). */
  write(data: Uint8Array): boolean {
    if (data.length === 0) return true;
    if (this.pendingBytes + data.length > MAX_PENDING_BYTES) {
      this.refused = true;
      return false;
    }
    this.pending.push(data.slice());
    this.pendingBytes += data.length;
    this.kick(this.id);
    return true;
  }

  clear(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingOffset = 0;
    this.guestOpen = false;
    this.ready = false;
    this.added = false;
    this.announcedAsConsole = false;
    this.openedByDriver = false;
    // A writer waiting for room gets it: the bytes it could not queue can go now.
    if (this.refused) {
      this.refused = false;
      this.onSpace();
    }
  }
}

export interface ConsoleOptions extends DeviceOptions {
  /** Ports; default one console port. */
  readonly ports?: readonly PortSpec[];
  readonly cols?: number;
  readonly rows?: number;
  readonly queueSize?: number;
}

export class ConsoleDevice extends QueueDevice {
  readonly deviceType = VIRTIO_ID_CONSOLE;
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly configSize = CONFIG_SIZE;
  readonly ports: readonly ConsolePort[];
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly configView = new DataView(this.config.buffer);
  private multiport = false;
  private controlOut: Uint8Array[] = [];
  private readonly controlIn = new Uint8Array(MAX_CONTROL_MESSAGE);
  private readonly controlInView = new DataView(this.controlIn.buffer);
  private readonly fromGuest = new Uint8Array(64 * 1024);
  /** Size set by resize(): sent to the console port as soon as the driver has hooked it up. */
  private sizeSet = false;
  readonly stats = { badControl: 0, droppedToClosedPort: 0, controlFromDriver: 0, controlToDriver: 0 };

  constructor(options: ConsoleOptions = {}) {
    super(options);
    const specs = options.ports ?? [{ console: true }];
    if (specs.length < 1 || specs.length > 64) throw new RangeError('a console has 1 to 64 ports');
    if (specs.filter((p) => p.console === true).length > 1) throw new RangeError('at most one console port');
    this.ports = specs.map((spec, id) => new ConsolePort(id, spec, (port) => this.flushPort(port)));
    const queueSize = options.queueSize ?? 128;
    // Port 0's two queues, the control pair, then two per further port (§5.3.2).
    this.queueMaxSizes = new Array<number>(2 * specs.length + 2).fill(queueSize);
    this.deviceFeatures = queueFeatures(options) | VIRTIO_CONSOLE_F_SIZE | VIRTIO_CONSOLE_F_MULTIPORT;
    this.configView.setUint16(0, options.cols ?? 80, true);
    this.configView.setUint16(2, options.rows ?? 25, true);
    this.configView.setUint32(4, specs.length, true);
  }

  protected get name(): string {
    return 'virtio-console';
  }

  /** Control messages waiting for a buffer from the driver (0: the driver took all). */
  get controlPending(): number {
    return this.controlOut.length;
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset < 0 || offset >= CONFIG_SIZE) return;
    data.set(this.config.subarray(offset, Math.min(CONFIG_SIZE, offset + data.length)));
  }

  /** emerg_wr (offset 8): a byte written by the driver before the queues work (F_EMERG_WRITE). */
  writeConfig(offset: number, data: Uint8Array): void {
    if (offset === 8 && data.length >= 1) this.ports[0]!.onData(data.subarray(0, 1));
  }

  /** Tells the guest the terminal size of a console port changed. */
  resize(cols: number, rows: number, portId = this.consolePortId()): void {
    if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 0 || rows < 0 || cols > 0xffff || rows > 0xffff) {
      throw new RangeError(`console size ${cols}x${rows}: each must be a whole number from 0 to 65535`);
    }
    this.configView.setUint16(0, cols, true);
    this.configView.setUint16(2, rows, true);
    this.sizeSet = true;
    if (!this.isActive) return;
    if (this.multiport) {
      // Sent only to a port the driver has hooked to an hvc: Linux ignores RESIZE for any
      // other port (drivers/char/virtio_console.c, handle_control_message); the size is sent
      // again when the console port comes up.
      if (this.ports[portId]?.announcedAsConsole === true) this.sendControl(this.resizeMessage(portId));
    } else if (hasFeature(this.features, VIRTIO_CONSOLE_F_SIZE)) {
      this.context?.notifyConfig();
    }
  }

  /**
   * struct virtio_console_resize {le16 cols; le16 rows} after the header (virtio 1.2 §5.3.6.2;
   * Linux 6.1 reads the same order, drivers/char/virtio_console.c).
   */
  private resizeMessage(portId: number): Uint8Array {
    const message = this.control(portId, ControlEvent.Resize, 0, 4);
    const view = new DataView(message.buffer);
    view.setUint16(CONTROL_HEADER, this.configView.getUint16(0, true), true);
    view.setUint16(CONTROL_HEADER + 2, this.configView.getUint16(2, true), true);
    return message;
  }

  private consolePortId(): number {
    const index = this.ports.findIndex((p) => p.spec.console === true);
    return index < 0 ? 0 : index;
  }

  protected override onActivate(): void {
    this.multiport = hasFeature(this.features, VIRTIO_CONSOLE_F_MULTIPORT);
    if (!this.multiport) {
      // Without MULTIPORT only port 0 exists and it is always open.
      this.ports[0]!.ready = true;
      this.ports[0]!.guestOpen = true;
    }
  }

  protected override onReset(): void {
    for (const port of this.ports) {
      const wasOpen = port.guestOpen;
      port.clear();
      if (wasOpen) port.onOpen(false);
    }
    this.controlOut = [];
    this.multiport = false;
  }

  private receiveQueue(port: number): number {
    return port === 0 ? 0 : 2 * port + 2;
  }

  protected processQueue(index: number): void {
    if (index === 2) {
      this.flushControl();
    } else if (index === 3) {
      this.drain(3, this.controlFromGuest);
    } else {
      const port = index < 2 ? 0 : (index - 2) >> 1;
      if (index % 2 === 0) this.flushPort(port);
      else this.drain(index, (chain, memory) => this.dataFromGuest(port, chain, memory));
    }
  }

  private dataFromGuest(port: number, chain: DescriptorChain, memory: GuestMemory): number {
    const target = this.ports[port];
    let offset = 0;
    const total = Math.min(chain.readableBytes, MAX_FROM_GUEST_PER_CHAIN);
    while (offset < total) {
      const n = chain.readFrom(memory, offset, this.fromGuest.subarray(0, Math.min(this.fromGuest.length, total - offset)));
      if (target !== undefined && target.guestOpen) target.onData(this.fromGuest.subarray(0, n));
      else this.stats.droppedToClosedPort++;
      offset += n;
    }
    return 0;
  }

  /** Moves buffered host bytes into the guest's receive buffers. */
  private flushPort(port: number): void {
    const p = this.ports[port];
    if (p === undefined || !this.isActive || !p.ready || p.pending.length === 0) return;
    const index = this.receiveQueue(port);
    if (this.queues[index] === undefined) return;
    try {
      this.drain(index, (chain, memory) => {
        if (p.pending.length === 0) return -1;
        let written = 0;
        while (p.pending.length > 0 && written < chain.writableBytes) {
          const head = p.pending[0]!;
          const n = chain.writeTo(memory, written, head.subarray(p.pendingOffset));
          written += n;
          p.pendingOffset += n;
          p.pendingBytes -= n;
          if (p.pendingOffset === head.length) {
            p.pending.shift();
            p.pendingOffset = 0;
          }
          if (n === 0) break;
        }
        return written;
      });
    } catch (error) {
      this.handleError(error);
    }
    if (p.refused && p.pendingBytes < MAX_PENDING_BYTES) {
      p.refused = false;
      p.onSpace();
    }
  }

  private control(id: number, event: ControlEvent, value: number, extra = 0): Uint8Array {
    const message = new Uint8Array(CONTROL_HEADER + extra);
    const view = new DataView(message.buffer);
    view.setUint32(0, id, true);
    view.setUint16(4, event, true);
    view.setUint16(6, value, true);
    return message;
  }

  private sendControl(message: Uint8Array): void {
    if (this.controlOut.length > 1024) return; // a driver that never reads control messages
    this.stats.controlToDriver++;
    this.controlOut.push(message);
    this.flushControl();
  }

  private flushControl(): void {
    if (!this.isActive || this.queues[2] === undefined || this.controlOut.length === 0) return;
    try {
      this.drain(2, (chain, memory) => {
        const message = this.controlOut.shift();
        if (message === undefined) return -1;
        return chain.writeTo(memory, 0, message);
      });
    } catch (error) {
      this.handleError(error);
    }
  }

  /** A control message from the driver (§5.3.6.2). Bad ones are counted and ignored. */
  private readonly controlFromGuest = (chain: DescriptorChain, memory: GuestMemory): number => {
    const n = chain.readFrom(memory, 0, this.controlIn.subarray(0, Math.min(MAX_CONTROL_MESSAGE, chain.readableBytes)));
    if (n < CONTROL_HEADER) {
      this.stats.badControl++;
      return 0;
    }
    this.stats.controlFromDriver++;
    const id = this.controlInView.getUint32(0, true);
    const event = this.controlInView.getUint16(4, true);
    const value = this.controlInView.getUint16(6, true);
    const port = this.ports[id];
    switch (event) {
      case ControlEvent.DeviceReady:
        if (value !== 1) break;
        // The console port first, the others once it is hooked up (PORT_READY below): Linux
        // sets ports up one control message at a time in a work item, and the kernel opens
        // /dev/console whenever its boot thread gets there; every port added before the
        // console one widens the window in which that open finds no hvc0 (docs/virtio.md).
        this.addPorts(this.ports.some((p) => p.spec.console === true) ? this.ports.filter((p) => p.spec.console === true) : this.ports);
        break;
      case ControlEvent.PortReady:
        if (port === undefined) {
          this.stats.badControl++;
          break;
        }
        if (value === 1) this.portReady(port);
        // Whether or not the driver could set the console port up, the others come next.
        if (port.spec.console === true) this.addPorts(this.ports);
        break;
      case ControlEvent.PortOpen:
        if (port === undefined) {
          this.stats.badControl++;
          break;
        }
        port.openedByDriver = value === 1;
        this.setOpen(port, value === 1);
        break;
      default:
        this.stats.badControl++;
    }
    return 0;
  };

  /** PORT_ADD for each of `ports` not announced yet in this activation. */
  private addPorts(ports: readonly ConsolePort[]): void {
    for (const p of ports) {
      if (p.added) continue;
      p.added = true;
      this.sendControl(this.control(p.id, ControlEvent.DeviceAdd, 0));
    }
  }

  /** The driver set `port` up (PORT_READY 1): console role, name, and the host side open. */
  private portReady(port: ConsolePort): void {
    const id = port.id;
    port.ready = true;
    if (port.spec.console === true && !port.announcedAsConsole) {
      this.sendControl(this.control(id, ControlEvent.ConsolePort, 1));
      port.announcedAsConsole = true;
      if (this.sizeSet) this.sendControl(this.resizeMessage(id));
      // The console port is open from the start (hvc).
      this.setOpen(port, true);
    }
    if (port.spec.name !== undefined) {
      const name = new TextEncoder().encode(port.spec.name);
      const message = this.control(id, ControlEvent.PortName, 1, name.length);
      message.set(name, CONTROL_HEADER);
      this.sendControl(message);
    }
    // The host side is always connected.
    this.sendControl(this.control(id, ControlEvent.PortOpen, 1));
    this.flushPort(id);
  }

  private setOpen(port: ConsolePort, open: boolean): void {
    if (port.guestOpen === open) return;
    port.guestOpen = open;
    port.onOpen(open);
    if (open) this.flushPort(port.id);
  }
}
