import { HearthError } from '../../core/errors.ts';
import { jsonDepthExceeded, MAX_BODY_JSON_DEPTH } from '../../core/json-limits.ts';

/** True when `s` holds an unpaired UTF-16 surrogate (which no UTF-8 text can carry). */
export function hasLoneSurrogate(s: string): boolean {
  return !(s as string & { isWellFormed(): boolean }).isWellFormed();
}

/** A value that must not enter Hearth, with where it is (`body.name`, `querystring.limit`). */
export interface InputProblem {
  field: string;
  message: string;
}

/**
 * The first string (or object key) with a lone surrogate, or number that is not finite, in a
 * parsed value: walked with an explicit stack, so depth cannot overflow it. `root` names the
 * value in the answer (`body`, `querystring`, `params`).
 */
export function findBadInput(value: unknown, root: string): InputProblem | undefined {
  const stack: Array<[unknown, string]> = [[value, root]];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (hasLoneSurrogate(v)) return { field: path, message: 'contains an unpaired UTF-16 surrogate (not valid Unicode text)' };
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return { field: path, message: 'must be a finite number' };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (hasLoneSurrogate(k)) return { field: path, message: `has a key with an unpaired UTF-16 surrogate (not valid Unicode text)` };
        stack.push([x, `${path}.${k}`]);
      }
    }
  }
  return undefined;
}

/** Throws E_VALIDATION for the first bad value in `value` (see findBadInput). */
export function checkInput(value: unknown, root: string): void {
  const problem = findBadInput(value, root);
  if (problem) throw new HearthError('E_VALIDATION', `${problem.field} ${problem.message}`, { field: problem.field, errors: [problem] });
}

/**
 * Checks the text of a JSON body before it is parsed (nesting depth); throws E_VALIDATION.
 * Every JSON parser of the API calls this, the shared one and those that keep the raw bytes.
 */
export function checkJsonText(text: string): void {
  if (jsonDepthExceeded(text) !== undefined) {
    throw new HearthError('E_VALIDATION', `the JSON body nests objects and arrays deeper than ${MAX_BODY_JSON_DEPTH} levels`, { field: 'body' });
  }
}
