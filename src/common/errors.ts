// Errors that reach a user. An InputError is the user's mistake (a missing file, a bad flag):
// the CLI prints its message as one line and exits non-zero, never a stack trace.
export class InputError extends Error {
  readonly kind = 'input' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InputError';
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
