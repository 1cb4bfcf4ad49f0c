// The device status state machine (virtio 1.2 section 3.1.1, "Driver Requirements: Device
// Initialization") as an explicit table (DESIGN rule 5). Writing 0 always resets; FAILED may be
// added at any time; writing the current status again changes nothing. Everything else that is
// not in the table is a driver bug: the transport logs it and keeps the old status.
import { DeviceStatus } from '../device.js';

const ACK = DeviceStatus.Acknowledge;
const DRIVER = DeviceStatus.Driver;
const FEATURES_OK = DeviceStatus.FeaturesOk;
const DRIVER_OK = DeviceStatus.DriverOk;

/** [from, to] pairs a driver may write (DEVICE_NEEDS_RESET is device-owned and masked off). */
export const VALID_STATUS_TRANSITIONS: ReadonlyArray<readonly [number, number]> = [
  [0, ACK],
  [ACK, ACK | DRIVER],
  [ACK | DRIVER, ACK | DRIVER | FEATURES_OK],
  [ACK | DRIVER | FEATURES_OK, ACK | DRIVER | FEATURES_OK | DRIVER_OK],
];

export type StatusStep =
  | { readonly kind: 'reset' }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'failed' }
  | { readonly kind: 'acknowledge' | 'driver' | 'features-ok' | 'driver-ok' }
  | { readonly kind: 'invalid' };

const STEP_BY_TARGET = new Map<number, StatusStep>([
  [ACK, { kind: 'acknowledge' }],
  [ACK | DRIVER, { kind: 'driver' }],
  [ACK | DRIVER | FEATURES_OK, { kind: 'features-ok' }],
  [ACK | DRIVER | FEATURES_OK | DRIVER_OK, { kind: 'driver-ok' }],
]);
const RESET: StatusStep = { kind: 'reset' };
const UNCHANGED: StatusStep = { kind: 'unchanged' };
const FAILED: StatusStep = { kind: 'failed' };
const INVALID: StatusStep = { kind: 'invalid' };

/** Classifies a driver's status write. `current` and `written` exclude DEVICE_NEEDS_RESET. */
export function classifyStatusWrite(current: number, written: number): StatusStep {
  if (written === 0) return RESET;
  if (written === current) return UNCHANGED;
  if ((current & DeviceStatus.Failed) !== 0) return INVALID;
  if (written === (current | DeviceStatus.Failed)) return FAILED;
  for (const [from, to] of VALID_STATUS_TRANSITIONS) {
    if (from === current && to === written) return STEP_BY_TARGET.get(to) ?? INVALID;
  }
  return INVALID;
}
