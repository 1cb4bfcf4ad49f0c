// novm's virtio-console against the real Linux driver (drivers/char/virtio_console.c and the
// hvc layer), under novm's own KVM VMM, in one boot of the minimal kernel. No guest user space
// is needed (it cannot run on nested PVM hosts): with no initrd and `root=/dev/vda rootwait`
// (no disk is attached) the kernel opens /dev/console (hvc0, the last console= argument) from
// its built-in initramfs and then waits for the root device forever, idle but alive.
// Checked, guest view against host view:
// - kernel lines arrive through port 0, and are the same lines the serial console carries;
// - the driver answered the multiport handshake for both ports (PORT_READY), hooked port 0 to
//   an hvc (its own PORT_OPEN after CONSOLE_PORT) and left the agent port closed;
// - a resize is taken without complaint;
// - host -> guest: the hvc SysRq hack (^O then a key, drivers/tty/hvc/hvc_console.c) makes the
//   kernel answer through the port: bytes the host wrote reached the driver and the tty layer;
//   the last command (^O o) powers the VM off.
// Linux sets multiport ports up in a work item that races the boot thread's
// console_on_rootfs(); when the work loses, /dev/console is ttyS0 and hvc0 never reads input.
// The test recognises that case (ttyS0 answers SysRq instead) and boots once more; the device
// adds the console port before the others to make the race rare (docs/virtio.md).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createBootVm } from '../../src/machine/boot-vm.js';
import { AGENT_PORT_ID, CONSOLE_PORT_ID, HVC_SYSRQ_PREFIX } from '../../src/virtio/devices/console/vm-console.js';
import { minimalKernelPath } from './minimal-kernel.js';

// Measured here: the minimal kernel reaches its root wait in 70-430 s depending on the load of
// the shared machine (docs/linux-on-pvm.md); a hang must not cost more than this.
const BOOT_DEADLINE_S = 420;
/** After the boot, each SysRq answer takes a second or two of emulated kernel mode. */
const ANSWER_DEADLINE_S = 60;
const CMDLINE = 'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 root=/dev/vda rootwait console=hvc0';

/** Whether the kernel next to `vmlinux-<key>` was built with `option` (undefined: no config found). */
function kernelHas(kernel: string, option: string): boolean | undefined {
  const real = realpathSync(kernel);
  const config = join(dirname(real), basename(real).replace(/^vmlinux-/, 'config-'));
  if (config === join(dirname(real), basename(real)) || !existsSync(config)) return undefined;
  return readFileSync(config, 'utf8').split('\n').includes(`${option}=y`);
}

/** Accumulates a byte stream as text and wakes waiters whose pattern appears. */
class TextStream {
  text = '';
  private readonly decoder = new TextDecoder('utf-8');
  private waiters: Array<{ pattern: RegExp; from: number; resolve: (ok: boolean) => void }> = [];

  push(bytes: Uint8Array): void {
    this.text += this.decoder.decode(bytes, { stream: true });
    this.waiters = this.waiters.filter((w) => {
      if (!w.pattern.test(this.text.slice(w.from))) return true;
      w.resolve(true);
      return false;
    });
  }

  /** Resolves true once `pattern` appears after offset `from`, false after `seconds`. */
  waitFor(pattern: RegExp, seconds: number, from = 0): Promise<boolean> {
    if (pattern.test(this.text.slice(from))) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = { pattern, from, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, seconds * 1000).unref();
    });
  }
}

function lines(text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trimEnd()).filter((l) => l !== '');
}

