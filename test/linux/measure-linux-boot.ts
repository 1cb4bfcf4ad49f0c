// Measures how far and how fast a Linux kernel gets under `novm boot`: prints every console line
// with its elapsed time, then the milestone table (docs/linux-on-pvm.md).
//   node dist/test/linux/measure-linux-boot.js DEADLINE_S [--stop-at REGEX] [novm boot args...]
// e.g. node dist/test/linux/measure-linux-boot.js 900 --kernel /boot/vmlinuz-6.1.0-56-amd64
import { bootTimeline, firstLine, LINUX_MILESTONES } from './boot-timeline.js';

const [deadline, ...rest] = process.argv.slice(2);
const stopAt = rest[0] === '--stop-at' && rest[1] !== undefined ? new RegExp(rest[1]) : undefined;
const args = stopAt === undefined ? rest : rest.slice(2);
const seconds = Number(deadline);
if (!Number.isInteger(seconds) || seconds <= 0) {
  process.stderr.write('usage: measure-linux-boot.js DEADLINE_S [--stop-at REGEX] [novm boot args...]\n');
  process.exit(2);
}
// Exit (which stops the VM, see boot-timeline.ts) on Ctrl-C or kill.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const fmt = (ms: number): string => (ms / 1000).toFixed(1).padStart(7);
const timeline = await bootTimeline({
  args: ['--timeout', String(seconds), '--verbose', ...args],
  deadlineMs: (seconds + 30) * 1000,
  ...(stopAt !== undefined ? { stopAt } : {}),
  onLine: (l) => process.stdout.write(`${fmt(l.ms)} ${l.text}\n`),
});
process.stdout.write(`\nnovm boot ${args.join(' ')}\nexit status ${String(timeline.status)} after ${fmt(timeline.ms)} s${timeline.timedOut ? ' (killed at the deadline)' : ''}\n`);
for (const m of LINUX_MILESTONES) {
  const line = firstLine(timeline, m.pattern);
  process.stdout.write(`${m.name.padEnd(24)} ${line === undefined ? '      -' : fmt(line.ms)}  ${line?.text.slice(0, 90) ?? ''}\n`);
}
