// A stand-in guest for the TTY test: the host terminal is wired to a UART through
// TerminalConsole, and a "driver" polls the UART and echoes every byte upper-cased.
// Prints "CONSOLE-QUIT" and exits 0 on Ctrl-A x.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { TerminalConsole, Uart16550 } from '../../../src/platform/index.js';

// Where to write `stty -a` as seen after console.stop(), while this process still runs (Node
// itself resets the TTY when it exits, so only a live check shows stop() did it).
const sttyFile = process.argv[2];

let console: TerminalConsole;
const uart = new Uart16550({
  irq: { setLevel: () => {}, trigger: () => {} },
  output: (byte) => console.writeByte(byte),
  onInputSpace: () => console.inputSpaceAvailable(),
});
console = new TerminalConsole({
  onQuit: () => {
    console.stop();
    if (sttyFile) writeFileSync(sttyFile, execFileSync('stty', ['-a'], { stdio: ['inherit', 'pipe', 'inherit'] }));
    process.stdout.write('\r\nCONSOLE-QUIT\r\n');
    process.exit(0);
  },
});
uart.writeRegister(2, 0x01); // FIFOs on
for (const b of Buffer.from('ready> ')) uart.writeRegister(0, b);
console.start(uart);
setInterval(() => {
  while (uart.readRegister(5) & 0x01) {
    const byte = uart.readRegister(0);
    uart.writeRegister(0, byte >= 0x61 && byte <= 0x7a ? byte - 0x20 : byte);
  }
}, 5);
