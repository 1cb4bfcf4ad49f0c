// Errors raised while building ACPI tables: always a host-side configuration mistake.
export type AcpiBuildErrorKind = 'aml' | 'resource' | 'config' | 'layout';

export class AcpiBuildError extends Error {
  constructor(readonly kind: AcpiBuildErrorKind, message: string) {
    super(message);
    this.name = 'AcpiBuildError';
  }
}
