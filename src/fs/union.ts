// The union/namespace engine: a tree built from mounts of host directory layers, with copy-up,
// overlayfs-format whiteouts and opaque directories, and confinement.
//
// Confinement: every host object is reached from a layer root fd one component at a time with
// openat(dirfd, name, O_PATH | O_NOFOLLOW), where `name` is a single validated component (no "/",
// not "." or ".."). Nodes hold O_PATH fds, not paths, so renames and symlink swaps on the host
// cannot redirect them; symlinks are never followed by the server (the client resolves them inside
// the union); "/proc/self/fd/N" is only reopened for regular files and directories. Node ids and
// file handles are slots of IdTables with generations, so forged ones never reach an object.
import { readdirSync } from 'node:fs';
import {
  AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, chmod, closeFd,
  fchownat, fgetxattr, flistxattr, fstatat, ftruncate, getrlimit, getxattr, lastErrno, linkat, listxattr, mkdirat, mknodat, O_CLOEXEC, O_CREAT,
  O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_TMPFILE, openat, readlinkat, removexattr,
  RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, renameat2, RLIMIT_NOFILE, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, S_ISUID,
  setxattr, STAT_SIZE, StatOffset, symlinkat, unlinkat, utimensat,
} from '../native/fs-calls.js';
import { type FsConfig, resolveConfig, type ResolvedMount } from './config.js';
import { Errno, FsError, fsError, sys } from './errors.js';
import { DataCopier } from './copy-data.js';
import { HostStat } from './host-stat.js';
import { IdTable } from './id-table.js';

export interface Layer {
  readonly fd: number;
  readonly hostPath: string;
  readonly writable: boolean;
}

export interface MountPoint {
  readonly index: number;
  readonly vmPath: string;
  /** Top first: the writable layer, then read-only layers from the highest priority down. */
  readonly layers: readonly Layer[];
  readonly upper: Layer | null;
}

/** A node of the tree of VM paths that lead to mount points. */
export class MountTrie {
  readonly children = new Map<string, MountTrie>();
  mount: MountPoint | null = null;
  constructor(readonly id: number) {}
}

function ioFdBudgetOf(): number {
  const lim = new BigUint64Array(2);
  const soft = getrlimit(RLIMIT_NOFILE, lim) === 0 ? Number(lim[0]! > 1_000_000n ? 1_000_000n : lim[0]!) : 1024;
  return Math.max(16, Math.min(4096, Math.floor(soft / 16)));
}

export class FsNode {
  index = 0;
  generation = 0;
  /** Lookups the client holds (FUSE nlookup). */
  lookups = 0;
  /** Nodes whose primary parent is this one: a parent outlives its children. */
  childRefs = 0;
  /** Known to carry no extended attributes (the layers change only through this server). */
  noXattrs = false;
  /** A host fd for data I/O when the client reads or writes without an OPEN (fh 0), or -1. */
  ioFd = -1;
  ioWritable = false;
  constructor(
    public key: string,
    /** O_PATH fds, top layer first; for directories one per merged layer; empty when synthetic. */
    public fds: number[],
    public layers: Layer[],
    readonly type: number,
    readonly mount: MountPoint | null,
    readonly trie: MountTrie | null,
    public parent: FsNode | null,
    public name: string,
  ) {}
  get fd(): number {
    return this.fds[0] ?? -1;
  }
  get isDir(): boolean {
    return this.type === S_IFDIR;
  }
  get synthetic(): boolean {
    return this.fds.length === 0;
  }
  /** True if the top object lives in the mount's writable layer. */
  get isUpper(): boolean {
    return this.mount !== null && this.mount.upper !== null && this.layers[0] === this.mount.upper;
  }
}

export interface DirEntry {
  readonly name: string;
  readonly type: number;
  /** Index into the directory node's fds of the layer the entry comes from (-1: a mount point). */
  readonly layer: number;
}

const OPAQUE_XATTR = 'trusted.overlay.opaque';
const PRIVATE_XATTR_PREFIX = 'trusted.overlay.';
const NAME_MAX = 255;

export function procPath(fd: number): string {
  return '/proc/self/fd/' + fd;
}

/** Validates a single path component from the client. */
export function checkName(name: string): void {
  if (name.length === 0 || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) throw fsError(Errno.EINVAL);
  if (name.length > NAME_MAX) throw fsError(Errno.ENAMETOOLONG);
}

/** Latin-1 strings are a byte-exact encoding of host names; this turns one into a C string. */
export class NameBuffer {
  private readonly buffer = Buffer.alloc(4 * 1024 + 1);
  set(name: string): Buffer {
    const n = this.buffer.write(name, 0, 'latin1');
    this.buffer[n] = 0;
    return this.buffer;
  }
}

/** The lower object a copy-up starts from. */
interface CopyUpSource {
  readonly mount: MountPoint;
  readonly parent: FsNode;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  /** atime, atime ns, mtime, mtime ns. */
  readonly times: readonly number[];
}

/** A regular file's copy in progress: the open source, the temporary copy in `dirFd`, and the
 *  lower object whose owner, mode and times it gets at the end. */
export interface RegularCopy {
  readonly src: number;
  tmp: number;
  /** The hidden temporary name when O_TMPFILE is not available, until renamed into place. */
  tmpName: string | null;
  readonly dirFd: number;
  readonly source: CopyUpSource;
}

/** A copy-up whose data copy runs elsewhere (planCopyUp / completeCopyUp). */
export interface PlannedCopyUp {
  readonly node: FsNode;
  readonly copy: RegularCopy;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** Host fd to truncate through (FATTR_FH), if any. */
  fd?: number;
  atime?: { sec: number; nsec: number };
  mtime?: { sec: number; nsec: number };
}

export interface UnionStats {
  nodes: number;
  openFds: number;
}

