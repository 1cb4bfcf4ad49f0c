// A QEMU TCG guest for testing device back ends with real Linux drivers: Debian's packaged
// kernel, a busybox initramfs that loads the virtio modules the test names, runs the test's
// shell script and prints its output between markers on the serial console, then powers off.
// Initramfs images are cached by content hash under the temp directory.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const BUSYBOX = '/bin/busybox';
const QEMU = '/usr/bin/qemu-system-x86_64';
const BEGIN = '@@NOVM-BEGIN@@';
const END = '@@NOVM-END@@';

export interface GuestKernel {
  readonly image: string;
  readonly version: string;
  readonly modulesDir: string;
}

/** Debian's newest packaged kernel, or undefined. */
export function findKernel(): GuestKernel | undefined {
  let names: string[];
  try {
    names = readdirSync('/boot').filter((n) => n.startsWith('vmlinuz-')).sort();
  } catch {
    return undefined;
  }
  for (const name of names.reverse()) {
    const version = name.slice('vmlinuz-'.length);
    const modulesDir = `/lib/modules/${version}`;
    if (existsSync(join(modulesDir, 'modules.dep'))) return { image: join('/boot', name), version, modulesDir };
  }
  return undefined;
}

/** Why QEMU guests cannot run here, or undefined if they can. */
export function qemuUnavailableReason(): string | undefined {
  if (!existsSync(QEMU)) return `${QEMU} not installed (Debian package qemu-system-x86)`;
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} not installed (Debian package busybox-static)`;
  if (findKernel() === undefined) return 'no /boot/vmlinuz-* with modules (Debian package linux-image-amd64)';
  try {
    accessSync('/boot', constants.R_OK);
  } catch {
    return '/boot not readable';
  }
  return undefined;
}

export interface InitramfsSpec {
  /** Module names as in modules.dep (virtio_pci, virtio_blk, virtio-rng, virtiofs...). */
  readonly modules: readonly string[];
  /** Shell script run as the test; its output is the guest result. */
  readonly script: string;
  /** Host executables copied in with their shared libraries (ldd), at the same paths. */
  readonly binaries?: readonly string[];
}

function modulesInOrder(kernel: GuestKernel, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  for (const line of readFileSync(join(kernel.modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const rest = line.slice(colon + 1).trim();
    deps.set(line.slice(0, colon), rest === '' ? [] : rest.split(/\s+/));
  }
  const byName = new Map<string, string>();
  for (const path of deps.keys()) byName.set(path.slice(path.lastIndexOf('/') + 1).replace(/\.ko(\.xz|\.zst|\.gz)?$/, ''), path);
  const order: string[] = [];
  const visit = (path: string): void => {
    if (order.includes(path)) return;
    for (const dep of deps.get(path) ?? []) visit(dep);
    order.push(path);
  };
  for (const name of wanted) {
    const path = byName.get(name);
    if (path === undefined) throw new Error(`module ${name} not found in ${kernel.modulesDir}/modules.dep`);
    visit(path);
  }
  return order;
}

function librariesOf(binary: string): string[] {
  const out = spawnSync('ldd', [binary], { encoding: 'utf8' });
  const libs: string[] = [];
  for (const line of out.stdout.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /mnt && mount -t tmpfs tmp /tmp
for m in $(cat /modules.list); do insmod /$m || echo "insmod $m failed"; done
echo ${BEGIN}
sh /test.sh 2>&1
echo "${END} rc=$?"
sync
poweroff -f
`;

