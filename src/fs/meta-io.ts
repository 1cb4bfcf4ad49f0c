// Where the FUSE handler's blocking metadata system calls may run. Creating an inode can wait a
// millisecond on the host file system's journal (measured on this host's ext4: ~0.5 ms per
// O_CREAT against ~4 us for an open of an existing file), and the copy-up of a large file takes as
// long as its data, so a transport that serves requests on one thread hands those parts to
// another thread and keeps serving; the handler finishes the request (union state, reply) when
// `done` is called back on its own thread.
// Without a MetaIo the handler does these calls inline.

/** Who owns a new object and whether the creating thread must chown it to them. */
export interface NewOwner {
  readonly uid: number;
  readonly gid: number;
  readonly chown: boolean;
}

export interface MetaIo {
  /**
   * openat(dirFd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode), then fchownat if
   * owner.chown; `done` gets the new fd or -errno, later, on the caller's thread. `name` is
   * NUL-terminated and stays valid until `done`.
   */
  create(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: (result: number) => void): void;
  /** mkdirat(dirFd, name, mode), then fchownat if owner.chown; `done` gets 0 or -errno. */
  mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: (result: number) => void): void;
  /** The data of a large copy-up: `size` bytes of `src` into `dst` (DataCopier); `done` gets 0
   *  or -errno. The current request's bytes stay valid, and it is current again, in `done`. */
  copyData(src: number, dst: number, size: number, done: (result: number) => void): void;
  /** Keeps the current request's bytes valid for later: the returned function runs `resume` with
   *  that request current again (a request that must wait for a copy-up to finish). */
  park(): (resume: () => void) => void;
}