export class UnionFs {
  readonly nodes = new IdTable<FsNode>(2);
  readonly root: FsNode;
  readonly mounts: MountPoint[] = [];
  private readonly byKey = new Map<string, FsNode>();
  private readonly devIndex = new Map<number, number>();
  private readonly st = new HostStat();
  private readonly st2 = new HostStat();
  /** The top object's stat from the last lookup() (valid until the next engine call). */
  readonly lookupStat = new HostStat();
  lookupStatValid = false;
  private readonly nameA = new NameBuffer();
  private readonly nameB = new NameBuffer();
  private readonly xattrScratch = new Uint8Array(64);
  private readonly timesBuf = new BigInt64Array(4);
  private readonly copier = new DataCopier();
  private nextTrieId = 0;
  private fdCount = 0;
  tmpfileSupported = true;

  constructor(config: FsConfig) {
    const resolved = resolveConfig(config);
    const trieRoot = new MountTrie(this.nextTrieId++);
    resolved.forEach((m, index) => this.addMount(trieRoot, m, index));
    const rootMount = trieRoot.mount;
    this.root = rootMount ? this.mountRootNode(rootMount, trieRoot, null, '') : this.syntheticNode(trieRoot, null, '');
    this.root.lookups = 1;
    this.nodes.setReserved(1, this.root);
    this.root.index = 1;
    this.root.generation = 0;
    this.byKey.set(this.root.key, this.root);
  }

  private addMount(trieRoot: MountTrie, m: ResolvedMount, index: number): void {
    let t = trieRoot;
    for (const c of m.components) {
      let child = t.children.get(c);
      if (!child) t.children.set(c, (child = new MountTrie(this.nextTrieId++)));
      t = child;
    }
    const open = (hostPath: string, writable: boolean): Layer => ({ fd: sys(openat(AT_FDCWD, hostPath, O_PATH | O_DIRECTORY | O_CLOEXEC, 0), hostPath), hostPath, writable });
    const upper = m.writable === null ? null : open(m.writable, true);
    const lowers = m.readOnly.map((p) => open(p, false)).reverse();
    const mount: MountPoint = { index, vmPath: m.vmPath, layers: upper ? [upper, ...lowers] : lowers, upper };
    t.mount = mount;
    this.mounts.push(mount);
  }

  // ---- node bookkeeping -------------------------------------------------------------------------

  get openFdCount(): number {
    return this.fdCount;
  }

  stats(): UnionStats {
    return { nodes: this.nodes.size, openFds: this.fdCount };
  }

  private openPath(dirFd: number, name: Buffer): number {
    const fd = openat(dirFd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd >= 0) this.fdCount++;
    return fd;
  }

  private closeFd(fd: number): void {
    if (fd >= 0) {
      closeFd(fd);
      this.fdCount--;
    }
  }

  private hostIdentity(st: HostStat): string {
    return st.dev + ':' + st.ino;
  }

  /** Small index per host device, folded into reported inode numbers so layers on different devices do not collide. */
  deviceIndex(dev: number): number {
    let i = this.devIndex.get(dev);
    if (i === undefined) this.devIndex.set(dev, (i = this.devIndex.size));
    return i;
  }

  private keyOf(mount: MountPoint, st: HostStat): string {
    return mount.index + ':' + this.hostIdentity(st);
  }