/** Builds (or finds in the cache) an initramfs for `spec`; returns its path. */
export function buildInitramfs(spec: InitramfsSpec): string {
  const kernel = findKernel();
  if (kernel === undefined) throw new Error('no guest kernel');
  const modules = modulesInOrder(kernel, spec.modules);
  const files = new Map<string, string>(); // path in image -> host path
  files.set('/bin/busybox', BUSYBOX);
  for (const m of modules) files.set(`/${m}`, join(kernel.modulesDir, m));
  for (const binary of spec.binaries ?? []) {
    files.set(binary, binary);
    for (const lib of librariesOf(binary)) files.set(lib, lib);
  }
  const hash = createHash('sha256');
  hash.update(INIT).update('\0').update(spec.script).update('\0').update(kernel.version).update('\0');
  for (const [inImage, host] of [...files].sort()) hash.update(inImage).update('\0').update(readFileSync(host)).update('\0');
  const cacheDir = join(tmpdir(), 'novm-qemu-cache');
  mkdirSync(cacheDir, { recursive: true });
  const target = join(cacheDir, `initramfs-${hash.digest('hex').slice(0, 24)}.cpio`);
  if (existsSync(target)) return target;

  const stage = mkdtempSync(join(tmpdir(), 'novm-initramfs-'));
  try {
    for (const dir of ['bin', 'proc', 'sys', 'dev', 'tmp', 'mnt', 'etc']) mkdirSync(join(stage, dir), { recursive: true });
    for (const [inImage, host] of files) {
      mkdirSync(join(stage, dirname(inImage)), { recursive: true });
      copyFileSync(host, join(stage, inImage));
    }
    chmodSync(join(stage, 'bin/busybox'), 0o755);
    writeFileSync(join(stage, 'modules.list'), modules.join('\n') + '\n');
    writeFileSync(join(stage, 'init'), INIT, { mode: 0o755 });
    writeFileSync(join(stage, 'test.sh'), spec.script, { mode: 0o755 });
    const list = spawnSync('find', ['.', '-print0'], { cwd: stage });
    const cpio = spawnSync('cpio', ['--null', '-o', '-H', 'newc', '--quiet'], { cwd: stage, input: list.stdout, maxBuffer: 1 << 30 });
    if (cpio.status !== 0) throw new Error(`cpio failed: ${cpio.stderr.toString()}`);
    const partial = `${target}.${process.pid}.tmp`;
    writeFileSync(partial, cpio.stdout);
    renameSync(partial, target);
    return target;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

export interface GuestRun {
  /** Everything the serial console printed. */
  readonly transcript: string;
  /** The test script's output (between the markers), undefined if it never finished. */
  readonly output: string | undefined;
  /** The test script's exit status. */
  readonly status: number | undefined;
  readonly timedOut: boolean;
  readonly seconds: number;
}

export interface GuestOptions {
  readonly initramfs: string;
  /** Extra QEMU arguments: -chardev/-device pairs of the devices under test. */
  readonly qemuArgs: readonly string[];
  readonly timeoutMs?: number;
  readonly memoryMiB?: number;
  /** Virtual CPUs (multi-queue devices use at most one queue per CPU). */
  readonly cpus?: number;
  readonly append?: string;
}

/** Boots the guest with guest RAM in a shared memfd (vhost-user needs it) and waits for it. */
export function runGuest(options: GuestOptions): Promise<GuestRun> {
  const kernel = findKernel();
  if (kernel === undefined) return Promise.reject(new Error('no guest kernel'));
  const mem = options.memoryMiB ?? 512;
  const args = [
    '-accel', 'tcg', '-m', `${mem}`, '-smp', `${options.cpus ?? 1}`, '-nodefaults', '-no-user-config', '-display', 'none',
    '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
    '-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`, '-numa', 'node,memdev=mem',
    '-kernel', kernel.image, '-initrd', options.initramfs,
    '-append', `console=ttyS0 panic=-1 loglevel=4 ${options.append ?? ''}`.trim(),
    ...options.qemuArgs,
  ];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let transcript = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => (transcript += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (transcript += s));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 90_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', () => {
      clearTimeout(timer);
      const text = transcript.replace(/\r/g, '');
      const begin = text.indexOf(`${BEGIN}\n`);
      const endMatch = new RegExp(`${END} rc=(\\d+)`).exec(text);
      const output = begin >= 0 && endMatch !== null ? text.slice(begin + BEGIN.length + 1, endMatch.index) : undefined;
      resolve({ transcript: text, output, status: endMatch?.[1] === undefined ? undefined : Number(endMatch[1]), timedOut, seconds: (Date.now() - started) / 1000 });
    });
  });
}

export const FIO = '/usr/bin/fio';

export interface FioResult {
  readonly name: string;
  readonly readIops: number;
  readonly writeIops: number;
  readonly readKiBps: number;
  readonly writeKiBps: number;
  /** fio's error code for the job (non-zero when --verify found a mismatch). */
  readonly error: number;
}

/** A guest shell line running one fio job and printing its JSON between markers. */
export function fioCommand(name: string, args: string): string {
  return fioJobsCommand(name, '', [[name, args]]);
}

/** A guest shell line running several fio jobs in one invocation (global options first, then each
 *  job's own), printing their JSON between markers named `label`. */
export function fioJobsCommand(label: string, globalArgs: string, jobs: ReadonlyArray<readonly [name: string, args: string]>): string {
  const sections = jobs.map(([name, args]) => `--name=${name} ${args}`).join(' ');
  return `echo "FIO-BEGIN ${label}"; ${FIO} --output-format=json ${globalArgs} ${sections} 2>&1; echo "FIO-END ${label}"`;
}

/** Parses every fio job printed by fioCommand lines from a guest's output: each job of a block
 *  (one invocation may run several, e.g. --stonewall slices), named by its own --name. */
export function parseFio(output: string): FioResult[] {
  const results: FioResult[] = [];
  const re = /FIO-BEGIN (\S+)\n([\s\S]*?)FIO-END \1/g;
  for (let m = re.exec(output); m !== null; m = re.exec(output)) {
    const text = m[2]!;
    const start = text.indexOf('{');
    const end = text.lastIndexOf('}');
    if (start < 0 || end < start) continue;
    try {
      const json = JSON.parse(text.slice(start, end + 1)) as { jobs: Array<{ jobname: string; error: number; read: { iops: number; bw: number }; write: { iops: number; bw: number } }> };
      for (const job of json.jobs) {
        results.push({ name: job.jobname, readIops: job.read.iops, writeIops: job.write.iops, readKiBps: job.read.bw, writeKiBps: job.write.bw, error: job.error });
      }
    } catch {
      // Kernel messages interleaved into the JSON: skip this block.
    }
  }
  return results;
}
