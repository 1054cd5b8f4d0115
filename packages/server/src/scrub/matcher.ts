// Multi-pattern streaming redaction over bytes (Aho-Corasick).
//
// Why our own code and not a library: this is the one place that stands between a real
// credential and the agent. It is ~150 lines, has no dependencies, works on raw bytes
// (not JS strings, so no decoding can hide a match), and its carry-over rule across
// chunk boundaries is part of the security argument below; a reviewer can read all of it.
//
// Security invariants:
// - MUST NOT emit a byte that could be the start of a pattern occurrence completed by a
//   later chunk. The automaton state after each byte is the longest suffix of the input
//   that is a prefix of some pattern (its depth d); any future match starts at or after
//   `pos - d`, so bytes before that are final. We hold back exactly those d bytes (at
//   most longest pattern - 1), which also keeps server-sent events flowing.
// - Every occurrence is redacted, including overlapping and nested ones: overlapping
//   matches are merged into one region replaced by one `replacement`.

/** A compiled, immutable pattern set; build once per credential set, reuse per response. */
export interface Matcher {
  /** Number of distinct non-empty patterns. */
  readonly size: number;
  /** Length of the longest pattern in bytes (0 when empty). */
  readonly maxLength: number;
  /** @internal */
  readonly goto: ReadonlyArray<ReadonlyMap<number, number>>;
  /** @internal */
  readonly fail: Int32Array;
  /** @internal depth of each node (length of the prefix it stands for). */
  readonly depth: Int32Array;
  /** @internal length of the longest pattern that is a suffix of the node's prefix (0: none). */
  readonly out: Int32Array;
  /** @internal row of `dense` holding the node's complete transitions, or -1. */
  readonly denseRow: Int32Array;
  /** @internal complete transitions (failure links resolved), 256 per row. */
  readonly dense: Int32Array;
}

/**
 * Nodes at most this deep get a dense, complete transition row: nearly every byte of a
 * response is stepped from a shallow node, in one array read instead of a map lookup
 * and a failure-link walk. The set of such nodes is closed under failure links (a node's
 * failure target is shallower), so each row is built from rows already built, and the
 * memory stays ~1 KiB per shallow node (at most 1 + 4 x patterns rows).
 */
const DENSE_DEPTH = 4;

/** A streaming redactor, see {@link createRedactor}. */
export interface Redactor {
  /** Feeds a chunk; returns the bytes that are now safe to emit (possibly empty). */
  push(chunk: Uint8Array): Buffer;
  /** Ends the stream; returns the held-back tail, redacted. */
  end(): Buffer;
  /** Number of redacted regions emitted so far. */
  readonly count: number;
}

/**
 * Compiles byte patterns into an Aho-Corasick automaton. Empty patterns are ignored;
 * duplicates are harmless.
 */
export function compileMatcher(patterns: readonly Uint8Array[]): Matcher {
  const goto: Map<number, number>[] = [new Map()];
  const depthList: number[] = [0];
  const own: number[] = [0];
  let maxLength = 0;
  const distinct = new Set<string>();
  for (const p of patterns) {
    if (p.length === 0) continue;
    distinct.add(Buffer.from(p).toString('latin1'));
    maxLength = Math.max(maxLength, p.length);
    let node = 0;
    for (const b of p) {
      let next = goto[node]!.get(b);
      if (next === undefined) {
        next = goto.length;
        goto.push(new Map());
        depthList.push(depthList[node]! + 1);
        own.push(0);
        goto[node]!.set(b, next);
      }
      node = next;
    }
    own[node] = p.length;
  }
  const n = goto.length;
  const fail = new Int32Array(n);
  const depth = Int32Array.from(depthList);
  const out = Int32Array.from(own);
  // Breadth-first: a node's failure link points to a shallower node, already complete.
  const queue: number[] = [];
  for (const child of goto[0]!.values()) queue.push(child);
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!;
    for (const [b, child] of goto[node]!) {
      let f = fail[node]!;
      while (f !== 0 && !goto[f]!.has(b)) f = fail[f]!;
      const target = goto[f]!.get(b);
      fail[child] = target !== undefined && target !== child ? target : 0;
      // The longest pattern ending here covers every shorter one ending here.
      out[child] = Math.max(out[child]!, out[fail[child]!]!);
      queue.push(child);
    }
  }
  // Dense rows in breadth-first order (root first), so a failure target's row exists.
  const denseRow = new Int32Array(n).fill(-1);
  const shallow = [0, ...queue.filter((node) => depth[node]! <= DENSE_DEPTH)];
  const dense = new Int32Array(shallow.length * 256);
  shallow.forEach((node, row) => {
    denseRow[node] = row;
    const base = row * 256;
    const failBase = node === 0 ? -1 : denseRow[fail[node]!]! * 256;
    for (let b = 0; b < 256; b++) {
      const next = goto[node]!.get(b);
      dense[base + b] = next !== undefined ? next : failBase < 0 ? 0 : dense[failBase + b]!;
    }
  });
  return { size: distinct.size, maxLength, goto, fail, depth, out, denseRow, dense };
}

