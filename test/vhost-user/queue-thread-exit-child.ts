// Not a test: a process that starts a thread-hosted fs device and calls process.exit() at once
// (queue-thread.test.ts checks it ends: a thread blocked in poll(2) must not keep it alive).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostedFsOptions } from '../../src/vhost-user/hosted-fs.js';
import { QueueThreadDevice } from '../../src/vhost-user/queue-thread.js';

const shared = mkdtempSync(join(tmpdir(), 'novm-qthread-exit-'));
const options: HostedFsOptions = { read: [], write: [`/=${shared}`], tag: 'exit', requestQueues: 1, packed: false, writeback: false };
await QueueThreadDevice.start(new URL('../../src/vhost-user/hosted-fs.js', import.meta.url), options);
process.stdout.write('started\n');
process.exit(0);
