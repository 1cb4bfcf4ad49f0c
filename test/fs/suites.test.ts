// Real file-system test suites against `novm fs mount`: fio with --verify (sequential and random,
// several jobs), fs_mark, postmark, dbench, bonnie++ and stress-ng's filesystem class. Run twice:
// on a writable layer alone, and on a read-only lower layer copied from a real tree (/usr/include)
// plus a writable layer, where copy-up and whiteouts are exercised and the lower tree is checked
// to be unmodified afterwards (a manifest of every entry's type, mode, owner, size, mtime and a
// hash of its content, taken before and after).
//
// stress-ng exclusions: none. Three stressors skip themselves because the kernel or FUSE lacks the
// feature, exactly as on bindfs (FUSE) or the host's ext4: binderfs (no binderfs in this kernel:
// ENODEV on ext4 too), fiemap (FS_IOC_FIEMAP is not forwarded by FUSE: bindfs skips it too) and
// verity (fs-verity is not enabled on ext4 here either). stress-ng's exit status 3 means "a
// stressor ran out of resources" (binderfs); 2 would mean a failure.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanup, fuseUnavailable, type RunningMount, scratchDir, sh, startMount, toolMissing } from './mount-harness.js';

const tools = ['fio', 'fs_mark', 'postmark', 'dbench', 'bonnie++', 'stress-ng'];
const skip = fuseUnavailable() || tools.map(toolMissing).find((r) => r !== false) || false;

