/**
 * Errors as values at the engine's edges.
 *
 * `BadInputError` is the user's (or client's) mistake: a missing model directory, a corrupt safetensors header, a
 * position outside the document. The CLI prints its message as one line and exits 2; the servers answer it as a
 * request error and keep running. Anything else escaping the engine is an internal failure (exit 1).
 */
export class BadInputError extends Error {
  override readonly name = 'BadInputError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Thrown (or returned) when an AbortSignal stops a long operation between steps. */
export class CancelledError extends Error {
  override readonly name = 'CancelledError';
  constructor(message = 'cancelled') {
    super(message);
  }
}

/** One line, no stack: what a user reads. */
export function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/** A write that failed for want of room or permission (a full or read-only cache disk), not a bug. */
export function isDiskFault(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EACCES' || code === 'EPERM';
}
