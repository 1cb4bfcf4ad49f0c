// The console of a novm VM: one multiport virtio-console whose port 0 is the kernel's console
// (hvc0 in a Linux guest) and port 1 the in-guest agent's channel (named, so udev gives it
// /dev/virtio-ports/org.novm.agent). Plus the host adapter that feeds a terminal's input to
// port 0 with backpressure.
import { ConsoleDevice, type ConsoleOptions, type ConsolePort } from './console-device.js';

export const CONSOLE_PORT_ID = 0;
export const AGENT_PORT_ID = 1;
export const AGENT_PORT_NAME = 'org.novm.agent';
/** What the hvc driver takes as its SysRq prefix (drivers/tty/hvc/hvc_console.c: ^O, then a key). */
export const HVC_SYSRQ_PREFIX = 0x0f;

export function createVmConsole(options: Omit<ConsoleOptions, 'ports'> = {}): ConsoleDevice {
  return new ConsoleDevice({ ...options, ports: [{ console: true }, { name: AGENT_PORT_NAME }] });
}

/**
 * A console port seen as a serial line's input side (the shape TerminalConsole drives):
 * enqueueInput takes what fits in the port's host-side buffer and returns how many bytes it
 * took; `onSpace` fires when the guest has drained what did not fit. A break has no meaning on
 * a virtio port, so it sends the hvc SysRq prefix instead (the next key is a SysRq command).
 */
export function portInput(port: ConsolePort, onSpace: () => void): { enqueueInput(bytes: Uint8Array): number; sendBreak(): void } {
  port.onSpace = onSpace;
  return {
    enqueueInput: (bytes) => {
      const n = Math.min(bytes.length, port.room);
      if (n > 0) port.write(bytes.subarray(0, n));
      // What did not fit is the caller's to keep: onSpace tells it when to try again.
      if (n < bytes.length) port.refused = true;
      return n;
    },
    sendBreak: () => {
      port.write(Uint8Array.of(HVC_SYSRQ_PREFIX));
    },
  };
}
