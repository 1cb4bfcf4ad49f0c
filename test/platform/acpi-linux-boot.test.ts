// End to end: Debian's stock kernel boots under QEMU (TCG, microvm machine with its own ACPI
// off) with novm's ACPI tables loaded at 0xE0000, finds them by the legacy RSDP scan, brings
// up both vCPUs from the MADT, probes the PCI host bridge and ECAM, binds the 16550A through
// PNP, and loads virtio_mmio for the LNRO0005 device the DSDT describes, which then finds
// QEMU's virtio-rng (device id 4) there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAcpiTables, defaultAcpiConfig } from '../../src/platform/index.js';

const QEMU = 'qemu-system-x86_64';
const BOOT_TIMEOUT_MS = 150_000;

function findKernel(): { kernel: string; initrd: string } | undefined {
  if (!existsSync('/boot')) return undefined;
  for (const name of readdirSync('/boot').sort().reverse()) {
    if (!name.startsWith('vmlinuz-')) continue;
    const initrd = `/boot/initrd.img-${name.slice('vmlinuz-'.length)}`;
    if (existsSync(initrd)) return { kernel: `/boot/${name}`, initrd };
  }
  return undefined;
}

test('Debian kernel accepts novm ACPI tables (QEMU TCG microvm)', { timeout: BOOT_TIMEOUT_MS + 10_000 }, async (t) => {
  if (spawnSync(QEMU, ['--version']).status !== 0) return t.skip('qemu-system-x86_64 is not installed');
  const images = findKernel();
  if (!images) return t.skip('no /boot/vmlinuz-* with a matching initrd (linux-image-amd64)');

  // microvm's virtio-mmio transports: 8 x 512 bytes from 0xFEB00000, IRQs 5..12.
  const virtio = Array.from({ length: 8 }, (_, i) => ({ address: 0xfeb0_0000 + i * 0x200, size: 0x200, irq: 5 + i }));
  const tables = buildAcpiTables(defaultAcpiConfig(2, virtio));
  const dir = mkdtempSync(join(tmpdir(), 'novm-acpi-boot-'));
  const blob = join(dir, 'acpi.bin');
  writeFileSync(blob, tables.blob);
  const args = [
    '-M', 'microvm,acpi=off,auto-kernel-cmdline=off,rtc=on,pit=on,pic=on,isa-serial=on',
    '-accel', 'tcg', '-smp', '2', '-m', '512', '-nographic', '-nodefaults', '-serial', 'stdio',
    '-kernel', images.kernel, '-initrd', images.initrd,
    '-append', 'console=ttyS0 break=premount loglevel=7',
    '-device', `loader,file=${blob},addr=0x${tables.base.toString(16)},force-raw=on`,
    '-device', 'virtio-rng-device',
  ];
  const qemu = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let log = '';
  let sentCommands = false;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no result within ${BOOT_TIMEOUT_MS} ms; console:\n${log.slice(-4000)}`)), BOOT_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      log += chunk.toString('latin1');
      if (!sentCommands && log.includes('(initramfs) ')) {
        sentCommands = true;
        // The result line is built by the shell, so the echoed command cannot match it.
        qemu.stdin.write('echo "RESULT=$(cat /sys/bus/virtio/devices/*/device | tr -d "\\n"):$(grep -c ^virtio_mmio /proc/modules):END"\n');
      }
      if (/RESULT=[^$]*:\d+:END/.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    qemu.on('exit', (code) => {
      clearTimeout(timer);
      if (!/RESULT=/.test(log)) reject(new Error(`QEMU exited (${code}) early; console:\n${log.slice(-4000)}`));
    });
  });
  try {
    await done;
  } finally {
    qemu.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  const expect = (pattern: RegExp, what: string): void => assert.match(log, pattern, `${what}; console:\n${log.slice(0, 12000)}`);
  expect(/ACPI: RSDP 0x00000000000E0000 000024 \(v02 NOVM/, 'RSDP found by the legacy scan');
  for (const sig of ['XSDT', 'FACP', 'DSDT', 'FACS', 'APIC', 'MCFG', 'SPCR']) expect(new RegExp(`ACPI: ${sig} 0x`), sig);
  expect(/ACPI: PM-Timer IO Port: 0x608/, 'PM timer from the FADT');
  expect(/INT_SRC_OVR \(bus 0 bus_irq 9 global_irq 9 high level\)/, 'SCI override');
  expect(/ACPI: SPCR: console: uart,io,0x3f8,115200/, 'SPCR console');
  expect(/smpboot: Total of 2 processors activated/, 'both vCPUs from the MADT');
  expect(/ACPI: Interpreter enabled/, 'DSDT loaded');
  expect(/ACPI: PM: \(supports S0 S5\)/, '\\_S5_ found');
  expect(/MMCONFIG at \[mem 0xe0000000-0xefffffff\] reserved in ACPI motherboard resources/, 'ECAM reserved by MRES');
  expect(/ACPI: PCI Root Bridge \[PCI0\] \(domain 0000 \[bus 00-ff\]\)/, 'host bridge');
  expect(/_OSC: OS now controls/, '_OSC');
  expect(/ttyS0 at I\/O 0x3f8 \(irq = 4, base_baud = 115200\) is a 16550A/, 'UART via PNP0501');
  expect(/rtc_cmos 00:0\d: registered as rtc0/, 'RTC via PNP0B00');
  assert.doesNotMatch(log, /ACPI BIOS Error|AE_AML|Namespace lookup failure|ACPI Warning/, 'no AML or table complaints');
  const result = /RESULT=([^:]*):(\d+):END/.exec(log);
  assert.ok(result, 'result line');
  assert.equal(result[2], '1', 'udev loaded virtio_mmio for LNRO0005');
  assert.equal(result[1], '0x0004', 'virtio_mmio found the virtio-rng at the DSDT address');
});