  private mountRootNode(mount: MountPoint, trie: MountTrie, parent: FsNode | null, name: string): FsNode {
    const fds = mount.layers.map((l) => {
      const fd = sys(openat(l.fd, '.', O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
      this.fdCount++;
      return fd;
    });
    const layers = [...mount.layers];
    // A read-only layer may itself be an old upper layer: honour an opaque marker on its root.
    for (let i = 0; i < fds.length - 1; i++) {
      if (this.isOpaque(fds[i]!)) {
        for (const fd of fds.splice(i + 1)) this.closeFd(fd);
        layers.splice(i + 1);
        break;
      }
    }
    this.st.ofFd(fds[0]!);
    return new FsNode(this.keyOf(mount, this.st), fds, layers, S_IFDIR, mount, trie, parent, name);
  }

  private syntheticNode(trie: MountTrie, parent: FsNode | null, name: string): FsNode {
    return new FsNode('t' + trie.id, [], [], S_IFDIR, null, trie, parent, name);
  }

  /** Registers a fresh node (or merges into the existing one with the same identity) and takes one lookup. */
  private adopt(node: FsNode): FsNode {
    const existing = this.byKey.get(node.key);
    if (existing) {
      for (const fd of node.fds) this.closeFd(fd);
      existing.lookups++;
      if (node.parent && existing.parent !== node.parent && existing !== this.root) {
        this.setParent(existing, node.parent, node.name);
      } else {
        existing.name = node.name;
      }
      return existing;
    }
    const { index, generation } = this.nodes.add(node);
    node.index = index;
    node.generation = generation;
    node.lookups = 1;
    if (node.parent) node.parent.childRefs++;
    this.byKey.set(node.key, node);
    return node;
  }

  private setParent(node: FsNode, parent: FsNode, name: string): void {
    const old = node.parent;
    parent.childRefs++;
    node.parent = parent;
    node.name = name;
    if (old) {
      old.childRefs--;
      this.maybeFree(old);
    }
  }

  /** Drops `count` client lookups; frees the node when nothing refers to it any more. */
  forget(node: FsNode, count: number): void {
    if (node === this.root) return;
    node.lookups = Math.max(0, node.lookups - count);
    this.maybeFree(node);
  }

  /** Where retired node I/O fds go (the handler defers closing those with I/O in flight). */
  retireFd: (fd: number) => void = (fd) => void closeFd(fd);
  /** Called when a node is freed (the client forgot it and nothing else holds it). */
  nodeFreed: ((node: FsNode) => void) | null = null;
  /** Node I/O fds kept open at most: beyond, the least recently used is closed (and reopened
   *  when needed). Every node also holds an O_PATH fd, and the process's fd limit may not be
   *  raisable (no CAP_SYS_RESOURCE): I/O fds may take a sixteenth of it, at most 4096. */
  ioFdBudget = ioFdBudgetOf();
  /** Nodes holding an I/O fd, least recently used first. */
  private readonly ioFdNodes = new Set<FsNode>();

  private dropIoFd(node: FsNode): void {
    if (node.ioFd >= 0) {
      this.retireFd(node.ioFd);
      node.ioFd = -1;
      node.ioWritable = false;
      this.ioFdNodes.delete(node);
    }
  }

  private keepIoFd(node: FsNode): void {
    this.ioFdNodes.add(node);
    while (this.ioFdNodes.size > this.ioFdBudget) {
      const oldest = this.ioFdNodes.values().next().value as FsNode;
      this.dropIoFd(oldest);
    }
  }

  /** Makes `fd` (read-write, from create/tmpfile) the node's I/O fd. */
  adoptIoFd(node: FsNode, fd: number): void {
    this.dropIoFd(node);
    node.ioFd = fd;
    node.ioWritable = true;
    this.keepIoFd(node);
  }

  /** The node's I/O fd (regular files only), reopened read-write after a copy-up when `write`. */
  ioFd(node: FsNode, write: boolean): number {
    if (write) this.copyUp(node);
    if (node.ioFd >= 0 && (node.ioWritable || !write)) {
      // Most recently used last (a Set keeps insertion order).
      this.ioFdNodes.delete(node);
      this.ioFdNodes.add(node);
      return node.ioFd;
    }
    this.dropIoFd(node);
    const writable = node.isUpper;
    node.ioFd = this.open(node, writable ? O_RDWR : O_RDONLY);
    node.ioWritable = writable;
    this.keepIoFd(node);
    return node.ioFd;
  }

  private maybeFree(start: FsNode): void {
    let node: FsNode | null = start;
    while (node && node !== this.root && node.lookups === 0 && node.childRefs === 0) {
      if (this.byKey.get(node.key) === node) this.byKey.delete(node.key);
      this.dropIoFd(node);
      this.nodeFreed?.(node);
      for (const fd of node.fds) this.closeFd(fd);
      node.fds = [];
      this.nodes.remove(node.index);
      const parent: FsNode | null = node.parent;
      node.parent = null;
      if (parent) parent.childRefs--;
      node = parent;
    }
  }

  node(low: number, high: number): FsNode {
    const node = this.nodes.get(low, high);
    if (!node) throw fsError(Errno.ESTALE);
    return node;
  }

  // ---- resolution -------------------------------------------------------------------------------

  private isOpaque(dirFd: number): boolean {
    return getxattr(procPath(dirFd), OPAQUE_XATTR, this.xattrScratch, this.xattrScratch.length) === 1 && this.xattrScratch[0] === 0x79;
  }

  /** Set by resolve: the parent's upper directory has no entry of that name (not even a whiteout),
   *  so creating there needs no whiteout check (one fstatat less per CREATE/MKDIR/MKNOD). */
  private upperLacksName = false;

  /** Opens `name` in `parent` across the parent's layers; returns an unregistered node, or null. */
  private resolve(parent: FsNode, name: string): FsNode | null {
    if (!parent.isDir) throw fsError(Errno.ENOTDIR);
    this.upperLacksName = false;
    const trieChild = parent.trie?.children.get(name);
    if (trieChild?.mount) return this.mountRootNode(trieChild.mount, trieChild, parent, name);
    const cname = this.nameA.set(name);
    const fds: number[] = [];
    const layers: Layer[] = [];
    let type = 0;
    let key = '';
    for (let i = 0; i < parent.fds.length; i++) {
      const fd = this.openPath(parent.fds[i]!, cname);
      if (fd < 0) {
        const errno = lastErrno();
        if (errno === Errno.ENOENT) {
          if (i === 0 && parent.isUpper) this.upperLacksName = true;
          continue;
        }
        for (const f of fds) this.closeFd(f);
        throw new FsError(errno);
      }
      this.st.ofFd(fd);
      if (this.st.isWhiteout) {
        this.closeFd(fd);
        break;
      }
      if (fds.length === 0) {
        type = this.st.type;
        key = this.keyOf(parent.mount!, this.st);
        this.lookupStat.copyFrom(this.st);
        fds.push(fd);
        layers.push(parent.layers[i]!);
        if (type !== S_IFDIR) break;
      } else if (this.st.isDir) {
        fds.push(fd);
        layers.push(parent.layers[i]!);
      } else {
        this.closeFd(fd);
        break;
      }
      if (i < parent.fds.length - 1 && this.isOpaque(fd)) break;
    }
    if (trieChild) {
      // A path that leads to a deeper mount point: a directory even if no layer has it.
      if (fds.length === 0 || type !== S_IFDIR) {
        for (const f of fds) this.closeFd(f);
        return this.syntheticNode(trieChild, parent, name);
      }
      return new FsNode(key, fds, layers, type, parent.mount, trieChild, parent, name);
    }
    if (fds.length === 0) return null;
    return new FsNode(key, fds, layers, type, parent.mount, null, parent, name);
  }

  /** FUSE LOOKUP: the child node, with one more client lookup. */
  lookup(parent: FsNode, name: string): FsNode {
    checkName(name);
    this.lookupStatValid = false;
    const node = this.resolve(parent, name);
    if (!node) throw fsError(Errno.ENOENT);
    // Mount roots and synthetic directories are stated afresh; plain entries reuse the resolve's stat.
    this.lookupStatValid = !node.synthetic && node.trie === null;
    return this.adopt(node);
  }

  /** Resolves and registers without the client knowing; release with `forget(node, 1)`. */
  private acquire(parent: FsNode, name: string): FsNode | null {
    const node = this.resolve(parent, name);
    return node ? this.adopt(node) : null;
  }

  /** Index of the first layer of `parent` (below the upper) holding `name`; whiteouts end the search. */
  private lowerHas(parent: FsNode, name: string): boolean {
    const cname = this.nameA.set(name);
    for (let i = parent.isUpper ? 1 : 0; i < parent.fds.length; i++) {
      if (this.st2.ofName(parent.fds[i]!, cname)) return !this.st2.isWhiteout;
    }
    return false;
  }

  /** True if the upper directory of `parent` holds a whiteout named `name`. */
  private upperWhiteout(parent: FsNode, name: string): boolean {
    return parent.isUpper && this.st2.ofName(parent.fd, this.nameA.set(name)) && this.st2.isWhiteout;
  }

  // ---- attributes -------------------------------------------------------------------------------

  /** Stats the node's top object into the shared HostStat (null for a synthetic directory). */
  stat(node: FsNode): HostStat | null {
    if (node.synthetic) return null;
    return this.st.ofFd(node.fd);
  }

  readlink(node: FsNode): Buffer {
    if (node.type !== S_IFLNK) throw fsError(Errno.EINVAL);
    const buf = Buffer.allocUnsafe(4096);
    const n = sys(readlinkat(node.fd, '', buf, buf.length));
    return buf.subarray(0, n);
  }

  // ---- directories ------------------------------------------------------------------------------

  /** The merged listing of a directory: upper entries hide lower ones, whiteouts hide and vanish,
   *  opaque directories end the merge (already reflected in node.fds), mount points appear as dirs. */
  list(node: FsNode): DirEntry[] {
    if (!node.isDir) throw fsError(Errno.ENOTDIR);
    const seen = new Set<string>();
    const out: DirEntry[] = [];
    const last = node.fds.length - 1;
    node.fds.forEach((fd, i) => {
      const entries = readdirSync(procPath(fd), { withFileTypes: true, encoding: 'buffer' });
      for (const d of entries) {
        const name = (d.name as unknown as Buffer).toString('latin1');
        if (seen.has(name)) continue;
        seen.add(name);
        let type = direntType(d);
        if (type === S_IFCHR && (i < last || node.isUpper)) {
          if (this.st2.ofName(fd, this.nameA.set(name)) && this.st2.isWhiteout) continue;
        }
        if (node.trie?.children.has(name)) {
          out.push({ name, type: S_IFDIR, layer: -1 });
          continue;
        }
        out.push({ name, type, layer: i });
      }
    });
    if (node.trie) {
      for (const name of node.trie.children.keys()) if (!seen.has(name)) out.push({ name, type: S_IFDIR, layer: -1 });
    }
    return out;
  }

  /** The inode number a plain READDIR reports for an entry (as GETATTR would, folded per device). */
  direntIno(dir: FsNode, entry: DirEntry): { low: number; high: number } {
    const fd = entry.layer >= 0 ? dir.fds[entry.layer] : undefined;
    if (fd === undefined || !this.st2.ofName(fd, this.nameA.set(entry.name))) return { low: 0xffff_0000, high: 0 };
    const v = this.st2.view;
    const dev = this.deviceIndex(this.st2.dev);
    return { low: v.getUint32(StatOffset.ino, true), high: (v.getUint32(StatOffset.ino + 4, true) ^ (dev << 16)) >>> 0 };
  }

  private requireEmpty(dir: FsNode): void {
    if (this.list(dir).length > 0) throw fsError(Errno.ENOTEMPTY);
  }

  /** Removes the whiteouts left in the upper part of an (apparently empty) directory. */
  private clearWhiteouts(dir: FsNode): void {
    if (!dir.isUpper) return;
    const entries = readdirSync(procPath(dir.fd), { encoding: 'buffer' });
    for (const raw of entries) {
      const name = this.nameB.set(raw.toString('latin1'));
      if (this.st2.ofName(dir.fd, name) && this.st2.isWhiteout) sys(unlinkat(dir.fd, name, 0));
    }
  }

  // ---- copy-up ----------------------------------------------------------------------------------

  private writableMount(node: FsNode): MountPoint {
    if (!node.mount || !node.mount.upper || node.synthetic) throw fsError(Errno.EROFS);
    return node.mount;
  }

  /** Makes the node's top object live in the writable layer (copying data, mode, owner, times, xattrs). */
  copyUp(node: FsNode): void {
    if (node.isUpper) return;
    const source = this.copyUpSource(node);
    const dirFd = source.parent.fd;
    const name = this.nameA.set(node.name);
    const { mode } = source;
    switch (node.type) {
      case S_IFDIR: {
        if (mkdirat(dirFd, name, mode & 0o7777) < 0 && lastErrno() !== Errno.EEXIST) sys(-1, 'mkdir');
        break;
      }
      case S_IFREG: {
        const copy = this.beginRegularCopy(node.fd, source);
        try {
          this.copier.copy(copy.src, copy.tmp, source.size);
          this.finishRegularCopy(copy, node.name);
        } finally {
          this.endRegularCopy(copy);
        }
        break;
      }
      case S_IFLNK: {
        const target = this.readlink(node);
        sys(symlinkat(Buffer.concat([target, Buffer.of(0)]), dirFd, name));
        break;
      }
      default:
        sys(mknodat(dirFd, name, mode, source.rdev));
    }
    this.adoptCopy(node, source);
  }

  /**
   * The first half of a regular file's copy-up whose data copy runs on another thread: the parent
   * is copied up and a temporary file opened here; the caller copies `size` bytes from `src` to
   * `tmp` (DataCopier) and calls completeCopyUp with 0 or -errno. Null when the node needs no
   * copy-up or a small one that copyUp() does inline at once.
   */
  planCopyUp(node: FsNode, minSize: number): PlannedCopyUp | null {
    if (node.isUpper || node.type !== S_IFREG || this.st.ofFd(node.fd).size < minSize) return null;
    const source = this.copyUpSource(node);
    return { node, copy: this.beginRegularCopy(node.fd, source) };
  }

  /** The second half of a planned copy-up; throws FsError if the copy or the rest failed. */
  completeCopyUp(plan: PlannedCopyUp, result: number): void {
    try {
      if (result < 0) throw fsError(-result);
      // The node may have been copied up meanwhile by a request that did not wait (a bug) or
      // renamed: only a node still in the place it was planned for takes the copy.
      if (plan.node.isUpper || plan.node.parent !== plan.copy.source.parent) throw fsError(Errno.ESTALE);
      this.finishRegularCopy(plan.copy, plan.node.name);
    } finally {
      this.endRegularCopy(plan.copy);
    }
    this.adoptCopy(plan.node, plan.copy.source);
  }

  /** What a copy-up needs to know of the lower object; copies the parent up first. */
  private copyUpSource(node: FsNode): CopyUpSource {
    const mount = this.writableMount(node);
    const parent = node.parent;
    if (!parent || parent.mount !== mount) throw fsError(Errno.EROFS);
    this.copyUp(parent);
    const src = this.st.ofFd(node.fd);
    return {
      mount, parent, mode: src.mode, uid: src.uid, gid: src.gid, rdev: src.rdev, size: src.size,
      times: [src.u64(StatOffset.atime), src.u64(StatOffset.atimeNsec), src.u64(StatOffset.mtime), src.u64(StatOffset.mtimeNsec)],
    };
  }

  /** Switches the node to the object now in the writable layer. */
  private adoptCopy(node: FsNode, source: CopyUpSource): void {
    const { mount, parent } = source;
    const fd = sys(this.openPath(parent.fd, this.nameA.set(node.name)));
    if (node.type !== S_IFREG) {
      fchownat(fd, '', source.uid, source.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      if (node.type !== S_IFLNK) {
        chmod(procPath(fd), source.mode & 0o7777);
        this.copyXattrs(procPath(node.fd), procPath(fd));
      }
      utimensat(fd, '', this.timesBytes(source.times), AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    }
    this.byKey.delete(node.key);
    this.dropIoFd(node); // it points at the lower copy
    if (node.isDir) {
      node.fds.unshift(fd);
      node.layers.unshift(mount.upper!);
    } else {
      this.closeFd(node.fd);
      node.fds = [fd];
      node.layers = [mount.upper!];
    }
    node.key = this.keyOf(mount, this.st.ofFd(fd));
    this.byKey.set(node.key, node);
  }

  private timesBytes(times: readonly number[]): Uint8Array {
    const t = this.timesBuf;
    for (let i = 0; i < 4; i++) t[i] = BigInt(times[i]!);
    return new Uint8Array(t.buffer);
  }

  /** Opens a regular file's copy: the source for reading and an unnamed (O_TMPFILE) or hidden
   *  temporary file in the parent's upper directory, so the copy appears only when complete. */
  private beginRegularCopy(srcPathFd: number, source: CopyUpSource): RegularCopy {
    const dirFd = source.parent.fd;
    const mode = source.mode;
    const src = sys(openat(AT_FDCWD, procPath(srcPathFd), O_RDONLY | O_CLOEXEC, 0));
    const copy: RegularCopy = { src, tmp: -1, tmpName: null, dirFd, source };
    try {
      if (this.tmpfileSupported) {
        copy.tmp = openat(dirFd, '.', O_TMPFILE | O_RDWR | O_CLOEXEC, mode & 0o7777);
        if (copy.tmp < 0) {
          const errno = lastErrno();
          if (errno !== Errno.EOPNOTSUPP && errno !== Errno.EISDIR && errno !== Errno.EINVAL) sys(-1, 'O_TMPFILE');
          this.tmpfileSupported = false;
        }
      }
      if (copy.tmp < 0) {
        copy.tmpName = `.novm-copyup.${process.pid}.${Math.random().toString(36).slice(2)}`;
        copy.tmp = sys(openat(dirFd, this.nameB.set(copy.tmpName), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode & 0o7777));
      }
    } catch (error) {
      this.endRegularCopy(copy);
      throw error;
    }
    return copy;
  }

  /** Owner, mode, xattrs and times on the copied data, then the copy into place as `name`. */
  private finishRegularCopy(copy: RegularCopy, name: string): void {
    const { tmp, dirFd, source } = copy;
    fchownat(tmp, '', source.uid, source.gid, AT_EMPTY_PATH);
    chmod(procPath(tmp), source.mode & 0o7777);
    this.copyXattrs(procPath(copy.src), procPath(tmp));
    utimensat(tmp, '', this.timesBytes(source.times), AT_EMPTY_PATH);
    if (copy.tmpName === null) {
      sys(linkat(AT_FDCWD, procPath(tmp), dirFd, this.nameA.set(name), AT_SYMLINK_FOLLOW), 'link copy-up');
    } else {
      sys(renameat2(dirFd, this.nameB.set(copy.tmpName), dirFd, this.nameA.set(name), RENAME_NOREPLACE), 'rename copy-up');
      copy.tmpName = null;
    }
  }

  /** Closes a regular copy's fds and removes a named temporary file left behind by a failure. */
  private endRegularCopy(copy: RegularCopy): void {
    closeFd(copy.src);
    if (copy.tmp >= 0) closeFd(copy.tmp);
    copy.tmp = -1;
    if (copy.tmpName !== null) unlinkat(copy.dirFd, this.nameB.set(copy.tmpName), 0);
    copy.tmpName = null;
  }

  private copyXattrs(from: string, to: string): void {
    const names = this.listXattrNames(from);
    for (const name of names) {
      const size = getxattr(from, name, null, 0);
      if (size < 0) continue;
      const value = Buffer.alloc(size);
      const n = getxattr(from, name, value, size);
      if (n < 0) continue;
      // Some xattrs (security.*, trusted.* of other subsystems) may be refused: copy what the host allows.
      setxattr(to, name, value, n, 0);
    }
  }

  private listXattrNames(path: string): string[] {
    const size = listxattr(path, null, 0);
    if (size <= 0) return [];
    const buf = Buffer.alloc(size);
    const n = listxattr(path, buf, size);
    if (n <= 0) return [];
    return buf.toString('latin1', 0, n).split('\0').filter((s) => s !== '' && !s.startsWith(PRIVATE_XATTR_PREFIX));
  }

  // ---- creation ---------------------------------------------------------------------------------

  /** Prepares `parent` (copied up) for a new entry `name`: refuses existing names, removes a whiteout.
   *  Returns true if a lower layer has the name (a new directory there must be opaque). */
  private prepareCreate(parent: FsNode, name: string): boolean {
    checkName(name);
    if (!parent.isDir) throw fsError(Errno.ENOTDIR);
    if (parent.trie?.children.has(name)) throw fsError(Errno.EEXIST);
    this.writableMount(parent);
    const existing = this.resolve(parent, name);
    if (existing) {
      for (const fd of existing.fds) this.closeFd(fd);
      throw fsError(Errno.EEXIST);
    }
    const upperLacksName = this.upperLacksName;
    this.copyUp(parent);
    const hidden = this.lowerHas(parent, name);
    if (!upperLacksName && this.upperWhiteout(parent, name)) sys(unlinkat(parent.fd, this.nameA.set(name), 0));
    return hidden;
  }

  /** Owner of a new object: the requester, with the parent's group when the parent is set-group-ID. */
  private owner(parent: FsNode, uid: number, gid: number): { uid: number; gid: number; sgid: boolean } {
    const st = this.st2.ofFd(parent.fd);
    if (st.mode & S_ISGID) return { uid, gid: st.gid, sgid: true };
    return { uid, gid, sgid: false };
  }

  /** Whether a new object made by this process in `parent` needs an explicit chown to belong to
   *  the requester: a new inode takes the server's fsuid and its fsgid (or the parent's group when
   *  the parent is set-group-ID), so a root server serving root skips one journal handle. */
  private needsChown(o: { uid: number; gid: number; sgid: boolean }): boolean {
    return o.uid !== this.serverUid || (!o.sgid && o.gid !== this.serverGid);
  }
  private readonly serverUid = process.geteuid?.() ?? -1;
  private readonly serverGid = process.getegid?.() ?? -1;

  private finishCreate(parent: FsNode, name: string, uid: number, gid: number): FsNode {
    const o = this.owner(parent, uid, gid);
    if (this.needsChown(o)) sys(fchownat(parent.fd, this.nameA.set(name), o.uid, o.gid, AT_SYMLINK_NOFOLLOW));
    return this.lookup(parent, name);
  }

  /**
   * The first half of a CREATE whose blocking part (creating the inode, which can take the host
   * file system's journal for a millisecond) runs on another thread: every check and union step
   * happens here; the caller then runs openat(dirFd, name, O_CREAT | O_EXCL | O_RDWR, mode) and,
   * when chown is set, fchownat(dirFd, name, uid, gid), and calls completeCreate.
   */
  planCreate(parent: FsNode, name: string, uid: number, gid: number): { dirFd: number; uid: number; gid: number; chown: boolean } {
    this.prepareCreate(parent, name);
    const o = this.owner(parent, uid, gid);
    return { dirFd: parent.fd, uid: o.uid, gid: o.gid, chown: this.needsChown(o) };
  }

  /** The first half of a MKDIR whose mkdirat (and chown) runs on another thread, like
   *  planCreate; null when the directory needs more than that (set-group-ID inheritance, or an
   *  opaque marker because a lower layer has the name): then mkdir() does it all inline. */
  planMkdir(parent: FsNode, name: string, uid: number, gid: number): { dirFd: number; uid: number; gid: number; chown: boolean } | null {
    checkName(name);
    if (!parent.isDir) throw fsError(Errno.ENOTDIR);
    const o = this.owner(parent, uid, gid);
    if (o.sgid || this.lowerHas(parent, name)) return null;
    this.prepareCreate(parent, name);
    return { dirFd: parent.fd, uid: o.uid, gid: o.gid, chown: this.needsChown(o) };
  }

  /** The second half of a planned MKDIR, once the host directory exists. */
  completeMkdir(parent: FsNode, name: string): FsNode {
    return this.lookup(parent, name);
  }

  /** The second half of a planned CREATE: `fd` is the host file it made; returns the node. */
  completeCreate(parent: FsNode, name: string, fd: number): { node: FsNode; fd: number } {
    try {
      return { node: this.lookup(parent, name), fd };
    } catch (error) {
      closeFd(fd);
      throw error;
    }
  }

  mkdir(parent: FsNode, name: string, mode: number, uid: number, gid: number): FsNode {
    const hidden = this.prepareCreate(parent, name);
    const o = this.owner(parent, uid, gid);
    sys(mkdirat(parent.fd, this.nameA.set(name), mode & 0o7777));
    if (o.sgid) {
      const fd = sys(openat(parent.fd, this.nameA.set(name), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
      chmod(procPath(fd), (mode & 0o7777) | S_ISGID);
      closeFd(fd);
    }
    if (hidden) {
      const fd = sys(openat(parent.fd, this.nameA.set(name), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
      const r = setxattr(procPath(fd), OPAQUE_XATTR, Buffer.from('y'), 1, 0);
      closeFd(fd);
      sys(r, 'opaque');
    }
    return this.finishCreate(parent, name, uid, gid);
  }

  mknod(parent: FsNode, name: string, mode: number, rdev: number, uid: number, gid: number): FsNode {
    const type = mode & S_IFMT;
    if (type === S_IFDIR || type === S_IFLNK) throw fsError(Errno.EINVAL);
    this.prepareCreate(parent, name);
    sys(mknodat(parent.fd, this.nameA.set(name), type === 0 ? mode | S_IFREG : mode, rdev));
    return this.finishCreate(parent, name, uid, gid);
  }

  symlink(parent: FsNode, name: string, target: Uint8Array, uid: number, gid: number): FsNode {
    this.prepareCreate(parent, name);
    sys(symlinkat(target, parent.fd, this.nameA.set(name)));
    return this.finishCreate(parent, name, uid, gid);
  }

  /** FUSE CREATE: a new regular file, opened; returns the node and a host fd for I/O. */
  create(parent: FsNode, name: string, mode: number, uid: number, gid: number): { node: FsNode; fd: number } {
    this.prepareCreate(parent, name);
    const fd = sys(openat(parent.fd, this.nameA.set(name), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode & 0o7777));
    try {
      const node = this.finishCreate(parent, name, uid, gid);
      return { node, fd };
    } catch (error) {
      closeFd(fd);
      throw error;
    }
  }

  /** O_TMPFILE in `parent`: an unnamed regular file, opened. */
  tmpfile(parent: FsNode, mode: number, uid: number, gid: number): { node: FsNode; fd: number } {
    if (!parent.isDir) throw fsError(Errno.ENOTDIR);
    this.writableMount(parent);
    this.copyUp(parent);
    const fd = sys(openat(parent.fd, '.', O_TMPFILE | O_RDWR | O_CLOEXEC, mode & 0o7777));
    const o = this.owner(parent, uid, gid);
    fchownat(fd, '', o.uid, o.gid, AT_EMPTY_PATH);
    const pathFd = sys(openat(AT_FDCWD, procPath(fd), O_PATH | O_CLOEXEC, 0));
    this.fdCount++;
    const st = this.st.ofFd(pathFd);
    const node = new FsNode(this.keyOf(parent.mount!, st), [pathFd], [parent.mount!.upper!], S_IFREG, parent.mount, null, parent, '');
    return { node: this.adopt(node), fd };
  }

  link(node: FsNode, parent: FsNode, name: string): FsNode {
    if (node.isDir) throw fsError(Errno.EPERM);
    if (node.mount !== parent.mount) throw fsError(Errno.EXDEV);
    this.prepareCreate(parent, name);
    this.copyUp(node);
    sys(linkat(AT_FDCWD, procPath(node.fd), parent.fd, this.nameA.set(name), AT_SYMLINK_FOLLOW));
    return this.lookup(parent, name);
  }

  // ---- removal and rename -----------------------------------------------------------------------

  private whiteout(parent: FsNode, name: string): void {
    sys(mknodat(parent.fd, this.nameA.set(name), S_IFCHR, 0), 'whiteout');
  }

  private removeCommon(parent: FsNode, name: string, dir: boolean): void {
    checkName(name);
    if (parent.trie?.children.has(name)) throw fsError(Errno.EBUSY);
    this.writableMount(parent);
    const node = this.acquire(parent, name);
    if (!node) throw fsError(Errno.ENOENT);
    try {
      if (dir && !node.isDir) throw fsError(Errno.ENOTDIR);
      if (!dir && node.isDir) throw fsError(Errno.EISDIR);
      if (dir) this.requireEmpty(node);
      this.copyUp(parent);
      const hidden = this.lowerHas(parent, name);
      if (node.isUpper) {
        if (dir) this.clearWhiteouts(node);
        sys(unlinkat(parent.fd, this.nameA.set(name), dir ? AT_REMOVEDIR : 0));
      }
      if (hidden) this.whiteout(parent, name);
    } finally {
      this.forget(node, 1);
    }
  }

  unlink(parent: FsNode, name: string): void {
    this.removeCommon(parent, name, false);
  }

  rmdir(parent: FsNode, name: string): void {
    this.removeCommon(parent, name, true);
  }

  rename(oldParent: FsNode, oldName: string, newParent: FsNode, newName: string, flags: number): void {
    checkName(oldName);
    checkName(newName);
    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0) throw fsError(Errno.EINVAL);
    const exchange = (flags & RENAME_EXCHANGE) !== 0;
    if (exchange && (flags & RENAME_NOREPLACE) !== 0) throw fsError(Errno.EINVAL);
    if (oldParent.trie?.children.has(oldName) || newParent.trie?.children.has(newName)) throw fsError(Errno.EBUSY);
    const mount = this.writableMount(oldParent);
    if (newParent.mount !== mount) throw fsError(Errno.EXDEV);
    const src = this.acquire(oldParent, oldName);
    if (!src) throw fsError(Errno.ENOENT);
    let dst: FsNode | null = null;
    try {
      dst = this.acquire(newParent, newName);
      if (dst === src) return; // same object (hard links or same name): POSIX says do nothing
      if (exchange && !dst) throw fsError(Errno.ENOENT);
      if (!exchange && dst && (flags & RENAME_NOREPLACE) !== 0) throw fsError(Errno.EEXIST);
      const srcMerged = src.isDir && !(src.isUpper && src.fds.length === 1);
      const dstMerged = dst !== null && dst.isDir && !(dst.isUpper && dst.fds.length === 1);
      // Like overlayfs without redirect_dir: directories with lower-layer content cannot move (mv copies).
      if (srcMerged || (exchange && dstMerged)) throw fsError(Errno.EXDEV);
      if (dst && !exchange) {
        if (src.isDir && !dst.isDir) throw fsError(Errno.ENOTDIR);
        if (!src.isDir && dst.isDir) throw fsError(Errno.EISDIR);
        if (dst.isDir) this.requireEmpty(dst);
      }
      this.copyUp(oldParent);
      this.copyUp(newParent);
      if (!src.isDir) this.copyUp(src);
      if (exchange && dst && !dst.isDir) this.copyUp(dst);
      const srcHidden = this.lowerHas(oldParent, oldName);
      const dstHidden = this.lowerHas(newParent, newName);
      if (exchange && ((src.isDir && dstHidden) || (dst!.isDir && srcHidden))) throw fsError(Errno.EXDEV);
      if (dst && dst.isDir && !exchange) this.clearWhiteouts(dst);
      let hostFlags = exchange ? RENAME_EXCHANGE : 0;
      if (!exchange && srcHidden) hostFlags |= RENAME_WHITEOUT;
      if (!exchange && (flags & RENAME_NOREPLACE) !== 0 && !this.upperWhiteout(newParent, newName)) hostFlags |= RENAME_NOREPLACE;
      if (dst && !exchange && !dst.isUpper) {
        // Target only in a lower layer: nothing to replace in the upper layer; the new entry shadows it.
      }
      sys(renameat2(oldParent.fd, this.nameA.set(oldName), newParent.fd, this.nameB.set(newName), hostFlags), 'rename');
      if (src.isDir && dstHidden) {
        sys(setxattr(procPath(src.fd), OPAQUE_XATTR, Buffer.from('y'), 1, 0), 'opaque');
      }
      this.setParent(src, newParent, newName);
      if (exchange && dst) this.setParent(dst, oldParent, oldName);
    } finally {
      this.forget(src, 1);
      if (dst) this.forget(dst, 1);
    }
  }

  // ---- attributes, xattrs -----------------------------------------------------------------------

  setattr(node: FsNode, attr: SetAttr): void {
    this.copyUp(node);
    if (attr.uid !== undefined || attr.gid !== undefined) {
      sys(fchownat(node.fd, '', attr.uid ?? 0xffffffff, attr.gid ?? 0xffffffff, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    }
    if (attr.mode !== undefined) {
      if (node.type === S_IFLNK) throw fsError(Errno.EOPNOTSUPP);
      sys(chmod(procPath(node.fd), attr.mode & 0o7777));
    }
    if (attr.size !== undefined) {
      if (node.type !== S_IFREG) throw new FsError(node.isDir ? Errno.EISDIR : Errno.EINVAL);
      if (attr.fd !== undefined) {
        sys(ftruncate(attr.fd, attr.size));
      } else {
        const fd = sys(openat(AT_FDCWD, procPath(node.fd), O_RDWR | O_CLOEXEC, 0));
        const r = ftruncate(fd, attr.size);
        const errno = lastErrno();
        closeFd(fd);
        if (r < 0) throw new FsError(errno);
      }
    }
    if (attr.atime !== undefined || attr.mtime !== undefined) {
      const t = this.timesBuf;
      const OMIT = 0x3ffffffen;
      t[0] = attr.atime ? BigInt(attr.atime.sec) : 0n;
      t[1] = attr.atime ? BigInt(attr.atime.nsec) : OMIT;
      t[2] = attr.mtime ? BigInt(attr.mtime.sec) : 0n;
      t[3] = attr.mtime ? BigInt(attr.mtime.nsec) : OMIT;
      sys(utimensat(node.fd, '', new Uint8Array(t.buffer), AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    }
  }

  /** Clears set-user-ID (and set-group-ID when group-executable) bits and file capabilities after a
   *  write, truncate or chown by the client (FUSE_HANDLE_KILLPRIV_V2); the server writes as root,
   *  so the host kernel would not do it. */
  killPrivileges(node: FsNode): void {
    if (node.type !== S_IFREG || !node.isUpper) return;
    const mode = this.st.ofFd(node.fd).mode;
    let kill = mode & S_ISUID;
    if ((mode & S_ISGID) !== 0 && (mode & 0o010) !== 0) kill |= S_ISGID;
    if (kill !== 0) sys(chmod(procPath(node.fd), mode & 0o7777 & ~kill));
    removexattr(procPath(node.fd), 'security.capability');
  }

  /** Opens the node's object for I/O. Only regular files and directories are ever reopened, so a
   *  symlink or device node in a layer can never be followed or opened by the server. */
  open(node: FsNode, flags: number): number {
    if (node.type !== S_IFREG) throw new FsError(node.isDir ? Errno.EISDIR : Errno.EINVAL);
    return sys(openat(AT_FDCWD, procPath(node.fd), flags | O_CLOEXEC, 0));
  }

  openDirFd(node: FsNode): number {
    if (!node.isDir || node.synthetic) throw fsError(Errno.ENOTDIR);
    return sys(openat(AT_FDCWD, procPath(node.fd), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
  }

  private xattrPath(node: FsNode): string {
    if (node.synthetic) throw fsError(Errno.ENODATA);
    if (node.type !== S_IFREG && node.type !== S_IFDIR) throw fsError(Errno.EOPNOTSUPP);
    return procPath(node.fd);
  }

  /** The value's size, or a negative errno (ENODATA is the common answer: no throw for it). */
  getxattr(node: FsNode, name: string, out: Uint8Array | null, size: number): number {
    if (name.startsWith(PRIVATE_XATTR_PREFIX)) return -Errno.ENODATA;
    if (node.noXattrs || node.synthetic || (node.type !== S_IFREG && node.type !== S_IFDIR)) return -Errno.ENODATA;
    // With an open I/O fd, f*xattr avoid walking /proc/self/fd (the kernel asks for
    // security.capability before the first write to every new file).
    const io = node.ioFd;
    const path = io >= 0 ? '' : procPath(node.fd);
    const n = io >= 0 ? fgetxattr(io, name, out, size) : getxattr(path, name, out, size);
    if (n >= 0) return n;
    const errno = lastErrno();
    // Most files have no xattrs at all, yet tools ask for several per file (ls -l: security.selinux).
    if (errno === Errno.ENODATA && (io >= 0 ? flistxattr(io, null, 0) : listxattr(path, null, 0)) === 0) node.noXattrs = true;
    return -errno;
  }

  listxattr(node: FsNode): Buffer {
    if (node.synthetic || (node.type !== S_IFREG && node.type !== S_IFDIR)) return Buffer.alloc(0);
    const names = this.listXattrNames(procPath(node.fd));
    return Buffer.from(names.map((n) => n + '\0').join(''), 'latin1');
  }

  setxattr(node: FsNode, name: string, value: Uint8Array, flags: number): void {
    if (name.startsWith(PRIVATE_XATTR_PREFIX)) throw fsError(Errno.EPERM);
    this.xattrPath(node);
    this.copyUp(node);
    node.noXattrs = false;
    sys(setxattr(procPath(node.fd), name, value, value.length, flags));
  }

  removexattr(node: FsNode, name: string): void {
    if (name.startsWith(PRIVATE_XATTR_PREFIX)) throw fsError(Errno.EPERM);
    this.xattrPath(node);
    this.copyUp(node);
    sys(removexattr(procPath(node.fd), name));
  }

  /** The fd statfs should describe: the writable layer if any, else the top layer. */
  statfsFd(node: FsNode): number {
    const mount = node.mount ?? this.mounts[0]!;
    return (mount.upper ?? mount.layers[0]!).fd;
  }

  /** Closes every fd the engine holds (after the client is gone). */
  close(): void {
    for (const node of this.nodes.values()) {
      this.dropIoFd(node);
      for (const fd of node.fds) this.closeFd(fd);
    }
    for (const m of this.mounts) for (const l of m.layers) closeFd(l.fd);
    this.byKey.clear();
  }
}

function direntType(d: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): number {
  if (d.isFile()) return S_IFREG;
  if (d.isDirectory()) return S_IFDIR;
  if (d.isSymbolicLink()) return S_IFLNK;
  if (d.isCharacterDevice()) return S_IFCHR;
  if (d.isBlockDevice()) return 0o060000;
  if (d.isFIFO()) return 0o010000;
  if (d.isSocket()) return 0o140000;
  return 0;
}

export { STAT_SIZE, fstatat };
