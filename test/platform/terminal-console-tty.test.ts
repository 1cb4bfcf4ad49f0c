// The serial console in a real terminal (tmux): typed keys reach the "guest" raw (no line
// buffering, no local echo), Ctrl-A x quits, and the terminal is back in cooked mode after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const helper = fileURLToPath(new URL('./helpers/console-echo.js', import.meta.url));
const tmux = (...args: string[]): string => {
  const r = spawnSync('tmux', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

async function waitFor(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('serial console in a real TTY: raw keys, Ctrl-A x, terminal restored', { timeout: 40_000 }, async (t) => {
  if (spawnSync('tmux', ['-V']).status !== 0) return t.skip('tmux is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'novm-console-'));
  const session = `novm-console-${process.pid}`;
  const sttyFile = join(dir, 'stty.txt');
  try {
    tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '20', `${process.execPath} ${helper} ${sttyFile}; sleep 30`);
    const pane = (): string => tmux('capture-pane', '-p', '-t', session);
    await waitFor(() => pane().includes('ready>'), 'the console prompt');
    tmux('send-keys', '-t', session, '-l', 'hello world');
    await waitFor(() => pane().includes('ready> HELLO WORLD'), 'the echoed upper-case text');
    assert.ok(!pane().includes('hello world'), 'no local echo: the terminal is raw');
    tmux('send-keys', '-t', session, 'C-a', 'a'); // Ctrl-A a: dropped
    tmux('send-keys', '-t', session, 'C-a', 'x');
    await waitFor(() => pane().includes('CONSOLE-QUIT'), 'quit on Ctrl-A x');
    await waitFor(() => existsSync(sttyFile) && readFileSync(sttyFile, 'utf8').includes('icanon'), 'stty output');
    const stty = readFileSync(sttyFile, 'utf8');
    assert.match(stty, /(^|\s)icanon(\s|$)/, 'canonical mode restored by stop() while the process runs');
    assert.match(stty, /(^|\s)echo(\s|$)/, 'echo restored');
    assert.ok(!pane().includes('HELLO WORLDA'), 'the key after Ctrl-A did not reach the guest');
  } finally {
    spawnSync('tmux', ['kill-session', '-t', session]);
    rmSync(dir, { recursive: true, force: true });
  }
});
