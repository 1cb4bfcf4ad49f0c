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
