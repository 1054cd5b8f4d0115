// Strict JSON for MCP bodies: JSON.parse plus a refusal of duplicate object keys. Two
// parsers that disagree on `{"name":"read","name":"delete"}` (most keep the last, some the
// first) would let policy decide on one tool and the upstream run another.
import { NexusError } from '@nexus-proxy/protocol';

/** The parsed value, or `mcp_invalid` (flagged as a JSON parse error) for bad JSON. */
export function parseStrictJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw Object.assign(
      new NexusError('mcp_invalid', undefined, { detail: 'the body is not valid JSON' }),
      { parseError: true },
    );
  }
  if (hasDuplicateKey(text)) {
    throw new NexusError('mcp_invalid', undefined, {
      detail: 'the JSON body repeats a key within one object',
    });
  }
  return value;
}

/**
 * True when some object in `text` (valid JSON) names a key twice. A scan of the tokens:
 * a string right after `{` or after `,` inside an object is a key.
 */
export function hasDuplicateKey(text: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) return true;
        top.add(key);
      }
      expectKey = false;
      i = j;
    } else if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
      expectKey = false;
    } else if (c === '}' || c === ']') {
      stack.pop();
      expectKey = false;
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return false;
}
