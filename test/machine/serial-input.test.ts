// Serial input and output through novm's 16550A, from inside a guest: it identifies a 16550A
// with FIFOs, enables the receive interrupt, and its IOAPIC interrupt handler reads what the
// host typed.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { Machine } from '../../src/machine/machine.js';
import { attachPcPlatform, pcPlatformLayout, type PcPlatform } from '../../src/machine/pc-platform.js';
import { MiB } from '../../src/memory/address.js';
import { flatGuestPlan } from '../guests/core/assemble.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';

test('a guest receives typed input through UART interrupts and echoes it', { skip }, async () => {
  const layout = pcPlatformLayout(1);
  let serial = '';
  let platform: PcPlatform | undefined;
  const typed = 'hello from the host\n';
  let sent = false;
  const machine = Machine.create({
    cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('serial-input'),
    extraSegments: [{ address: layout.acpi.base, bytes: layout.acpi.blob }],
    attachDevices: (ctx) => {
      platform = attachPcPlatform(ctx, layout, {
        serialOutput: (b) => {
          serial += String.fromCharCode(b);
          if (!sent && serial.endsWith('READY\n')) {
            sent = true;
            // More than the 16-byte FIFO: the rest goes in as the guest drains it.
            let rest = Buffer.from(typed);
            const feed = (): void => {
              const taken = platform!.uart.enqueueInput(rest);
              rest = rest.subarray(taken);
              if (rest.length > 0) setTimeout(feed, 5);
            };
            setImmediate(feed);
          }
        },
      });
    },
  });
  machine.start();
  const timer = setTimeout(() => void machine.stop('test timeout'), 60_000);
  const exit = await machine.exited;
  clearTimeout(timer);
  assert.equal(serial, `READY\nGOT ${typed}`);
  assert.deepEqual([exit.kind, exit.status], ['debug-exit', 0]);
});
