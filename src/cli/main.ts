#!/usr/bin/env node
// The novm command. Each sub-command lives in src/cli/commands/ and registers itself here.
import { Command, CommanderError } from 'commander';
import { InputError, describeError } from '../common/errors.js';
import { commands } from './commands/index.js';

const program = new Command('novm')
  .description('a legacy-free hypervisor: VMs made of host directory trees')
  .showHelpAfterError()
  .exitOverride();

for (const register of commands) register(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  if (error instanceof InputError) {
    process.stderr.write(`novm: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`novm: ${describeError(error)}\n`);
  if (process.env['NOVM_DEBUG']) console.error(error);
  process.exit(1);
}
