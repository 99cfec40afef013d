import { TriggersApiError } from '../../../client/src/errors.js';

/** An error as a person reads it: the API's message, and each field it names. */
export interface ErrorText {
  message: string;
  details: string[];
}

export function describeError(error: unknown): ErrorText {
  if (error instanceof TriggersApiError) {
    const details = error.details.map((detail) =>
      detail.field ? `${detail.field}: ${detail.message ?? 'invalid'}` : (detail.message ?? ''),
    );
    if (error.status === 401)
      return { message: `${error.message} Check that the whole key was pasted and that it was not revoked.`, details };
    if (error.status === 403) return { message: `${error.message} Ask for a key with that scope.`, details };
    if (error.status === 429 || error.status === 503) {
      const wait = error.retryAfterSeconds === null ? '' : ` Try again in ${error.retryAfterSeconds} s.`;
      return { message: `${error.message}${wait}`, details };
    }
    return { message: error.message, details: details.filter((detail) => detail !== '') };
  }
  if (error instanceof TypeError) return { message: 'The server could not be reached.', details: [] };
  return { message: error instanceof Error ? error.message : String(error), details: [] };
}
