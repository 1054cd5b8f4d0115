/**
 * Reads what a response cost from its body, for `cost` budgets (limits/limiter.ts): a
 * service's `cost.json` names dotted paths to numbers (an LLM API's token usage, e.g.
 * `usage.total_tokens`), summed. A JSON body is read whole at its end; a server-sent-events
 * stream (`text/event-stream`) is read event by event and the LAST event whose `data:` holds
 * one of the paths counts (the final usage event OpenAI and others send at the end).
 *
 * Bounded: at most {@link MAX_JSON_BYTES} of a JSON body and {@link MAX_EVENT_BYTES} of one
 * event are kept; past that the cost is unreadable. An unreadable cost (not JSON, no such
 * path, too large) counts as 0: documented in docs/operations.md; a cost above
 * {@link MAX_COST} counts as MAX_COST. The pipeline pushes the
 * body as relayed to the agent: decoded and scrubbed.
 * MUST: the reader only keeps numbers; nothing read here is logged or audited.
 */
import { z } from 'zod';

/** The most of a JSON response body kept to read its cost. */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;
/** The most of one server-sent event kept. */
export const MAX_EVENT_BYTES = 1024 * 1024;

/** The most one response may cost: larger costs count as this (an exact integer). */
export const MAX_COST = Number.MAX_SAFE_INTEGER;

/** A service's `cost:` as parsed. */
export interface CostSource {
  /** Dotted paths to numbers in the JSON response (or an SSE event's data), summed. */
  readonly json: readonly string[];
}

/** The `cost:` schema of a service. */
export const costSourceSchema = z.strictObject({
  json: z
    .array(
      z
        .string()
        .regex(
          /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,7}$/,
          'must be a dotted path, e.g. usage.total_tokens',
        ),
    )
    .min(1)
    .max(8),
});

/** Reads one response's cost as its bytes go by. */
export interface CostReader {
  push(chunk: Buffer): void;
  /** The cost, or undefined when it could not be read. */
  end(): number | undefined;
}

function costOf(doc: unknown, paths: readonly string[]): number | undefined {
  let sum: number | undefined;
  for (const path of paths) {
    let v: unknown = doc;
    for (const key of path.split('.')) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        v = undefined;
        break;
      }
      v = Object.hasOwn(v, key) ? (v as Record<string, unknown>)[key] : undefined;
    }
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) sum = (sum ?? 0) + v;
  }
  // MUST: a huge cost (1e300, or a sum that overflows to Infinity) counts as the most a
  // counter holds exactly, never as a number a Redis counter refuses (INCRBY takes a
  // 64-bit integer: the refused add was dropped, and the cost counted as 0).
  return sum === undefined ? undefined : Math.min(sum, MAX_COST);
}

function parse(text: string, paths: readonly string[]): number | undefined {
  try {
    return costOf(JSON.parse(text), paths);
  } catch {
    return undefined;
  }
}

/** A reader for a response of `contentType` (the upstream's `Content-Type`). */
export function createCostReader(source: CostSource, contentType: string | undefined): CostReader {
  const sse = (contentType ?? '').toLowerCase().startsWith('text/event-stream');
  if (!sse) {
    const chunks: Buffer[] = [];
    let size = 0;
    return {
      push(chunk) {
        size += chunk.length;
        if (size <= MAX_JSON_BYTES) chunks.push(chunk);
      },
      end: () =>
        size > MAX_JSON_BYTES
          ? undefined
          : parse(Buffer.concat(chunks).toString('utf8'), source.json),
    };
  }
  // SSE: lines; an event's `data:` lines are joined with "\n"; a blank line ends the event.
  let partial = '';
  let data: string[] = [];
  let dataSize = 0;
  let last: number | undefined;
  const line = (l: string) => {
    if (l === '') {
      if (data.length > 0 && dataSize <= MAX_EVENT_BYTES) {
        const c = parse(data.join('\n'), source.json);
        if (c !== undefined) last = c;
      }
      data = [];
      dataSize = 0;
    } else if (l.startsWith('data:')) {
      const d = l.slice(l.startsWith('data: ') ? 6 : 5);
      dataSize += d.length;
      if (dataSize <= MAX_EVENT_BYTES) data.push(d);
    }
  };
  const decoder = new TextDecoder();
  return {
    push(chunk) {
      partial += decoder.decode(chunk, { stream: true });
      const lines = partial.split(/\r\n|\r|\n/);
      partial = lines.pop() ?? '';
      // A line that never ends is dropped past the bound (and its event with it).
      if (partial.length > MAX_EVENT_BYTES) {
        partial = '';
        dataSize = MAX_EVENT_BYTES + 1;
      }
      for (const l of lines) line(l);
    },
    end() {
      partial += decoder.decode();
      if (partial !== '') line(partial);
      line('');
      return last;
    },
  };
}
