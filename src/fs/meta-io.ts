// Where the FUSE handler's blocking metadata system calls may run. Creating an inode can wait a
// millisecond on the host file system's journal (measured on this host's ext4: ~0.5 ms per
// O_CREAT against ~4 us for an open of an existing file), so a transport that serves requests on
// one thread hands that part to another thread and keeps serving; the handler finishes the
// request (union state, reply) when `done` is called back on its own thread.
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
}
