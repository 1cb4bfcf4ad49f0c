// The VM console layout (port 0 console, port 1 agent) against the fake driver, playing the
// control messages Linux's virtio_console sends: the size set before the driver is up reaches
// it right after CONSOLE_PORT; the driver's own PORT_OPEN is recorded per port; terminal input
// is taken with backpressure and resumed when the guest reads. Plus the kernel command line rule.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withHvcConsole } from '../../src/machine/boot-vm.js';
import { ControlEvent, VIRTIO_CONSOLE_F_MULTIPORT } from '../../src/virtio/devices/console/console-device.js';
import { AGENT_PORT_NAME, createVmConsole, HVC_SYSRQ_PREFIX, portInput } from '../../src/virtio/devices/console/vm-console.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { consoleControl, fakeDriver } from './fake-driver.js';

test('vm console: handshake as Linux plays it, resize held until the console port is hooked up', () => {
  const device = createVmConsole({ log: () => {} });
  device.resize(100, 30); // before the guest exists: only remembered
  const driver = fakeDriver(6, 16, VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT);
  device.activate(driver.context);
  const [rx0, , crx, ctx] = driver.queues;
  const posted: number[] = [];
  for (let i = 0; i < 16; i++) posted.push(crx!.post([{ length: 64, writable: true }]).addresses[0]!);
  device.notify(2);
  const readControl = () => crx!.takeUsed().map((u) => {
    const view = new DataView(driver.memory.read(posted.shift()!, u.length).buffer);
    return { id: view.getUint32(0, true), event: view.getUint16(4, true), value: view.getUint16(6, true), view };
  });
  const fromDriver = (id: number, event: number, value: number) => {
    ctx!.post([{ length: 8, writable: false, data: consoleControl(id, event, value) }]);
    device.notify(3);
  };
  // Resize before the console port is up goes nowhere (Linux would drop it: unknown port).
  device.resize(120, 40);
  assert.deepEqual(readControl(), []);
  fromDriver(0xffffffff, ControlEvent.DeviceReady, 1); // Linux sends DEVICE_READY with id VIRTIO_CONSOLE_BAD_ID
  // Only the console port at first: Linux hooks up hvc0 sooner when no other port comes before.
  assert.deepEqual(readControl().map((m) => [m.id, m.event]), [[0, ControlEvent.DeviceAdd]]);
  fromDriver(0, ControlEvent.PortReady, 1);
  const first = readControl();
  assert.deepEqual(first.map((m) => [m.id, m.event]), [[0, ControlEvent.ConsolePort], [0, ControlEvent.Resize], [0, ControlEvent.PortOpen], [1, ControlEvent.DeviceAdd]]);
  assert.deepEqual([first[1]!.view.getUint16(8, true), first[1]!.view.getUint16(10, true)], [120, 40], 'cols then rows');
  const [consolePort, agentPort] = device.ports;
  assert.equal(consolePort!.announcedAsConsole, true);
  assert.equal(consolePort!.openedByDriver, false, 'not until the driver says so');
  // init_port_console(): the driver hooks the hvc and sends PORT_OPEN 1 itself.
  fromDriver(0, ControlEvent.PortOpen, 1);
  assert.equal(consolePort!.openedByDriver, true);
  fromDriver(1, ControlEvent.PortReady, 1);
  const second = readControl();
  assert.deepEqual(second.map((m) => [m.id, m.event]), [[1, ControlEvent.PortName], [1, ControlEvent.PortOpen]]);
  assert.equal(new TextDecoder().decode(new Uint8Array(second[0]!.view.buffer).subarray(8)), AGENT_PORT_NAME);
  assert.equal(agentPort!.ready, true);
  assert.equal(agentPort!.announcedAsConsole, false);
  assert.equal(agentPort!.openedByDriver, false);
  // A repeated PORT_READY (Linux answers a repeated PORT_ADD so) neither announces a second
  // console nor adds ports again.
  fromDriver(0, ControlEvent.PortReady, 1);
  assert.equal(readControl().filter((m) => m.event === ControlEvent.ConsolePort || m.event === ControlEvent.DeviceAdd).length, 0);
  // Terminal input: a break becomes the hvc SysRq prefix.
  const input = portInput(consolePort!, () => {});
  input.sendBreak();
  assert.equal(input.enqueueInput(Uint8Array.of(0x68)), 1);
  const buffer = rx0!.post([{ length: 8, writable: true }]).addresses[0]!;
  device.notify(0);
  assert.deepEqual([...driver.memory.read(buffer, 2)], [HVC_SYSRQ_PREFIX, 0x68]);
  assert.equal(device.stats.badControl, 0);
  assert.equal(driver.resets.length, 0);
});

test('vm console: terminal input beyond the port buffer is refused in part and resumed by onSpace', () => {
  const device = createVmConsole({ log: () => {}, queueSize: 4 });
  const driver = fakeDriver(6, 4, VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT);
  device.activate(driver.context);
  const [rx0, , crx, ctx] = driver.queues;
  for (let i = 0; i < 4; i++) crx!.post([{ length: 64, writable: true }]);
  device.notify(2);
  ctx!.post([{ length: 8, writable: false, data: consoleControl(0, ControlEvent.PortReady, 1) }]);
  device.notify(3);
  let spaces = 0;
  const input = portInput(device.ports[0]!, () => spaces++);
  const big = new Uint8Array((1 << 20) + 100).fill(0x61);
  assert.equal(input.enqueueInput(big), 1 << 20, 'takes what fits');
  assert.equal(input.enqueueInput(Uint8Array.of(1)), 0, 'full');
  assert.equal(spaces, 0);
  rx0!.post([{ length: 4096, writable: true }]);
  device.notify(0);
  assert.equal(spaces, 1, 'the guest read: room again');
  assert.equal(device.ports[0]!.room, 4096);
  rx0!.post([{ length: 4096, writable: true }]);
  device.notify(0);
  assert.equal(spaces, 1, 'once per refusal');
});

test('console=hvc0 is appended last unless the command line names an hvc console', () => {
  assert.equal(withHvcConsole('console=ttyS0 panic=-1'), 'console=ttyS0 panic=-1 console=hvc0');
  assert.equal(withHvcConsole(''), 'console=hvc0');
  assert.equal(withHvcConsole('console=hvc1 quiet'), 'console=hvc1 quiet');
  assert.equal(withHvcConsole('xconsole=hvc0'), 'xconsole=hvc0 console=hvc0');
});
