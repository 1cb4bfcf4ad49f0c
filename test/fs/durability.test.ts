// Kill the server with SIGKILL in the middle of a write-heavy run: every byte the client fsync'ed
// must be in the writable layer afterwards (the server replies to FSYNC only after fsync(2) on the
// host file returned, and nothing is buffered in the server itself).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cleanup, forceUnmount, fuseUnavailable, scratchDir, sh, startMount } from './mount-harness.js';

const WRITER = `
const fs = require('node:fs');
const [file, fileB] = process.argv.slice(1);
const fd = fs.openSync(file, 'w');
const fdB = fs.openSync(fileB, 'w');
let offset = 0, n = 0;
const block = Buffer.alloc(65536);
for (;;) {
  for (let i = 0; i < block.length; i += 8) block.writeUInt32LE(n, i), block.writeUInt32LE(i, i + 4);
  try {
    fs.writeSync(fd, block, 0, block.length, offset);
    fs.writeSync(fdB, block, 0, block.length, offset);
    offset += block.length;
    n++;
    if (n % 8 === 0) { fs.fsyncSync(fd); fs.fdatasyncSync(fdB); process.stdout.write('synced ' + offset + '\\n'); }
  } catch (e) { process.stdout.write('error ' + e.code + '\\n'); process.exit(0); }
}
`;

function expectedBlock(n: number): Buffer {
  const block = Buffer.alloc(65536);
  for (let i = 0; i < block.length; i += 8) {
    block.writeUInt32LE(n, i);
    block.writeUInt32LE(i, i + 4);
  }
  return block;
}

describe('durability', { skip: fuseUnavailable(), timeout: 120_000 }, () => {
  it('SIGKILL during a write-heavy run keeps every fsynced byte in the writable layer', async () => {
    const dir = scratchDir('sigkill');
    try {
      mkdirSync(join(dir, 'upper'));
      const m = await startMount(['--write', `/=${dir}/upper`], join(dir, 'mnt'));
      // Background load: fio writing elsewhere on the same mount.
      const load = sh(`fio --name=load --directory=${m.mountPoint} --size=64m --bs=256k --rw=randwrite --numjobs=2 --runtime=10 --time_based`, 60_000);
      const writer = spawn(process.execPath, ['-e', WRITER, join(m.mountPoint, 'log'), join(m.mountPoint, 'logB')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      writer.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const writerDone = new Promise((r) => writer.on('close', r));
      // Let it run until a good amount is synced, then kill the server outright.
      const t0 = Date.now();
      while (!/synced (\d{8,})/.test(out) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      m.child.kill('SIGKILL');
      await m.stop();
      await writerDone;
      await load;
      forceUnmount(m.mountPoint);
      const synced = [...out.matchAll(/synced (\d+)/g)].map((x) => Number(x[1]));
      const last = synced[synced.length - 1] ?? 0;
      assert.ok(last >= 10 * 1024 * 1024, `only ${last} bytes synced before the kill: ${out.slice(-300)}`);
      for (const name of ['log', 'logB']) {
        const data = readFileSync(join(dir, 'upper', name));
        assert.ok(data.length >= last, `${name}: ${data.length} bytes in the layer, ${last} fsynced`);
        for (let n = 0; n * 65536 < last; n++) {
          assert.ok(data.subarray(n * 65536, (n + 1) * 65536).equals(expectedBlock(n)), `${name}: block ${n} differs`);
        }
      }
    } finally {
      cleanup(dir);
    }
  });
});
