// Child process of bench:start: boots a 1-vCPU, 128 MiB VM whose guest writes to the UART
// port at once. On the first port write it prints "FIRST-WRITE rss=<bytes> guest=<bytes>":
// the process's resident set and the part of it that is guest RAM the guest touched.
import { readFileSync } from 'node:fs';
import { Machine } from '../src/machine/machine.js';
import { MiB } from '../src/memory/address.js';
import { flatGuestPlan } from '../test/guests/core/assemble.js';

export function residentBytes(): { rss: number; guest: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  // Guest RAM is the memfd mapping: sum its Rss lines in smaps.
  let guest = 0;
  let inRam = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inRam = line.includes('memfd:novm-ram');
    else if (inRam && line.startsWith('Rss:')) guest += Number(/(\d+)/.exec(line)?.[1] ?? 0) * 1024;
  }
  return { rss, guest };
}

let first = true;
const machine = Machine.create({
  cpus: 1, memoryBytes: 128 * MiB, boot: flatGuestPlan('hello'),
  attachDevices: (ctx) => {
    ctx.pio.insert(0x3f8, 8, {
      read(_o, d) { d.fill(0); },
      write() {
        if (!first) return;
        first = false;
        const { rss, guest } = residentBytes();
        process.stdout.write(`FIRST-WRITE rss=${rss} guest=${guest}\n`);
      },
    });
  },
});
machine.start();
await machine.exited;
