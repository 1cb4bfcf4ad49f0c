// FUSE passthrough (Linux 6.9+, protocol 7.40): an open file whose reads, writes and mmap the
// kernel sends straight to a host file, with no request to this server. The server registers a
// host fd of the file with the transport (FUSE_DEV_IOC_BACKING_OPEN) and names the returned
// backing id in the OPEN or CREATE reply; the kernel opens its own file on that path per client
// open, with the client's open flags and the registering process's credentials.
//
// The kernel keeps one I/O mode per inode (fs/fuse/iomode.c): while any open of an inode is in
// passthrough mode, every other open must be passthrough to the same backing file, and while any
// is in cached mode (served by this server through the page cache) none may be passthrough. This
// table mirrors that per node. Its counts drop on RELEASE, which the kernel sends after its own
// file is gone, so they are never below the kernel's and a choice made from them is always legal.
// A node keeps its registration until it is freed: the same backing file is then named for every
// passthrough open of the inode, as the kernel requires, and a reopen costs no system call.
//
// Only files that can never be replaced by a copy-up get passthrough: a passthrough open of a
// read-only lower file would force a later write open of the same inode onto that lower file.
import { Errno } from './errors.js';
import type { FsNode } from './union.js';

/** What the transport offers: registration of host fds as backing files. */
export interface BackingFiles {
  /** Registers `fd`; returns a backing id (> 0) or a negative errno. */
  open(fd: number): number;
  /** Drops a backing id (open files that use it keep the kernel's reference). */
  close(id: number): void;
}

interface NodeMode {
  /** Backing id registered for the node (kept until the node is freed), or 0. */
  backingId: number;
  passthroughOpens: number;
  cachedOpens: number;
}

export class PassthroughTable {
  private readonly modes = new Map<FsNode, NodeMode>();
  /** Set once the kernel refused a registration for lack of privilege: later opens are served
   *  cached without trying again. */
  private disabled = false;
  private readonly logged = new Set<number>();
  /** Backing files registered now. */
  registered = 0;

  constructor(private readonly backing: BackingFiles, private readonly log: (line: string) => void) {}

  /** True when an open of `node` may be passthrough: a regular file that no copy-up can replace. */
  static eligible(node: FsNode): boolean {
    return node.mount !== null && (node.isUpper || node.mount.upper === null);
  }

  /**
   * The mode for a new open of `node`: a backing id (> 0) for a passthrough open, 0 for a cached
   * one. `hostFd` gives a host fd of the file to register, called only when the node has no
   * registration yet; the registration outlives the opens (the kernel holds its own reference to
   * the file), so opening the file again costs no system call here. Each call must be matched by
   * release() with its result.
   */
  open(node: FsNode, hostFd: () => number): number {
    let mode = this.modes.get(node);
    if (mode === undefined) {
      mode = { backingId: 0, passthroughOpens: 0, cachedOpens: 0 };
      this.modes.set(node, mode);
    }
    if (mode.cachedOpens === 0 && (mode.backingId > 0 || this.register(node, mode, hostFd))) {
      mode.passthroughOpens++;
      return mode.backingId;
    }
    mode.cachedOpens++;
    return 0;
  }

  release(node: FsNode, backingId: number): void {
    const mode = this.modes.get(node);
    if (mode === undefined) return;
    if (backingId > 0) mode.passthroughOpens--;
    else mode.cachedOpens--;
    if (mode.backingId === 0 && mode.cachedOpens === 0) this.modes.delete(node);
  }

  /** The node is gone: drop its registration. */
  forget(node: FsNode): void {
    const mode = this.modes.get(node);
    if (mode === undefined) return;
    if (mode.backingId > 0) {
      this.backing.close(mode.backingId);
      this.registered--;
    }
    this.modes.delete(node);
  }

  private register(node: FsNode, mode: NodeMode, hostFd: () => number): boolean {
    if (this.disabled || !PassthroughTable.eligible(node)) return false;
    const id = this.backing.open(hostFd());
    if (id > 0) {
      mode.backingId = id;
      this.registered++;
      return true;
    }
    this.refused(-id);
    return false;
  }

  private refused(errno: number): void {
    // EPERM (no CAP_SYS_ADMIN) holds for every file: stop trying. ELOOP (a backing file system
    // stacked too deep, e.g. overlayfs) and EOPNOTSUPP hold for one layer; EMFILE or ENOMEM for
    // this open only. Each is logged once.
    if (errno === Errno.EPERM) this.disabled = true;
    if (this.logged.has(errno)) return;
    this.logged.add(errno);
    this.log(`passthrough refused by the kernel (errno ${errno}); such files are served through this server`);
  }
}