/** Polls `condition` every 50 ms; false after `seconds`. */
async function until(condition: () => boolean, seconds: number): Promise<boolean> {
  const end = Date.now() + seconds * 1000;
  while (!condition()) {
    if (Date.now() > end) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/**
 * One boot and every check. 'raced' when the kernel opened /dev/console before virtio_console
 * had hooked port 0 to hvc0 (Linux sets multiport ports up in a work item that races the boot
 * thread's console_on_rootfs()): /dev/console is then ttyS0, hvc0 has no tty and never reads
 * its input, which the serial line proves by answering SysRq itself.
 */
async function bootOnce(t: TestContext, kernel: string, sysrq: boolean | undefined): Promise<'done' | 'raced' | 'no-sysrq'> {
  const serial = new TextStream();
  const port0 = new TextStream();
  const serialByte = new Uint8Array(1);
  const vm = await createBootVm({
    kernelPath: kernel, cmdline: CMDLINE, cpus: 1, memoryBytes: 128 * 1024 * 1024, profile: 'auto', virtioConsole: true,
    serialOutput: (byte) => {
      serialByte[0] = byte;
      serial.push(serialByte);
    },
    warn: (message) => t.diagnostic(`warn: ${message}`),
  });
  const consoleDevice = vm.console;
  assert.ok(consoleDevice, 'createBootVm attached no console device');
  assert.match(vm.cmdline, /console=hvc0/);
  const consolePort = consoleDevice.ports[CONSOLE_PORT_ID]!;
  const agentPort = consoleDevice.ports[AGENT_PORT_ID]!;
  const agentBytes: number[] = [];
  consolePort.onData = (data) => port0.push(data);
  agentPort.onData = (data) => agentBytes.push(...data);

  const started = Date.now();
  const seconds = (): string => ((Date.now() - started) / 1000).toFixed(1);
  const tails = (): string => `--- serial (tail) ---\n${serial.text.slice(-2000)}\n--- port 0 (tail) ---\n${port0.text.slice(-2000)}`;
  vm.machine.start();
  let exitedEarly: string | undefined;
  void vm.machine.exited.then((exit) => { exitedEarly = `${exit.kind}: ${exit.detail}`; });
  try {
    // The kernel waits for its root device for ever, after console_on_rootfs(); the serial
    // console carries every line, whichever console /dev/console became.
    const waiting = await serial.waitFor(/Waiting for root device \/dev\/vda\.\.\.\r?\n/, BOOT_DEADLINE_S);
    t.diagnostic(`root wait at ${seconds()} s`);
    assert.ok(waiting, `no "Waiting for root device" within ${BOOT_DEADLINE_S} s (machine ${exitedEarly ?? 'running'}):\n${tails()}`);
    // Guest view: the kernel enabled hvc0 (said on the serial console; that line itself cannot
    // reach hvc0: virtio_console lists the port for put_chars only after hvc_alloc() has
    // registered the console, so the kernel drops it with -EPIPE).
    assert.ok(await serial.waitFor(/printk: console \[hvc0\] enabled/, ANSWER_DEADLINE_S), `the kernel did not enable hvc0:\n${tails()}`);

    // Host view of the multiport handshake the driver performed.
    assert.ok(await until(() => consolePort.openedByDriver && agentPort.ready, ANSWER_DEADLINE_S), 'the driver did not finish the handshake');
    assert.equal(consoleDevice.needsReset, false, 'the device needs a reset');
    assert.equal(consolePort.ready, true, 'port 0: no PORT_READY from the driver');
    assert.equal(agentPort.ready, true, 'port 1 (agent): no PORT_READY from the driver');
    assert.equal(consolePort.announcedAsConsole, true, 'port 0 was not announced as the console');
    assert.equal(consolePort.openedByDriver, true, 'the driver did not hook port 0 to an hvc (no PORT_OPEN from it)');
    assert.equal(agentPort.openedByDriver, false, 'nothing in the guest opens the agent port, yet the driver says it is open');
    assert.deepEqual(agentBytes, [], 'bytes on the agent port');
    assert.equal(consoleDevice.stats.badControl, 0, 'malformed control messages from the driver');
    t.diagnostic(`control messages: ${consoleDevice.stats.controlFromDriver} from the driver, ${consoleDevice.stats.controlToDriver} to it`);

    // A resize on the console port: the driver takes it (hvc_resize) and goes on working.
    const controlBefore = consoleDevice.stats.controlToDriver;
    consoleDevice.resize(132, 43);
    assert.equal(consoleDevice.stats.controlToDriver, controlBefore + 1, 'no RESIZE message was queued');

    if (sysrq === false) return 'no-sysrq';
    // Host -> guest: ^O h. 'h' has no SysRq action, so the kernel prints its help line.
    const helpFrom = port0.text.length;
    assert.doesNotMatch(port0.text, /sysrq: HELP/);
    const asked = performance.now();
    assert.equal(consolePort.write(Uint8Array.of(HVC_SYSRQ_PREFIX, 'h'.charCodeAt(0))), true);
    const help = await port0.waitFor(/sysrq: HELP : .*loglevel\(0-9\)/, ANSWER_DEADLINE_S / 2, helpFrom);
    if (!help) {
      // Tell the two failures apart: a serial BREAK then 'h' is SysRq over the serial line,
      // answered only if ttyS0 is the open /dev/console.
      const serialFrom = serial.text.length;
      const uart = vm.platform().uart;
      uart.sendBreak();
      uart.enqueueInput(Uint8Array.of('h'.charCodeAt(0)));
      if (await serial.waitFor(/sysrq: HELP/, ANSWER_DEADLINE_S / 2, serialFrom)) return 'raced';
      assert.fail(`no SysRq help line through port 0 after ^O h (nor over the serial line):\n${tails()}`);
    }
    t.diagnostic(`SysRq help answered through port 0 ${(performance.now() - asked).toFixed(0)} ms after the host wrote ^O h`);
    // A second command proves the prefix was consumed and the next ^O starts a new one.
    const levelFrom = port0.text.length;
    consolePort.write(Uint8Array.of(HVC_SYSRQ_PREFIX, '8'.charCodeAt(0)));
    const level = await port0.waitFor(/sysrq: Changing Loglevel[\s\S]*Loglevel set to 8\r?\n/, ANSWER_DEADLINE_S, levelFrom);
    assert.ok(level, `no loglevel answer through port 0 after ^O 8:\n${tails()}`);
    assert.equal(consoleDevice.stats.badControl, 0);
    assert.equal(consoleDevice.needsReset, false);
    assert.equal(consolePort.pendingBytes, 0, 'the driver left host bytes unread');
    assert.equal(consoleDevice.controlPending, 0, 'the driver did not take every control message (the RESIZE)');
    assert.equal(consoleDevice.stats.droppedToClosedPort, 0, 'the guest wrote to a port it had not opened');

    // The same kernel lines reached both consoles. hvc0 is written first (it is the preferred
    // console), so give the slower serial line time to catch up with port 0's last line.
    const portLines = lines(port0.text.slice(0, port0.text.lastIndexOf('\n') + 1));
    const last = portLines[portLines.length - 1]!;
    assert.ok(await serial.waitFor(new RegExp(last.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), ANSWER_DEADLINE_S), `the serial console never printed port 0's last line ${JSON.stringify(last)}`);
    const serialLines = new Set(lines(serial.text));
    assert.ok(portLines.length >= 3, `only ${portLines.length} lines through port 0:\n${tails()}`);
    assert.deepEqual(portLines.filter((l) => !/^\[\s*\d+\.\d+\] /.test(l)), [], 'port 0 carried something other than timestamped kernel lines');
    assert.deepEqual(portLines.filter((l) => !serialLines.has(l)), [], 'port 0 carried lines the serial console did not');
    t.diagnostic(`${portLines.length} kernel lines through port 0, ${serialLines.size} distinct through the serial port`);

    // Last, a command with an effect beyond printing: ^O o powers the machine off (ACPI S5).
    const offFrom = port0.text.length;
    consolePort.write(Uint8Array.of(HVC_SYSRQ_PREFIX, 'o'.charCodeAt(0)));
    const off = await Promise.race([vm.machine.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ANSWER_DEADLINE_S * 1000).unref())]);
    assert.match(port0.text.slice(offFrom), /sysrq: Power Off/, `no SysRq power-off line through port 0:\n${tails()}`);
    assert.equal(off?.kind, 'poweroff', `the guest did not power off after ^O o (${off === undefined ? 'still running' : `${off.kind}: ${off.detail}`})`);
    return 'done';
  } finally {
    const exit = await vm.machine.stop('test done');
    t.diagnostic(`machine ${exit.kind} (${exit.detail}) at ${seconds()} s`);
  }
}

