// A host cache of ELF kernels extracted from bzImages, keyed by the sha256 of the bzImage, so
// the (1-3 s) decompression happens once per kernel. Entries are written to a temporary file and
// renamed into place, so a crash or a concurrent writer never leaves a partial entry.
//
// Policy for an unusable cache directory: when the caller named the directory explicitly, that
// is an InputError naming it; when it is the default directory, the kernel is extracted anyway
// and a warning is reported (booting matters more than caching).
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../common/errors.js';

export function defaultKernelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'novm', 'kernels');
}

export interface KernelCacheOptions {
  /** A directory, `null` to disable caching, or undefined for the default directory. */
  readonly dir?: string | null;
  readonly warn?: (message: string) => void;
}

export interface CachedExtraction {
  readonly bytes: Uint8Array;
  readonly fromCache: boolean;
  readonly cachePath?: string;
}

export function contentKey(image: Uint8Array): string {
  return createHash('sha256').update(image).digest('hex');
}

/** Returns the cached extraction of `image`, or runs `extract` and stores its result. */
export function cachedExtract(image: Uint8Array, extract: () => Uint8Array, options: KernelCacheOptions = {}): CachedExtraction {
  if (options.dir === null) return { bytes: extract(), fromCache: false };
  const explicit = options.dir !== undefined;
  const dir = options.dir ?? defaultKernelCacheDir();
  const path = join(dir, `${contentKey(image)}.vmlinux`);
  try {
    return { bytes: readFileSync(path), fromCache: true, cachePath: path };
  } catch {
    // not cached yet (or unreadable): extract and try to store
  }
  const bytes = extract();
  const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(temp, bytes);
    renameSync(temp, path);
    return { bytes, fromCache: false, cachePath: path };
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // nothing was written
    }
    const reason = error instanceof Error && 'code' in error ? String(error.code) : String(error);
    const message = `kernel cache directory ${dir} is not writable (${reason})`;
    if (explicit) throw new InputError(message, { cause: error });
    (options.warn ?? ((m: string) => process.emitWarning(m)))(`${message}; continuing without the cache`);
    return { bytes, fromCache: false };
  }
}
