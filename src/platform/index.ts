// The platform layer's public API: ACPI tables, legacy devices as pure state machines
// (16550A UART, CMOS RTC, i8042, ACPI PM registers) and the CPUID policy.
export { buildAcpiTables, type AcpiTables, type PlacedTable } from './acpi/build.js';
export {
  defaultAcpiConfig,
  DEFAULT_PM_PORTS,
  type AcpiMachineConfig,
  type AcpiPmPorts,
  type AcpiVirtioMmio,
  type AcpiPciHostBridge,
} from './acpi/config.js';
export { AcpiBuildError, type AcpiBuildErrorKind } from './acpi/errors.js';
export { RTC_CENTURY_INDEX } from './acpi/tables.js';
export { virtioMmioDeviceName } from './acpi/dsdt.js';
export { Uart16550, UartStateError, UART_FIFO_SIZE, type Uart16550Options, type Uart16550State } from './serial/uart16550.js';
export { TerminalConsole, type TerminalConsoleOptions, type SerialPort, type ConsoleInput, type ConsoleOutput } from './serial/terminal-console.js';
export { EscapeFilter, ESCAPE_HELP, type EscapeCommand } from './serial/escape.js';
export { CmosRtc, RtcStateError, type CmosRtcOptions, type CmosRtcState } from './rtc/cmos-rtc.js';
export { I8042, type I8042Options } from './i8042/i8042.js';
export { AcpiPm, AcpiPmStateError, PM_TIMER_HZ, type AcpiPmOptions, type AcpiPmState } from './acpi-pm/acpi-pm.js';
export {
  cpuidForVcpu,
  findCpuidEntry,
  hasCpuFeature,
  CpuidPolicyError,
  CPU_FEATURES,
  PROFILE_CLEARED,
  PVM_COMPAT_KERNEL_ARGS,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
  type CpuidEntry,
  type CpuTopology,
  type CpuidProfile,
  type CpuidPolicyOptions,
  type CpuFeatureName,
} from './cpuid.js';
export { createPlatformDevices, type PlatformDeviceDeps, type PlatformDevices, type PioDevice } from './platform-devices.js';
