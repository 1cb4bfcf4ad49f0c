// The list of sub-commands. Add one import and one entry per command file.
import type { Command } from 'commander';
import { register as fs } from './fs.js';
import { register as boot } from './boot.js';
import { register as host } from './host.js';
import { register as vhostUser } from './vhost-user.js';

export const commands: Array<(program: Command) => void> = [
  fs,
  boot,
  host,
  vhostUser,
];
