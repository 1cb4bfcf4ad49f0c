// The list of sub-commands. Add one import and one entry per command file.
import type { Command } from 'commander';

export const commands: Array<(program: Command) => void> = [
];
