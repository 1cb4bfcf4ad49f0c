// The mount table of a union file system and its validation. This is the model of the original
// design's `--read vm=>host` / `--write vm=>host`: at each VM path an ordered list of read-only host
// directories (a later one wins for the same name) and at most one writable host directory; the
// longest matching VM path wins.
import { realpathSync, statSync } from 'node:fs';
import { InputError } from '../common/errors.js';

export interface MountSpec {
  /** Absolute path inside the VM ("/", "/usr/local", ...). */
  readonly vmPath: string;
  /** Read-only host directories, lowest priority first (the later one wins for the same name). */
  readonly readOnly: readonly string[];
  /** The writable host directory (overlayfs "upper" format), if any. */
  readonly writable?: string;
}

export interface FsConfig {
  readonly mounts: readonly MountSpec[];
  /** Seconds the client may cache names and attributes (default 1). */
  readonly cacheTimeoutSeconds?: number;
}

/** A validated mount: host paths resolved (realpath), VM path normalised. */
export interface ResolvedMount {
  readonly vmPath: string;
  readonly components: readonly string[];
  readonly readOnly: readonly string[];
  readonly writable: string | null;
}

export function normaliseVmPath(vmPath: string): string[] {
  if (!vmPath.startsWith('/')) throw new InputError(`VM path "${vmPath}" must be absolute`);
  const parts = vmPath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new InputError(`VM path "${vmPath}" must not contain ".."`);
  return parts;
}

function hostDirectory(path: string, what: string): string {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw new InputError(`${what} "${path}" does not exist`);
  }
  if (!statSync(real).isDirectory()) throw new InputError(`${what} "${path}" is not a directory`);
  return real;
}

/** True if `inner` is `outer` or lies below it (both real, absolute). */
export function isWithin(inner: string, outer: string): boolean {
  if (outer === '/') return true;
  return inner === outer || inner.startsWith(outer + '/');
}

/** Validates a configuration: every layer exists and is a directory; writable layers overlap neither
 *  each other nor a read-only layer of their own mount; mount points are not repeated. */
export function resolveConfig(config: FsConfig): ResolvedMount[] {
  if (config.mounts.length === 0) throw new InputError('no layers given: use --read VM=HOST or --write VM=HOST');
  const seen = new Set<string>();
  const mounts: ResolvedMount[] = [];
  for (const spec of config.mounts) {
    const components = normaliseVmPath(spec.vmPath);
    const vmPath = '/' + components.join('/');
    if (seen.has(vmPath)) throw new InputError(`VM path "${vmPath}" is mounted twice`);
    seen.add(vmPath);
    const readOnly = spec.readOnly.map((p) => hostDirectory(p, 'read-only layer'));
    const writable = spec.writable === undefined ? null : hostDirectory(spec.writable, 'writable layer');
    if (writable !== null) {
      for (const lower of readOnly) {
        if (isWithin(writable, lower)) throw new InputError(`writable layer "${spec.writable}" is inside read-only layer "${lower}" of the same mount ${vmPath}`);
        if (isWithin(lower, writable)) throw new InputError(`read-only layer "${lower}" is inside writable layer "${spec.writable}" of mount ${vmPath}`);
      }
    }
    if (readOnly.length === 0 && writable === null) throw new InputError(`mount ${vmPath} has no layer`);
    mounts.push({ vmPath, components, readOnly, writable });
  }
  const writables = mounts.filter((m) => m.writable !== null);
  for (const a of writables) {
    for (const b of writables) {
      if (a !== b && isWithin(a.writable!, b.writable!)) throw new InputError(`writable layers "${a.writable}" (${a.vmPath}) and "${b.writable}" (${b.vmPath}) overlap`);
    }
  }
  return mounts;
}

/** Parses CLI `VM=HOST` pairs (HOST may contain "="; VM may not). */
export function parseLayerFlag(flag: string, value: string): { vmPath: string; hostPath: string } {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) throw new InputError(`${flag} expects VM=HOST, got "${value}"`);
  return { vmPath: value.slice(0, eq), hostPath: value.slice(eq + 1) };
}

/** Builds an FsConfig from CLI flags, keeping the order of --read flags per VM path. */
export function configFromFlags(read: readonly string[], write: readonly string[]): FsConfig {
  const byPath = new Map<string, { readOnly: string[]; writable?: string }>();
  const entry = (vmPath: string) => {
    const key = '/' + normaliseVmPath(vmPath).join('/');
    let e = byPath.get(key);
    if (!e) byPath.set(key, (e = { readOnly: [] }));
    return { key, e };
  };
  for (const r of read) {
    const { vmPath, hostPath } = parseLayerFlag('--read', r);
    entry(vmPath).e.readOnly.push(hostPath);
  }
  for (const w of write) {
    const { vmPath, hostPath } = parseLayerFlag('--write', w);
    const { key, e } = entry(vmPath);
    if (e.writable !== undefined) throw new InputError(`VM path "${key}" has more than one --write layer`);
    e.writable = hostPath;
  }
  return {
    mounts: [...byPath].map(([vmPath, e]) => (e.writable === undefined ? { vmPath, readOnly: e.readOnly } : { vmPath, readOnly: e.readOnly, writable: e.writable })),
  };
}
