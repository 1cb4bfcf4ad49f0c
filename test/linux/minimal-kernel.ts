// Where scripts/build-minimal-kernel.sh leaves novm's minimal guest kernel, and the busybox
// initramfs it boots (built by the QEMU harness's builder: same image format, no modules).
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { buildInitramfs, findKernel } from '../qemu/harness.js';

/** The newest built minimal kernel (NOVM_MINIMAL_KERNEL overrides), or undefined. */
export function minimalKernelPath(): string | undefined {
  const explicit = process.env['NOVM_MINIMAL_KERNEL'];
  if (explicit !== undefined && explicit !== '') return existsSync(explicit) ? explicit : undefined;
  const link = join(homedir(), '.cache', 'novm', 'minimal-kernel', 'vmlinux');
  return existsSync(link) ? link : undefined;
}

/** What /init prints once it runs (after the harness's begin marker) before powering off. */
export const INIT_MARKER = 'novm-minimal-init-ok';

/**
 * An uncompressed (cpio newc) busybox initramfs whose /init mounts proc/sys/dev, prints
 * INIT_MARKER and powers off. Uncompressed on purpose: in-kernel inflate costs minutes of
 * emulated kernel mode on nested PVM hosts. Undefined when busybox-static or a Debian kernel
 * (the harness keys its cache by one) is missing.
 */
export function markerInitramfs(): string | undefined {
  if (!existsSync('/bin/busybox') || findKernel() === undefined) return undefined;
  return buildInitramfs({ modules: [], script: `echo ${INIT_MARKER}\n` });
}
