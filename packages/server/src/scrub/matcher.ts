// The pattern automaton of the redactor: Aho-Corasick over the *logical* bytes of every
// secret (the secret itself; the redactor's views decode escapes, base64 and hex before
// they reach it, see `redactor.ts`).
//
// Why our own code and not a library: this is the one place that stands between a real
// credential and the agent, and its timing is part of the security argument. Every
// transition is one read of a dense table, whatever the state: a partial match costs
// exactly what a miss costs (a map lookup or a failure-link walk for deep states, as a
// classic Aho-Corasick does, would let an agent time how deep its bytes went into a
// secret). The table is kept small by mapping bytes to classes: only bytes that occur in
// some pattern get their own column.
//
// MUST: `next` is complete (failure links resolved at compile time) for every node and
// every class, so a step is a constant amount of work.

/** A compiled, immutable pattern set; build once per secret set, reuse per response. */
export interface Matcher {
  /** Number of distinct non-empty patterns. */
  readonly size: number;
  /** Length of the longest pattern in bytes (0 when empty). */
  readonly maxLength: number;
  /** Length of the shortest pattern in bytes (0 when empty). */
  readonly minLength: number;
  /** Byte -> column of `next`; column 0 is every byte that occurs in no pattern. */
  readonly classOf: Uint8Array;
  /**
   * `classOf` for bytes read as they are on the wire: CR and LF go to column 0, which
   * leads every state back to the root. A pattern may hold a line break that an escape
   * wrote (`\n`, `%0A`), but no match spans a raw one (see `redactor.ts`).
   */
  readonly rawClassOf: Uint8Array;
  /** Number of columns of `next`. */
  readonly width: number;
  /** `next[node * width + classOf[byte]]`: the complete transition function. */
  readonly next: Int32Array;
  /** Length of the longest pattern that ends at `node` (0: none). */
  readonly out: Int32Array;
  /**
   * `next` and `out` in one read, for the redactor's loops: a state is kept as `node *
   * width`, and `step[state + classOf[byte]]` is the next state, bitwise negated (`~`, so
   * negative) when a pattern ends there (its length: `out[~value / width]`). Same
   * transitions as `next`: one read per byte whatever the state, one multiplication and
   * one read fewer.
   */
  readonly step: Int32Array;
}

/**
 * Compiles byte patterns into a dense Aho-Corasick automaton. Empty patterns are ignored;
 * duplicates are harmless. Memory: 4 bytes x nodes x (distinct pattern bytes + 1); time
 * linear in that.
 *
 * @example
 * const m = compileMatcher([Buffer.from('ghp_exampleexample')]);
 */
export function compileMatcher(patterns: readonly Uint8Array[]): Matcher {
  const classOf = new Uint8Array(256);
  let width = 1;
  const distinct = new Map<string, Uint8Array>();
  let maxLength = 0;
  let minLength = 0;
  let total = 0;
  for (const p of patterns) {
    if (p.length === 0) continue;
    const key = Buffer.from(p).toString('latin1');
    if (distinct.has(key)) continue;
    distinct.set(key, p);
    total += p.length;
    maxLength = Math.max(maxLength, p.length);
    minLength = minLength === 0 ? p.length : Math.min(minLength, p.length);
    for (const b of p) if (classOf[b] === 0) classOf[b] = width++;
  }
  // The trie, in the table itself: before a node's row is completed (breadth-first below),
  // its non-zero entries are its children (the root is nobody's child, so 0 means none).
  const capacity = total + 1;
  let next = new Int32Array(capacity * width);
  let out = new Int32Array(capacity);
  let n = 1;
  for (const p of distinct.values()) {
    let node = 0;
    for (const b of p) {
      const at = node * width + classOf[b]!;
      let child = next[at]!;
      if (child === 0) {
        child = n++;
        next[at] = child;
      }
      node = child;
    }
    out[node] = p.length;
  }
  next = next.slice(0, n * width);
  out = out.slice(0, n);
  const fail = new Int32Array(n);
  const queue = new Int32Array(n);
  let tail = 0;
  for (let c = 0; c < width; c++) {
    const child = next[c]!;
    if (child !== 0) queue[tail++] = child; // depth 1: fails to the root
  }
  // Breadth-first: a node's failure target is shallower, so its row is complete already.
  for (let head = 0; head < tail; head++) {
    const node = queue[head]!;
    const base = node * width;
    const failBase = fail[node]! * width;
    for (let c = 0; c < width; c++) {
      const child = next[base + c]!;
      if (child === 0) {
        next[base + c] = next[failBase + c]!;
      } else {
        const f = next[failBase + c]!;
        fail[child] = f;
        // The longest pattern ending here covers every shorter one ending here.
        if (out[f]! > out[child]!) out[child] = out[f]!;
        queue[tail++] = child;
      }
    }
  }
  const step = new Int32Array(n * width);
  for (let i = 0; i < step.length; i++) {
    const target = next[i]!;
    step[i] = out[target]! !== 0 ? ~(target * width) : target * width;
  }
  const rawClassOf = Uint8Array.from(classOf);
  rawClassOf[0x0a] = 0;
  rawClassOf[0x0d] = 0;
  return { size: distinct.size, maxLength, minLength, classOf, rawClassOf, width, next, out, step };
}