function step(m: Matcher, state: number, b: number): number {
  let s = state;
  for (;;) {
    const row = m.denseRow[s]!;
    if (row >= 0) return m.dense[row * 256 + b]!;
    const next = m.goto[s]!.get(b);
    if (next !== undefined) return next;
    s = m.fail[s]!;
  }
}

/**
 * Scans a string whose chars are all ASCII (so its latin1 and UTF-8 bytes are the same
 * bytes) for any pattern, without allocating: `'clean'` when it has none, `'match'` when
 * it has one, `'non-ascii'` when a char is not ASCII (the caller then takes the byte
 * path). The fast path of header redaction, where almost every value is clean ASCII.
 */
export function scanAscii(m: Matcher, text: string): 'clean' | 'match' | 'non-ascii' {
  let s = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return 'non-ascii';
    s = step(m, s, c);
    if (m.out[s]! > 0) return 'match';
  }
  return 'clean';
}

interface Region {
  start: number;
  end: number;
  /** The replacement for this region has been emitted already. */
  emitted: boolean;
}

/**
 * A streaming redactor: every occurrence of any pattern is replaced by `replacement`,
 * across chunk boundaries. Holds back at most (longest pattern - 1) bytes, and only
 * bytes that could begin a pattern.
 *
 * @example
 * const r = createRedactor(secretsFor([token]));
 * res.write(r.push(chunk)); ... res.end(r.end());
 */
export function createRedactor(
  patterns: readonly Uint8Array[] | Matcher,
  replacement: string | Uint8Array = '[REDACTED]',
): Redactor {
  const m = isMatcher(patterns) ? patterns : compileMatcher(patterns);
  const repl =
    typeof replacement === 'string' ? Buffer.from(replacement, 'utf8') : Buffer.from(replacement);
  let state = 0;
  let pos = 0; // absolute count of bytes consumed
  let held: Buffer = Buffer.alloc(0); // bytes [heldStart, pos)
  let heldStart = 0;
  const regions: Region[] = []; // sorted, disjoint; only regions[0] may start before heldStart
  let count = 0;
  let ended = false;

  const addMatch = (start: number, end: number): void => {
    let merged: Region = { start, end, emitted: false };
    for (let last = regions.at(-1); last !== undefined && last.end > start; last = regions.at(-1)) {
      regions.pop();
      merged = {
        start: Math.min(last.start, merged.start),
        end: Math.max(last.end, merged.end),
        emitted: last.emitted || merged.emitted,
      };
    }
    regions.push(merged);
  };

  const flush = (limit: number): Buffer => {
    const parts: Buffer[] = [];
    let cur = heldStart;
    while (regions.length > 0 && regions[0]!.start < limit) {
      const r = regions[0]!;
      if (cur < r.start) {
        parts.push(held.subarray(cur - heldStart, r.start - heldStart));
        cur = r.start;
      }
      if (!r.emitted) {
        parts.push(repl);
        r.emitted = true;
        count++;
      }
      cur = Math.max(cur, Math.min(r.end, limit));
      if (r.end <= limit) regions.shift();
      else break;
    }
    if (cur < limit) parts.push(held.subarray(cur - heldStart, limit - heldStart));
    held = Buffer.from(held.subarray(limit - heldStart));
    heldStart = limit;
    return parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
  };

  return {
    push(chunk: Uint8Array): Buffer {
      if (ended) throw new Error('redactor: push after end');
      if (chunk.length === 0) return Buffer.alloc(0);
      held = held.length === 0 ? Buffer.from(chunk) : Buffer.concat([held, chunk]);
      if (m.maxLength === 0) {
        pos += chunk.length;
        return flush(pos);
      }
      // Locals, not the closure's variables, in the per-byte loop.
      const { dense, denseRow, out } = m;
      let st = state;
      const start = pos;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i]!;
        const row = denseRow[st]!;
        // The dense row is the common case (see DENSE_DEPTH); step() is the same transition.
        st = row >= 0 ? dense[(row << 8) | b]! : step(m, st, b);
        const len = out[st]!;
        if (len > 0) addMatch(start + i + 1 - len, start + i + 1);
      }
      state = st;
      pos = start + chunk.length;
      // A node of depth maxLength is a complete longest pattern: nothing longer can
      // extend it, so at most maxLength - 1 bytes are ever held back.
      return flush(pos - Math.min(m.depth[state]!, m.maxLength - 1));
    },
    end(): Buffer {
      if (ended) return Buffer.alloc(0);
      ended = true;
      return flush(pos);
    },
    get count(): number {
      return count;
    },
  };
}

/** Redacts a complete buffer in one call; returns the output and the number of regions. */
export function redactAll(
  patterns: readonly Uint8Array[] | Matcher,
  input: Uint8Array,
  replacement?: string | Uint8Array,
): { output: Buffer; count: number } {
  const r = createRedactor(patterns, replacement);
  const output = Buffer.concat([r.push(input), r.end()]);
  return { output, count: r.count };
}

function isMatcher(x: readonly Uint8Array[] | Matcher): x is Matcher {
  return !Array.isArray(x) && typeof (x as Matcher).maxLength === 'number';
}
