// The console's escape sequences, as a pure byte filter. After the escape key (Ctrl-A):
//   x        quit the VM
//   b        send a break to the guest (Linux: the next key is a SysRq command)
//   h or ?   print this help on the host terminal
//   Ctrl-A   send one literal Ctrl-A
// Any other key after Ctrl-A is dropped together with the Ctrl-A.
export type EscapeCommand = 'quit' | 'break' | 'help';

export const ESCAPE_HELP =
  '\r\n[novm console] Ctrl-A x: quit the VM | Ctrl-A b: send break (SysRq) | Ctrl-A h: help | Ctrl-A Ctrl-A: send Ctrl-A\r\n';

const CTRL_A = 0x01;

export class EscapeFilter {
  private pendingEscape = false;

  constructor(private readonly escapeKey = CTRL_A) {}

  /**
   * Splits `input` into bytes for the guest and commands for the host, in order: `emit` is
   * called with runs of guest bytes (views into `input`) and commands as they occur.
   */
  filter(input: Uint8Array, emit: { bytes(run: Uint8Array): void; command(command: EscapeCommand): void }): void {
    let runStart = 0;
    for (let i = 0; i < input.length; i++) {
      const byte = input[i]!;
      if (this.pendingEscape) {
        this.pendingEscape = false;
        runStart = i + 1;
        if (byte === this.escapeKey) emit.bytes(input.subarray(i, i + 1));
        else if (byte === 0x78 || byte === 0x58) emit.command('quit'); // x, X
        else if (byte === 0x62 || byte === 0x42) emit.command('break'); // b, B
        else if (byte === 0x68 || byte === 0x48 || byte === 0x3f) emit.command('help'); // h, H, ?
        continue;
      }
      if (byte === this.escapeKey) {
        if (i > runStart) emit.bytes(input.subarray(runStart, i));
        this.pendingEscape = true;
        runStart = i + 1;
      }
    }
    if (!this.pendingEscape && runStart < input.length) emit.bytes(input.subarray(runStart));
  }
}
