/**
 * Reads the upstream's answer to one MCP request on its way to the agent (before the
 * redactor): the JSON-RPC response with the request's id, in an `application/json` body or
 * among the events of a `text/event-stream` body. It removes from a list result
 * (`tools/list`, `resources/list`, `resources/templates/list`, `prompts/list`) every entry
 * the agent's policy does not allow, and notes the outcome (result, tool error, JSON-RPC
 * error) for the audit. Other messages and events pass unchanged.
 *
 * MUST: a list result that cannot be read (not JSON, too large, an unknown body type, an
 * entry without its name) is never relayed unfiltered: the relay fails (fail closed).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { NexusError, type JsonRpcId } from '@nexus-proxy/protocol';
import type { McpKind, McpTarget } from './message.js';

/** What the response showed, for the outcome record. */
export interface McpInspection {
  /** `result`, `tool_error` (a tools/call result with `isError`), `error` (JSON-RPC error). */
  outcome?: 'result' | 'tool_error' | 'error';
  /** The JSON-RPC error code, with `error`. */
  rpc_error?: number;
  /** List entries removed by policy. */
  filtered: number;
}

/** Which field of which list result holds entries of which kind, named by which field. */
const LISTS: Readonly<Record<string, { field: string; key: string; kind: McpKind; call: string }>> =
  {
    'tools/list': { field: 'tools', key: 'name', kind: 'tool', call: 'tools/call' },
    'prompts/list': { field: 'prompts', key: 'name', kind: 'prompt', call: 'prompts/get' },
    'resources/list': { field: 'resources', key: 'uri', kind: 'resource', call: 'resources/read' },
    'resources/templates/list': {
      field: 'resourceTemplates',
      key: 'uriTemplate',
      kind: 'resource',
      call: 'resources/read',
    },
  };

/** True when the method's result is a list Nexus filters. */
export function isFilteredList(method: string | undefined): boolean {
  return method !== undefined && Object.hasOwn(LISTS, method);
}

const unreadable = (what: string) =>
  new NexusError('upstream_invalid', undefined, {
    detail: `the MCP server's ${what} cannot be read to filter it by policy`,
  });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface McpResponseOptions {
  readonly id: JsonRpcId;
  readonly method: string;
  /** The upstream's Content-Type. */
  readonly contentType: string | undefined;
  /** Policy for one would-be call (a list entry as the call that would use it). */
  readonly allowed: (target: McpTarget) => boolean;
  /** Most bytes of one JSON body or one SSE event held to read it. */
  readonly maxBytes: number;
}

/**
 * A transform for the upstream body and what it saw. For a list method the body must be
 * JSON or SSE; anything else throws `upstream_invalid` at once (before any header is sent).
 */
