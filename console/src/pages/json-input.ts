import { TriggersApiError } from '../../../client/src/errors.js';

/**
 * Helpers of the forms that take JSON in a textarea (a group's filter, an event type's schema):
 * the text is checked here before anything is sent, so a typo reads as "not JSON" next to its
 * field instead of as the API's generic 400.
 */

/** A form's own refusal, shown by ErrorNote like the API's 422 (message and the field it names). */
export class FormError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The JSON object in `text`, null for an empty text when `emptyIsNull`, or a FormError naming
 * `field`. Arrays and scalars are refused too: both uses need an object.
 */
export function parseJsonObject(text: string, field: string, emptyIsNull: boolean): Record<string, unknown> | null {
  if (text.trim() === '') {
    if (emptyIsNull) return null;
    throw new FormError(field, `${field}: required (a JSON object).`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new FormError(field, `${field}: not JSON (${error instanceof Error ? error.message : String(error)}).`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new FormError(field, `${field}: must be a JSON object.`);
  return value as Record<string, unknown>;
}

/**
 * Whether `error` names `field`: the API's details name it (`filter`, or a JSON pointer into it
 * such as `/schema/properties/a`), or the form refused it. For `aria-invalid` on that control.
 */
export function names(error: unknown, field: string): boolean {
  if (error instanceof FormError) return error.field === field;
  if (!(error instanceof TriggersApiError)) return false;
  return error.details.some(
    (detail) =>
      detail.field === field || detail.field?.startsWith(`${field}.`) || detail.field?.startsWith(`/${field}`),
  );
}

/** "a, b ,c" → ["a", "b", "c"]: the event types of a group, typed as one line. */
export function listOf(text: string): string[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
}

/** A whole number typed in a number field, or undefined when left empty (the API's default). */
export function numberOf(text: string): number | undefined {
  return text.trim() === '' ? undefined : Number(text);
}