/** Every entry of a tree with its metadata and content hash: equal manifests = unmodified tree. */
function manifest(root: string): string {
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      let content = '';
      if (st.isFile()) content = createHash('sha1').update(readFileSync(p)).digest('hex');
      else if (st.isSymbolicLink()) content = readlinkSync(p);
      lines.push(`${p.slice(root.length)} ${st.mode} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} ${st.ino} ${content}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return createHash('sha1').update(lines.join('\n')).digest('hex') + ` (${lines.length} entries)`;
}

async function expectOk(command: string, timeoutMs: number, cwd?: string): Promise<string> {
  const r = await sh(command, timeoutMs, cwd);
  assert.equal(r.code, 0, `${command}\n${r.out.slice(-3000)}`);
  return r.out;
}

function suites(label: string, sub: string, layers: (dir: string) => Promise<string[]>, check?: (dir: string) => void) {
  describe(`file-system suites on novm fs (${label})`, { skip, timeout: 240_000 }, () => {
    let dir = '';
    let mount: RunningMount | undefined;
    let mnt = '';
    before(async () => {
      dir = scratchDir('suites');
      const args = await layers(dir);
      mount = await startMount(args, join(dir, 'mnt'));
      mnt = mount.mountPoint + sub;
    });
    after(async () => {
      const code = await mount?.stop();
      if (mount) assert.equal(code, 0, `server exit: ${mount.stderr()}`);
      if (mount) assert.doesNotMatch(mount.stderr(), /unexpected=[1-9]|opcode \d+:/);
      check?.(dir);
      cleanup(dir);
    });

    it('fio --verify, sequential and random, several jobs', async () => {
      const common = `--directory=${mnt} --numjobs=3 --group_reporting --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0`;
      await expectOk(`fio --name=seq ${common} --size=24m --bs=1m --rw=write`, 60_000);
      await expectOk(`fio --name=rand ${common} --size=16m --bs=4k --rw=randwrite --verify_backlog=256`, 60_000);
      await expectOk(`fio --name=mixed ${common} --size=16m --bs=64k --rw=randrw --runtime=5 --time_based --verify=md5`, 60_000);
      await expectOk(`fio --name=direct --directory=${mnt} --size=8m --bs=4k --rw=randwrite --direct=1 --verify=crc32c --verify_fatal=1 --verify_state_save=0`, 60_000);
    });

    it('fs_mark', async () => {
      // A relative directory: fs_mark overflows a fixed-size path buffer with long absolute paths.
      const out = await expectOk(`cd ${mnt} && fs_mark -d fsmark -s 4096 -n 400 -t 2 -S 1 -L 2`, 90_000);
      assert.match(out, /Files\/sec/);
    });

    it('postmark', async () => {
      const out = await expectOk(`printf 'set location ${mnt}\\nset number 500\\nset transactions 2000\\nset subdirectories 5\\nrun\\nquit\\n' | postmark`, 90_000);
      assert.match(out, /transactions/);
    });

    it('dbench', async () => {
      const out = await expectOk(`dbench -D ${mnt} -t 8 2`, 60_000);
      assert.match(out, /Throughput .* MB\/sec/);
    });

    it('bonnie++', async () => {
      await expectOk(`bonnie++ -d ${mnt} -u root -s 64M -r 32 -n 2 -f -q`, 120_000);
    });

    it('stress-ng --class filesystem (all stressors at once)', async () => {
      const r = await sh(`stress-ng --class filesystem --all 1 --timeout 8s --temp-path ${mnt} --metrics-brief`, 150_000);
      const failures = r.out.split('\n').filter((l) => /stress-ng: fail:|\bfailed\b/.test(l) && !/binderfs/.test(l));
      assert.deepEqual(failures, [], r.out.slice(-4000));
      assert.ok(r.code === 0 || r.code === 3, `stress-ng exit ${r.code}\n${r.out.slice(-4000)}`);
    });
  });
}

let lowerManifest = '';
suites('writable layer', '', async (dir) => {
  await sh(`mkdir -p ${dir}/upper`);
  return ['--write', `/=${dir}/upper`];
});
// The suites run in lower/work, a read-only directory full of real headers, where fio finds its
// job files already present in the lower layer (random data, and sparse files for the random
// jobs): every fio write starts with a copy-up, and the tools' deletions leave whiteouts.
suites('read-only copy of /usr/include + writable layer', '/work', async (dir) => {
  const w = `${dir}/lower/work`;
  await expectOk(`mkdir -p ${dir}/upper ${w} && cp -a /usr/include ${dir}/lower/ && cp -a /usr/include/linux ${w}/ && ` +
    `for i in 0 1 2; do head -c 24M /dev/urandom > ${w}/seq.$i.0; truncate -s 16M ${w}/rand.$i.0; done`, 60_000);
  lowerManifest = manifest(`${dir}/lower`);
  return ['--read', `/=${dir}/lower`, '--write', `/=${dir}/upper`];
}, (dir) => {
  assert.equal(manifest(`${dir}/lower`), lowerManifest, 'the read-only layer was modified');
});

describe('copy-up and whiteouts under real tools', { skip: fuseUnavailable() }, () => {
  it('tar, cp -a, mv and rm -rf over a read-only tree leave it untouched and the upper layer mountable by overlayfs', async () => {
    const dir = scratchDir('tools');
    let mount: RunningMount | undefined;
    try {
      await expectOk(`mkdir -p ${dir}/upper ${dir}/lower ${dir}/work ${dir}/ovl && cp -a /usr/include/linux ${dir}/lower/`, 30_000);
      const before = manifest(`${dir}/lower`);
      mount = await startMount(['--read', `/=${dir}/lower`, '--write', `/=${dir}/upper`], join(dir, 'mnt'));
      const m = mount.mountPoint;
      await expectOk(`rm -rf ${m}/linux/netfilter && mv ${m}/linux/fs.h ${m}/linux/fs2.h && echo changed >> ${m}/linux/kvm.h && cp -a ${m}/linux/usb ${m}/usb-copy && mkdir ${m}/linux/netfilter && echo new > ${m}/linux/netfilter/only`, 60_000);
      const listing = await expectOk(`cd ${m} && find . | sort && tail -c 8 linux/kvm.h && tar --sort=name -cf - . | wc -c`, 60_000);
      assert.equal(await mount.stop(), 0);
      mount = undefined;
      assert.equal(manifest(`${dir}/lower`), before, 'lower layer modified');
      // The writable layer is in overlayfs format: the kernel's overlayfs shows the same tree.
      await expectOk(`mount -t overlay overlay -o lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work ${dir}/ovl`, 10_000);
      try {
        const viaOverlay = await expectOk(`cd ${dir}/ovl && find . | sort && tail -c 8 linux/kvm.h && tar --sort=name -cf - . | wc -c`, 60_000);
        assert.equal(viaOverlay, listing);
        assert.match(listing, /changed/);
        assert.doesNotMatch(listing, /netfilter\/xt_/);
      } finally {
        await sh(`umount ${dir}/ovl`);
      }
    } finally {
      await mount?.stop();
      cleanup(dir);
    }
  });
});
