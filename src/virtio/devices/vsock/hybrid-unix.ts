// Firecracker-style "hybrid vsock" on the host: one Unix socket path P stands for the guest.
//   guest connects to host port N   -> novm connects to the Unix socket "P_N"
//   a host program connects to P and writes "CONNECT N\n"
//                                   -> novm opens guest port N, answers "OK <host port>\n",
//                                      then the connection is a plain byte stream
// Anything else on P (a bad line, a too-long line, a refused connection) closes the socket.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { InputError } from '../../../common/errors.js';
import type { VsockDevice, VsockHostSide } from './vsock-device.js';

/** "CONNECT 4294967295\n" is 19 bytes; anything longer than this is not our protocol. */
const MAX_COMMAND_BYTES = 64;

export class HybridUnixVsock implements VsockHostSide {
  private server: Server | undefined;
  /** Accepted sockets still waiting for their CONNECT line. */
  private readonly handshaking = new Set<Socket>();

  constructor(readonly udsPath: string) {
    if (udsPath.length === 0) throw new InputError('vsock: empty Unix socket path');
  }

  /** Guest-initiated: the socket for host port `port` is "<udsPath>_<port>". */
  connect(port: number): Socket {
    const socket = createConnection({ path: `${this.udsPath}_${port}`, allowHalfOpen: true });
    socket.pause();
    return socket;
  }

  /** Starts accepting host-initiated connections on udsPath (a stale socket file is replaced). */
  async listen(device: VsockDevice): Promise<void> {
    if (existsSync(this.udsPath)) {
      if (!lstatSync(this.udsPath).isSocket()) throw new InputError(`vsock: ${this.udsPath} exists and is not a socket`);
      unlinkSync(this.udsPath);
    }
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(device, socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.udsPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.handshaking) socket.destroy();
    this.handshaking.clear();
    if (server === undefined) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(device: VsockDevice, socket: Socket): void {
    let buffered = Buffer.alloc(0);
    this.handshaking.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.handshaking.delete(socket));
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(0x0a);
      if (newline < 0) {
        if (buffered.length > MAX_COMMAND_BYTES) socket.destroy();
        return;
      }
      socket.pause();
      socket.off('data', onData);
      this.handshaking.delete(socket);
      const line = buffered.subarray(0, newline).toString('latin1').replace(/\r$/, '');
      const rest = buffered.subarray(newline + 1);
      const match = /^CONNECT ([0-9]{1,10})$/.exec(line);
      const port = match === null ? NaN : Number(match[1]);
      if (!(port >= 0 && port <= 0xffff_ffff)) {
        socket.destroy();
        return;
      }
      const ok = device.connectFromHost(port, socket, rest, (hostPort) => {
        socket.write(`OK ${hostPort}\n`);
      });
      if (!ok) socket.destroy();
    };
    socket.on('data', onData);
  }
}
