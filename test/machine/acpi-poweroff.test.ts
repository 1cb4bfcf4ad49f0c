// ACPI power-off from inside a guest: it finds the RSDP, the XSDT and the FADT novm generated,
// and writes S5 to the PM1a control port the FADT names; the VM ends as "poweroff".
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { Machine } from '../../src/machine/machine.js';
import { attachPcPlatform, pcPlatformLayout } from '../../src/machine/pc-platform.js';
import { MiB } from '../../src/memory/address.js';
import { flatGuestPlan } from '../guests/core/assemble.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';

test('a guest powers the VM off through the FADT PM1a control block', { skip }, async () => {
  const layout = pcPlatformLayout(2);
  let serial = '';
  const machine = Machine.create({
    cpus: 2, memoryBytes: 64 * MiB, boot: flatGuestPlan('acpi-poweroff'),
    extraSegments: [{ address: layout.acpi.base, bytes: layout.acpi.blob }],
    attachDevices: (ctx) => { attachPcPlatform(ctx, layout, { serialOutput: (b) => { serial += String.fromCharCode(b); } }); },
  });
  machine.start();
  const timer = setTimeout(() => void machine.stop('test timeout'), 30_000);
  const exit = await machine.exited;
  clearTimeout(timer);
  assert.equal(serial, 'PASS found PM1a_CNT in the FADT\n');
  assert.equal(exit.kind, 'poweroff', `${exit.kind}: ${exit.detail}`);
});