/** Boots: the race above is Linux's, not the device's, so one more boot is allowed for it. */
const MAX_BOOTS = 2;

test('the real Linux virtio_console driver talks to novm\'s console device: kernel log out, SysRq in, both ports ready', { timeout: MAX_BOOTS * (BOOT_DEADLINE_S + 6 * ANSWER_DEADLINE_S) * 1000 }, async (t) => {
  if (!existsSync('/dev/kvm')) return t.skip('no /dev/kvm');
  const kernel = minimalKernelPath();
  if (kernel === undefined) return t.skip('no minimal kernel: run scripts/build-minimal-kernel.sh first');
  const sysrq = kernelHas(kernel, 'CONFIG_MAGIC_SYSRQ');
  for (let boot = 1; boot <= MAX_BOOTS; boot++) {
    const outcome = await bootOnce(t, kernel, sysrq);
    if (outcome === 'done') return;
    if (outcome === 'no-sysrq') return t.skip('the minimal kernel predates CONFIG_MAGIC_SYSRQ: rerun scripts/build-minimal-kernel.sh');
    t.diagnostic(`boot ${boot}: the kernel opened /dev/console before hvc0 existed (ttyS0 answered SysRq instead): Linux's race, booting again`);
  }
  assert.fail(`in ${MAX_BOOTS} boots the kernel opened /dev/console before virtio_console had hooked up hvc0`);
});
