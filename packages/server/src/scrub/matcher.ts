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
  /** Number of columns of `next`. */
  readonly width: number;
  /** `next[node * width + classOf[byte]]`: the complete transition function. */
  readonly next: Int32Array;
  /** Length of the longest pattern that ends at `node` (0: none). */
  readonly out: Int32Array;
}

/**
 * Compiles byte patterns into a dense Aho-Corasick automaton. Empty patterns are ignored;
 * duplicates are harmless. Memory: 4 bytes x nodes x (distinct pattern bytes + 1).
 *
 * @example
 * const m = compileMatcher([Buffer.from('ghp_exampleexample')]);
 */
export function compileMatcher(patterns: readonly Uint8Array[]): Matcher {
  const classOf = new Uint8Array(256);
  let width = 1;
  const distinct = new Set<string>();
  let maxLength = 0;
  let minLength = 0;
  for (const p of patterns) {
    if (p.length === 0) continue;
    distinct.add(Buffer.from(p).toString('latin1'));
    maxLength = Math.max(maxLength, p.length);
    minLength = minLength === 0 ? p.length : Math.min(minLength, p.length);
    for (const b of p) if (classOf[b] === 0) classOf[b] = width++;
  }
  // The trie, with sparse children while it is built.
  const children: Map<number, number>[] = [new Map()];
  const own: number[] = [0];
  for (const text of distinct) {
    let node = 0;
    for (let i = 0; i < text.length; i++) {
      const c = classOf[text.charCodeAt(i)]!;
      let child = children[node]!.get(c);
      if (child === undefined) {
        child = children.length;
        children.push(new Map());
        own.push(0);
        children[node]!.set(c, child);
      }
      node = child;
    }
    own[node] = text.length;
  }
  const n = children.length;
  const next = new Int32Array(n * width);
  const out = Int32Array.from(own);
  const fail = new Int32Array(n);
  // Breadth-first: a node's failure target is shallower, so its row is complete already.
  const queue: number[] = [];
  for (const [c, child] of children[0]!) {
    next[c] = child;
    queue.push(child);
  }
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!;
    const base = node * width;
    const failBase = fail[node]! * width;
    // The failure target's complete row, then this node's own children over it.
    next.copyWithin(base, failBase, failBase + width);
    for (const [c, child] of children[node]!) {
      fail[child] = next[failBase + c]!;
      // The longest pattern ending here covers every shorter one ending here.
      out[child] = Math.max(out[child]!, out[fail[child]!]!);
      next[base + c] = child;
      queue.push(child);
    }
  }
  return { size: distinct.size, maxLength, minLength, classOf, width, next, out };
}
