/**
 * `pattern` and `patternProperties` regexes of a registered schema run in the HTTP process on
 * every event of the type, on V8's backtracking engine. One whose matching can take exponential
 * time (`(a+)+$` on "aaaa…!") would stall the process for every org, so such patterns are refused
 * when the type is registered (API.md §3b), by a static check of their shape:
 *
 * - no quantified group that contains a quantifier (star height above one: `(a+)+`, `(a?){30}`,
 *   `(\w+\s?)*`, `(.*a){20}`), the shape of almost every known exponential regex;
 * - no alternation inside a group repeated more than once (`(a|a)*`, `(a|ab)+`): overlapping
 *   alternatives backtrack exponentially without nested quantifiers;
 * - no backreferences (`\1`, `\k<name>`): matching them is NP-hard in general;
 * - at most MAX_PATTERN_LENGTH characters.
 *
 * What remains is at worst polynomial in the subject's length (an unanchored `[a-z]+@` is
 * quadratic on a long run of letters), so patterns are also matched only against strings of at
 * most MAX_PATTERN_SUBJECT characters (bounded-regexp.ts). Measured in test/event-types-hostile.test.ts.
 * V8's linear-time engine (`--enable-experimental-regexp-engine`) refuses the `u` flag that JSON
 * Schema patterns need, and RE2 needs a native build (re2-wasm has a fixed 16 MiB heap that its
 * regexes never give back): docs/EVENT-TYPES.md.
 */

export const MAX_PATTERN_LENGTH = 512;

interface Group {
  /** A quantifier occurs somewhere inside. */
  quantified: boolean;
  /** A `|` at this group's own level. */
  alternation: boolean;
}

/** Why `source` is refused, or null when it is acceptable. Assumes it compiles with the `u` flag. */
export function patternProblem(source: string): string | null {
  if (source.length > MAX_PATTERN_LENGTH) return `must be at most ${MAX_PATTERN_LENGTH} characters`;
  const stack: Group[] = [{ quantified: false, alternation: false }];
  // What the previous atom was: a closed group (its record), another atom, or nothing to quantify.
  let last: Group | 'atom' | null = null;
  for (let i = 0; i < source.length; i++) {
    const ch = source[i]!;
    if (ch === '\\') {
      const next = source[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') return 'must not use backreferences (they can take exponential time)';
      // \p{…}, \u{…}, \x.. and \c. are one atom: skip their braces so they are not read as a quantifier.
      if ((next === 'p' || next === 'P' || next === 'u') && source[i + 2] === '{') i = source.indexOf('}', i + 2);
      else i++;
      last = 'atom';
    } else if (ch === '[') {
      i = endOfClass(source, i);
      last = 'atom';
    } else if (ch === '(') {
      // (?:, (?=, (?!, (?<=, (?<!, (?<name>: the group's own syntax is not an atom.
      if (source[i + 1] === '?') {
        i +=
          source[i + 2] === '<' && source[i + 3] !== '=' && source[i + 3] !== '!'
            ? source.indexOf('>', i) - i
            : source[i + 2] === '<'
              ? 3
              : 2;
      }
      stack.push({ quantified: false, alternation: false });
      last = null;
    } else if (ch === ')') {
      const group = stack.pop()!;
      if (stack.length === 0) return null; // unbalanced: the RegExp compile reports it
      if (group.quantified) stack[stack.length - 1]!.quantified = true;
      last = group;
    } else if (ch === '|') {
      stack[stack.length - 1]!.alternation = true;
      last = null;
    } else if (ch === '*' || ch === '+' || ch === '?' || (ch === '{' && /^\{\d+(,\d*)?\}/.test(source.slice(i)))) {
      let maxOne = ch === '?';
      if (ch === '{') {
        const close = source.indexOf('}', i);
        const [, low, comma, high] = /^\{(\d+)(,)?(\d*)\}/.exec(source.slice(i, close + 1))!;
        maxOne = comma === undefined ? Number(low) <= 1 : high !== '' && Number(high) <= 1;
        i = close;
      }
      if (source[i + 1] === '?') i++; // lazy
      if (last !== null && last !== 'atom' && !maxOne) {
        if (last.quantified)
          return 'must not repeat a group that itself contains a quantifier (nested quantifiers backtrack exponentially)';
        if (last.alternation)
          return 'must not repeat a group that contains alternatives (overlapping alternatives backtrack exponentially)';
      }
      stack[stack.length - 1]!.quantified = true;
      last = null;
    } else {
      last = 'atom';
    }
  }
  return null;
}

/** The index of the `]` that closes the class opened at `start` (escapes and nested `[` of the v flag skipped). */
function endOfClass(source: string, start: number): number {
  for (let i = start + 1; i < source.length; i++) {
    if (source[i] === '\\') i++;
    else if (source[i] === ']') return i;
  }
  return source.length;
}
