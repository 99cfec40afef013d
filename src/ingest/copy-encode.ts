/**
 * COPY … FROM STDIN text format. Every value here was validated first (no NUL, well-formed
 * Unicode): a row the server rejects mid-COPY would fail the whole batch, and with the
 * `postgres` client's COPY bug (#1173) could leave the stream hanging.
 */

// Text format escapes: backslash, and the characters that delimit columns and rows.
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPES = /[\\\t\n\r]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export function copyText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPES, (ch) => ESCAPED[ch]!) : value;
}

/** Serialised JSON has no raw tab or newline (JSON.stringify escapes them); only backslashes. */
export function copyJson(json: string): string {
  return json.indexOf('\\') === -1 ? json : json.replaceAll('\\', '\\\\');
}

export const COPY_NULL = '\\N';
