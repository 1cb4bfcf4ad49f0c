// The `novm fs` command alone, for tests and benchmarks: the same register() as the real CLI, so a
// transient breakage in another command's module cannot hide file-system results.
import { Command, CommanderError } from 'commander';
import { InputError, describeError } from '../../src/common/errors.js';
import { register } from '../../src/cli/commands/fs.js';

const program = new Command('novm').exitOverride();
register(program);
try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  process.stderr.write(`novm: ${describeError(error)}\n`);
  process.exit(error instanceof InputError ? 2 : 1);
}
