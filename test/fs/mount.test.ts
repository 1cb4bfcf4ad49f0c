// `novm fs mount` as a user runs it: bad input gives one clear line and a non-zero exit; a served
// mount survives ls/cp/fio; SIGTERM and SIGINT unmount cleanly without losing writes; a slow
// request does not stall the others; memory and node counts stay flat over a long run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanup, FS_CLI, fuseUnavailable, isMounted, type RunningMount, scratchDir, sh, startMount } from './mount-harness.js';

const skip = fuseUnavailable();

function runCli(args: string[], timeoutMs = 20_000, prefix: string[] = []): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(prefix[0] ?? process.execPath, [...prefix.slice(1), ...(prefix.length ? [process.execPath] : []), FS_CLI, 'fs', 'mount', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

describe('novm fs mount: bad input', { skip }, () => {
  let dir = '';
  before(() => {
    dir = scratchDir('badinput');
    mkdirSync(join(dir, 'lower/inner'), { recursive: true });
    mkdirSync(join(dir, 'upper'));
    mkdirSync(join(dir, 'mnt'));
    writeFileSync(join(dir, 'file'), 'x');
  });
  after(() => cleanup(dir));

  const cases: Array<[string, (d: string) => string[], RegExp]> = [
    ['missing layer', (d) => ['--read', `/=${d}/nope`, `${d}/mnt`], /read-only layer ".*nope" does not exist/],
    ['layer is a file', (d) => ['--write', `/=${d}/file`, `${d}/mnt`], /is not a directory/],
    ['writable inside read-only', (d) => ['--read', `/=${d}/lower`, '--write', `/=${d}/lower/inner`, `${d}/mnt`], /inside read-only layer/],
    ['overlapping writable layers', (d) => ['--write', `/a=${d}/upper`, '--write', `/b=${d}/upper`, `${d}/mnt`], /overlap/],
    ['missing mount point', (d) => ['--write', `/=${d}/upper`, `${d}/nomnt`], /mount point ".*nomnt" does not exist/],
    ['mount point is a file', (d) => ['--write', `/=${d}/upper`, `${d}/file`], /mount point .* is not a directory/],
    ['mount point inside a layer', (d) => ['--read', `/=${d}/lower`, '--write', `/x=${d}/upper`, `${d}/lower/inner`], /overlaps layer/],
    ['no layers', (d) => [`${d}/mnt`], /no layers given/],
    ['malformed flag', (d) => ['--read', 'novmpath', `${d}/mnt`], /expects VM=HOST/],
  ];
  for (const [name, args, pattern] of cases) {
    it(`${name}: one line, exit 2, nothing mounted`, async () => {
      const r = await runCli(args(dir));
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.ok(!isMounted(join(dir, 'mnt')));
    });
  }

  it('an existing mount point is refused', async () => {
    const m = await startMount(['--write', `/=${dir}/upper`], join(dir, 'mnt'));
    try {
      const r = await runCli(['--write', `/=${dir}/lower`, join(dir, 'mnt')]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /already a mount point/);
    } finally {
      assert.equal(await m.stop(), 0);
    }
  });

  it('no permission for /dev/fuse or to mount: one line, non-zero exit', async () => {
    // In a private mount namespace where /dev/fuse is a node nobody may open (mode 000), run by
    // root without the capabilities that bypass file permissions. (Root stays the owner of the
    // checkout, so this works wherever the checkout lives, even in a 0700 directory.)
    const fake = join(dir, 'fuse-no-access');
    writeFileSync(fake, '');
    chmodSync(fake, 0o000);
    const r = await runCli(['--write', `/=${dir}/upper`, join(dir, 'mnt')], 20_000, ['unshare', '-m', 'sh', '-c', `mount --bind ${fake} /dev/fuse && exec setpriv --bounding-set -dac_override,-dac_read_search "$@"`, 'sh']);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /cannot open \/dev\/fuse: permission denied/);
    // With /dev/fuse usable but no right to mount (no CAP_SYS_ADMIN, for the mount helper too):
    const r2 = await runCli(['--write', `/=${dir}/upper`, join(dir, 'mnt')], 20_000, ['setpriv', '--bounding-set', '-sys_admin']);
    assert.notEqual(r2.code, 0);
    assert.equal(r2.stderr.trim().split('\n').length, 1, r2.stderr);
    assert.match(r2.stderr, /mount of .* failed|permission denied/);
    assert.ok(!isMounted(join(dir, 'mnt')));
  });
});

describe('novm fs mount: serving', { skip, timeout: 180_000 }, () => {
  let dir = '';
  before(() => {
    dir = scratchDir('serve');
    mkdirSync(join(dir, 'lower'));
    mkdirSync(join(dir, 'upper'));
  });
  after(() => cleanup(dir));

  it('serves ls, cp -a and fio --verify, and SIGTERM unmounts with every write in the layer', async () => {
    await sh(`cp -a /usr/include/linux ${dir}/lower/`);
    const m = await startMount(['--read', `/=${dir}/lower`, '--write', `/=${dir}/upper`], join(dir, 'mnt'));
    let stopped = false;
    try {
      const ls = await sh(`ls -lR ${m.mountPoint} | wc -l && cp -a ${m.mountPoint}/linux ${m.mountPoint}/copy && diff -r ${dir}/lower/linux ${m.mountPoint}/copy && echo same`);
      assert.match(ls.out, /same/);
      const fio = await sh(`fio --name=v --directory=${m.mountPoint} --size=16m --bs=128k --rw=randwrite --numjobs=2 --verify=crc32c --verify_fatal=1 --verify_state_save=0`, 60_000);
      assert.equal(fio.code, 0, fio.out);
      // Data written without fsync right before the signal must reach the layer (writeback flush).
      await sh(`head -c 33554432 /dev/urandom | tee ${dir}/expected > ${m.mountPoint}/last-write`);
      assert.equal(await m.stop('SIGTERM'), 0);
      stopped = true;
      assert.ok(!isMounted(m.mountPoint));
      assert.ok(readFileSync(join(dir, 'upper', 'last-write')).equals(readFileSync(join(dir, 'expected'))));
    } finally {
      if (!stopped) await m.stop();
    }
  });

  it('SIGINT also unmounts cleanly', async () => {
    const m = await startMount(['--write', `/=${dir}/upper`], join(dir, 'mnt2'));
    await sh(`echo hi > ${m.mountPoint}/sigint`);
    assert.equal(await m.stop('SIGINT'), 0);
    assert.ok(!isMounted(m.mountPoint));
    assert.equal(readFileSync(join(dir, 'upper', 'sigint'), 'utf8'), 'hi\n');
  });

  it('a slow request (fsync of 256 MiB) does not stall the others', async () => {
    const m = await startMount(['--write', `/=${dir}/upper`], join(dir, 'mnt3'));
    try {
      await sh(`mkdir -p ${m.mountPoint}/small && echo x > ${m.mountPoint}/small/f`);
      // The big write lands in the page cache (writeback); the fsync then pushes it through the server.
      const slow = sh(`dd if=/dev/zero of=${m.mountPoint}/big bs=1M count=256 conv=fsync status=none; echo done`, 120_000);
      const t0 = Date.now();
      let quick = 0;
      let maxLatency = 0;
      let finished = false;
      void slow.then(() => (finished = true));
      while (!finished && Date.now() - t0 < 60_000) {
        const s = Date.now();
        const r = await sh(`stat -c %s ${m.mountPoint}/small/f >/dev/null && cat ${m.mountPoint}/small/f >/dev/null && ls ${m.mountPoint}/small > /dev/null`);
        assert.equal(r.code, 0);
        maxLatency = Math.max(maxLatency, Date.now() - s);
        quick++;
      }
      assert.match((await slow).out, /done/);
      const slowMs = Date.now() - t0;
      assert.ok(quick >= 3, `only ${quick} small operations completed during a ${slowMs} ms write+fsync`);
      assert.ok(maxLatency < Math.max(2000, slowMs / 2), `a small operation took ${maxLatency} ms while the fsync ran ${slowMs} ms`);
    } finally {
      assert.equal(await m.stop(), 0);
    }
  });

  it('the copy-up of a large lower file does not stall the others, and copies it whole', async () => {
    const lower = join(dir, 'lower-big');
    mkdirSync(lower);
    mkdirSync(join(dir, 'upper-big'));
    writeFileSync(join(lower, 'small'), 'small');
    // 256 MiB of incompressible data, out of the host's page cache: the copy-up reads it all.
    // The byte the test overwrites with X is set to something else first: a random one is X
    // once in 256 runs, and then no byte differs (seen in a rehearsal).
    await sh(`head -c 256M /dev/urandom > ${lower}/huge && printf a | dd of=${lower}/huge bs=1 seek=5 conv=notrunc status=none && sync && echo 3 > /proc/sys/vm/drop_caches`, 120_000);
    const m = await startMount(['--read', `/=${lower}`, '--write', `/=${dir}/upper-big`], join(dir, 'mnt5'));
    try {
      const t0 = Date.now();
      const write = sh(`printf X | dd of=${m.mountPoint}/huge bs=1 seek=5 conv=notrunc status=none && echo done`, 120_000);
      let finished = false;
      void write.then(() => (finished = true));
      let maxLatency = 0;
      let probes = 0;
      while (!finished && Date.now() - t0 < 60_000) {
        const s = Date.now();
        const r = await sh(`cat ${m.mountPoint}/small >/dev/null && ls ${m.mountPoint} >/dev/null`);
        assert.equal(r.code, 0, r.out);
        maxLatency = Math.max(maxLatency, Date.now() - s);
        probes++;
      }
      assert.match((await write).out, /done/);
      const writeMs = Date.now() - t0;
      // Small requests were answered while the copy ran, not after it. Each probe spawns two
      // processes (100-200 ms under load), so a copy-up this host finishes in well under a second
      // cannot tell a stall from spawn time: below 2 s, as for the fsync test above, no verdict.
      assert.ok(probes >= 1 && maxLatency < Math.max(2000, writeMs / 2), `${probes} small probes, the slowest took ${maxLatency} ms; the copy-up write took ${writeMs} ms`);
      const copied = await sh(`cmp -l ${lower}/huge ${dir}/upper-big/huge | wc -l; head -c 6 ${dir}/upper-big/huge | tail -c 1`);
      assert.equal(copied.out.trim().split('\n').join(' '), '1 X', 'exactly one byte differs from the lower file: the one written');
    } finally {
      assert.equal(await m.stop(), 0);
    }
  });

  it('node, fd and memory counts stay flat over a long run (create/stat/delete rounds)', async () => {
    const m = await startMount(['--write', `/=${dir}/upper`, '--cache-timeout', '1'], join(dir, 'mnt4'));
    try {
      await sh(`mkdir -p ${m.mountPoint}/churn`);
      const samples: Array<Record<string, number>> = [];
      for (let round = 0; round < 6; round++) {
        const r = await sh(`cd ${m.mountPoint}/churn && for i in $(seq 1 1500); do echo $i > f$i; done && ls -l > /dev/null && cat f* > /dev/null && rm -f f* && sync && echo 2 > /proc/sys/vm/drop_caches`, 120_000);
        assert.equal(r.code, 0, r.out);
        await new Promise((res) => setTimeout(res, 300));
        samples.push(await m.stats());
      }
      const first = samples[1]!;
      const last = samples[samples.length - 1]!;
      assert.ok(last['nodes']! <= first['nodes']! + 20, `nodes grew: ${JSON.stringify(samples.map((s) => s['nodes']))}`);
      assert.ok(last['fds']! <= first['fds']! + 20, `fds grew: ${JSON.stringify(samples.map((s) => s['fds']))}`);
      assert.ok(last['files']! === 0, 'open files leaked');
      assert.ok(last['rss']! - first['rss']! < 24 * 1024 * 1024, `rss grew: ${JSON.stringify(samples.map((s) => s['rss']))}`);
      assert.ok(last['requests']! > 6 * 1500 * 3, 'the run was long enough');
    } finally {
      assert.equal(await m.stop(), 0);
    }
  });
});

// Keep tsc quiet about helpers only some runs use.
void statSync;
void rmSync;
void ({} as RunningMount | undefined);
