// Builds the legacy devices at the ports the ACPI tables announce, so the PIO bus and the
// tables cannot disagree. The machine supplies interrupt lines, clocks and callbacks, and
// inserts each `pio` entry into its PIO bus.
import type { BusDevice, InterruptLine } from '../bus/bus-device.js';
import { AcpiPm } from './acpi-pm/acpi-pm.js';
import type { AcpiMachineConfig } from './acpi/config.js';
import { I8042 } from './i8042/i8042.js';
import { CmosRtc } from './rtc/cmos-rtc.js';
import { Uart16550 } from './serial/uart16550.js';

export interface PlatformDeviceDeps {
  /** The line for an ISA IRQ / GSI number (the machine maps it to KVM_IRQ_LINE or irqfd). */
  readonly irq: (line: number) => InterruptLine;
  /** Wall-clock milliseconds since the epoch (the RTC). */
  readonly wallClock: () => number;
  /** Monotonic milliseconds (the PM timer). */
  readonly monotonicClock: () => number;
  readonly serialOutput: (byte: number) => void;
  readonly onSerialInputSpace?: () => void;
  readonly onReset: () => void;
  readonly onPowerOff: () => void;
  readonly onSleep?: (sleepType: number) => void;
}

export interface PioDevice {
  readonly base: number;
  readonly size: number;
  readonly device: BusDevice;
  readonly name: string;
}

export interface PlatformDevices {
  readonly uart: Uart16550;
  readonly rtc: CmosRtc | undefined;
  readonly i8042: I8042;
  readonly pm: AcpiPm;
  /** Every port range to insert into the PIO bus. */
  readonly pio: readonly PioDevice[];
}

export function createPlatformDevices(config: AcpiMachineConfig, deps: PlatformDeviceDeps): PlatformDevices {
  const uart = new Uart16550({
    irq: deps.irq(config.uart.irq),
    output: deps.serialOutput,
    ...(deps.onSerialInputSpace ? { onInputSpace: deps.onSerialInputSpace } : {}),
  });
  const rtc = config.rtc ? new CmosRtc({ clock: deps.wallClock, irq: deps.irq(config.rtc.irq) }) : undefined;
  // The i8042 is always there for reset (FADT reset register and Linux's reboot=k); its IRQs
  // are wired only when the FADT tells the guest to probe it.
  const i8042 = new I8042({
    onReset: deps.onReset,
    ...(config.i8042Present ? { keyboardIrq: deps.irq(1), auxIrq: deps.irq(12) } : {}),
  });
  const pm = new AcpiPm({
    sci: deps.irq(config.pm.sciIrq),
    clock: deps.monotonicClock,
    s5SleepType: config.pm.s5SleepType,
    onPowerOff: deps.onPowerOff,
    ...(deps.onSleep ? { onSleep: deps.onSleep } : {}),
  });
  const pio: PioDevice[] = [
    { base: config.uart.port, size: 8, device: uart, name: 'uart' },
    { base: 0x60, size: 1, device: i8042.dataPort, name: 'i8042-data' },
    { base: 0x64, size: 1, device: i8042.commandPort, name: 'i8042-command' },
    { base: config.pm.pm1aEvt, size: 4, device: pm.eventBlock, name: 'pm1a-event' },
    { base: config.pm.pm1aCnt, size: 2, device: pm.controlBlock, name: 'pm1a-control' },
    { base: config.pm.pmTimer, size: 4, device: pm.timer, name: 'pm-timer' },
  ];
  if (rtc && config.rtc) pio.push({ base: config.rtc.port, size: 2, device: rtc, name: 'rtc' });
  return { uart, rtc, i8042, pm, pio };
}