export function createMcpResponseFilter(o: McpResponseOptions): {
  stream: Transform;
  inspection: McpInspection;
} {
  const inspection: McpInspection = { filtered: 0 };
  const list = LISTS[o.method];
  const type = (o.contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const sse = type === 'text/event-stream';
  const json = type === 'application/json' || type.endsWith('+json');
  if (list !== undefined && !sse && !json) throw unreadable('list result (neither JSON nor SSE)');

  /** Applies policy to the response with our id; returns the new object or undefined if unchanged. */
  const handle = (msg: unknown): unknown => {
    if (!isObject(msg) || msg.id !== o.id || Object.hasOwn(msg, 'method')) return undefined;
    if (isObject(msg.error)) {
      inspection.outcome = 'error';
      if (typeof msg.error.code === 'number') inspection.rpc_error = msg.error.code;
      return undefined;
    }
    if (!isObject(msg.result)) return undefined;
    inspection.outcome = msg.result.isError === true ? 'tool_error' : 'result';
    if (list === undefined) return undefined;
    const entries = msg.result[list.field];
    if (entries === undefined) return undefined;
    if (!Array.isArray(entries)) throw unreadable('list result');
    const kept = entries.filter((e: unknown) => {
      const name = isObject(e) ? e[list.key] : undefined;
      const ok =
        typeof name === 'string' &&
        o.allowed({ method: list.call, kind: list.kind, name, protocol: false });
      if (!ok) inspection.filtered++;
      return ok;
    });
    if (kept.length === entries.length) return undefined;
    return { ...msg, result: { ...msg.result, [list.field]: kept } };
  };

  if (!sse && !json) {
    // Not a body a JSON-RPC response travels in (a 202, an error page): relayed as is.
    return {
      stream: new Transform({ transform: (c: Buffer, _e, cb) => cb(null, c) }),
      inspection,
    };
  }

  if (json) {
    const chunks: Buffer[] = [];
    let size = 0;
    let passthrough = false;
    const stream = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        if (passthrough) return cb(null, chunk);
        size += chunk.length;
        chunks.push(chunk);
        if (size > o.maxBytes) {
          if (list !== undefined) return cb(unreadable('list result (too large)'));
          // Too large to inspect: relayed as is, its outcome unknown.
          passthrough = true;
          const all = Buffer.concat(chunks);
          chunks.length = 0;
          return cb(null, all);
        }
        cb();
      },
      flush(cb: TransformCallback) {
        if (passthrough) return cb();
        const raw = Buffer.concat(chunks);
        let msg: unknown;
        try {
          msg = JSON.parse(raw.toString('utf8'));
        } catch {
          if (list !== undefined) return cb(unreadable('list result (not JSON)'));
          return cb(null, raw);
        }
        try {
          const changed = handle(msg);
          cb(null, changed === undefined ? raw : Buffer.from(JSON.stringify(changed)));
        } catch (err) {
          cb(err as Error);
        }
      },
    });
    return { stream, inspection };
  }

  // SSE: events are separated by a blank line; `data:` lines of one event join with "\n".
  let carry = '';
  let event: string[] = [];
  let eventBytes = 0;
  const decoder = new TextDecoder('utf-8');
  const emitEvent = (push: (s: string) => void): void => {
    const lines = event;
    event = [];
    eventBytes = 0;
    const data = lines
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    let changed: unknown;
    if (data !== '') {
      let msg: unknown;
      try {
        msg = JSON.parse(data);
      } catch {
        msg = undefined;
      }
      changed = handle(msg);
    }
    if (changed === undefined) {
      push(lines.join('\n') + '\n\n');
    } else {
      const kept = lines.filter((l) => !l.startsWith('data:'));
      push([...kept, `data: ${JSON.stringify(changed)}`].join('\n') + '\n\n');
    }
  };
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      carry += decoder.decode(chunk, { stream: true });
      let out = '';
      try {
        for (;;) {
          const m = /\r\n|\r|\n/.exec(carry);
          // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
          if (m === null || (m[0] === '\r' && m.index === carry.length - 1)) break;
          const line = carry.slice(0, m.index);
          carry = carry.slice(m.index + m[0].length);
          if (line === '') {
            if (event.length > 0) emitEvent((s) => (out += s));
            else out += '\n';
          } else {
            event.push(line);
            eventBytes += line.length;
            if (eventBytes > o.maxBytes) throw unreadable('event stream (an event is too large)');
          }
        }
        if (carry.length > o.maxBytes) throw unreadable('event stream (a line is too large)');
      } catch (err) {
        return cb(err as Error);
      }
      cb(null, out === '' ? undefined : Buffer.from(out));
    },
    flush(cb: TransformCallback) {
      carry += decoder.decode();
      let out = '';
      try {
        if (carry !== '') event.push(carry);
        carry = '';
        if (event.length > 0) emitEvent((s) => (out += s));
      } catch (err) {
        return cb(err as Error);
      }
      cb(null, out === '' ? undefined : Buffer.from(out));
    },
  });
  return { stream, inspection };
}
