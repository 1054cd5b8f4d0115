// Path globs for policy rules, compiled once to anchored RegExps. Segment-based: `*` is
// exactly one non-empty segment, `**` any number of segments (including none), anything
// else is literal. Matched against the normalised service-relative path (starts with `/`,
// no query).

/** Most `**` allowed in one glob: each one multiplies the regex's backtracking by n. */
export const MAX_DOUBLE_STARS = 2;

/** Most characters in one glob. */
export const MAX_GLOB_LENGTH = 1024;

/**
 * Validates a glob; returns a reason if it is not one, else `undefined`.
 * Rules: starts with `/`; no empty segment except a trailing `/`; no `.` or `..`
 * segment; `*` only as a whole segment (`*` or `**`); no `?`, `#` or control characters;
 * at most {@link MAX_DOUBLE_STARS} `**`.
 */
export function globProblem(glob: string): string | undefined {
  if (glob.length === 0 || glob.length > MAX_GLOB_LENGTH)
    return 'glob must be 1 to 1024 characters';
  if (!glob.startsWith('/')) return 'glob must start with "/"';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f?#\\]/.test(glob))
    return 'glob has a space, control character, "?", "#" or "\\"';
  const segments = glob.slice(1).split('/');
  let doubles = 0;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as string;
    if (s === '' && !(i === segments.length - 1)) return 'glob has an empty segment ("//")';
    if (s === '.' || s === '..') return 'glob has a "." or ".." segment';
    if (s.includes('*') && s !== '*' && s !== '**')
      return '"*" must be a whole segment ("*" or "**")';
    if (s === '**') doubles++;
  }
  if (doubles > MAX_DOUBLE_STARS) return `glob has more than ${MAX_DOUBLE_STARS} "**"`;
  return undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/**
 * Compiles a glob to an anchored RegExp. Throws `TypeError` on an invalid glob (validate
 * with {@link globProblem} first).
 *
 * @example compileGlob('/repos/*\/*\/issues/**').test('/repos/a/b/issues') === true
 */
export function compileGlob(glob: string): RegExp {
  const problem = globProblem(glob);
  if (problem !== undefined) throw new TypeError(problem);
  const segments = glob.slice(1).split('/');
  // Consecutive `**` are equivalent to one; collapse them so the regex stays linear-ish.
  const collapsed = segments.filter((s, i) => !(s === '**' && segments[i - 1] === '**'));
  let src = '';
  for (const s of collapsed) {
    if (s === '**') src += '(?:/[^/]*)*';
    else if (s === '*') src += '/[^/]+';
    else src += `/${escapeRegExp(s)}`;
  }
  return new RegExp(`^${src}$`);
}
