// Listening for vhost-user front ends on a Unix socket path. Each accepted connection gets its
// own VhostUserBackend over the same device model (one front end at a time: a second
// connection waits until the first one is gone).
import { rmSync } from 'node:fs';
import { InputError } from '../common/errors.js';
import * as libc from '../native/libc.js';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, accept4, bind, listen, socket, unixAddress } from '../native/socket-calls.js';
import { VhostUserBackend, type BackendDevice } from './backend.js';
import { CLOSED_BY_SERVER, VhostUserConnection } from './connection.js';
import { FdPoller } from './fd-poller.js';

export interface ServeOptions {
  readonly socketPath: string;
  /** Serve front ends one after another until close() instead of returning after the first. */
  readonly keepListening?: boolean;
  readonly log?: (line: string) => void;
  /** A poller shared with the device (e.g. a tap); the caller stops it. Default: our own. */
  readonly poller?: FdPoller;
}

export class VhostUserServer {
  private readonly poller: FdPoller;
  private readonly ownPoller: boolean;
  private listenFd = -1;
  private current: VhostUserConnection | undefined;
  private stopped = false;
  private readonly log: (line: string) => void;
  private wake: (() => void) | undefined;
  /** Connections served so far. */
  served = 0;

  constructor(private readonly device: BackendDevice, private readonly options: ServeOptions) {
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    const fd = libc.check('socket', socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    try {
      rmSync(options.socketPath, { force: true });
      let address: Uint8Array;
      try {
        address = unixAddress(options.socketPath);
      } catch (error) {
        throw new InputError(`--socket ${options.socketPath}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (bind(fd, address, address.length) < 0 || listen(fd, 1) < 0) {
        throw new InputError(`cannot listen on ${options.socketPath}: ${libc.errnoName(libc.lastErrno())}`);
      }
    } catch (error) {
      libc.close(fd);
      throw error;
    }
    this.listenFd = fd;
    this.ownPoller = options.poller === undefined;
    this.poller = options.poller ?? new FdPoller(this.log);
  }

  /** Serves front ends; resolves when the first one leaves (or, keepListening, on close()). */
  async run(): Promise<void> {
    try {
      while (!this.stopped) {
        const fd = await this.accept();
        if (fd < 0) break;
        this.served++;
        const connection = new VhostUserConnection(fd, this.poller, (message) => backend.handle(message));
        const backend = new VhostUserBackend(this.device, connection, this.poller, this.log);
        this.current = connection;
        await connection.closedReason;
        this.current = undefined;
        if (!this.options.keepListening) break;
      }
    } finally {
      await this.shutdown();
    }
  }

  private accept(): Promise<number> {
    return new Promise((resolve) => {
      const attempt = (): void => {
        if (this.stopped) {
          resolve(-1);
          return;
        }
        const fd = accept4(this.listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          this.poller.unwatch(this.listenFd);
          this.wake = undefined;
          resolve(fd);
          return;
        }
        const errno = libc.lastErrno();
        if (errno !== libc.EAGAIN && errno !== libc.EINTR) {
          this.log(`vhost-user: accept failed: ${libc.errnoName(errno)}`);
          resolve(-1);
          return;
        }
        this.poller.rearm(this.listenFd);
      };
      this.wake = () => resolve(-1);
      this.poller.watch(this.listenFd, 'once', attempt);
      attempt();
    });
  }

  /** Stops listening and closes the current connection, if any. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.current?.close(CLOSED_BY_SERVER);
    this.wake?.();
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    if (this.listenFd >= 0) {
      this.poller.unwatch(this.listenFd);
      libc.close(this.listenFd);
      this.listenFd = -1;
      rmSync(this.options.socketPath, { force: true });
    }
    this.device.reset();
    if (this.ownPoller) await this.poller.stop();
  }
}
