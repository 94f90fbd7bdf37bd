/** A problem the user can fix: printed as one line (plus an optional hint), never with a stack. */
export class UserError extends Error {
  /** @param exitCode 2 for usage errors (bad flags or values), 1 for everything else. */
  constructor(message: string, readonly hint?: string, readonly exitCode: 1 | 2 = 1) {
    super(message);
    this.name = 'UserError';
  }
}

/** A usage error (exit 2). */
export function usageError(message: string, hint?: string): UserError {
  return new UserError(message, hint, 2);
}
