// Reading a response's cost for `cost` budgets (issue 15): JSON bodies, the final usage
// event of a server-sent-events stream split anywhere, and what cannot be read.
import { describe, expect, it } from 'vitest';
import { createCostReader, MAX_COST, MAX_JSON_BYTES } from './cost.js';

const read = (paths: string[], type: string | undefined, ...chunks: string[]) => {
  const r = createCostReader({ json: paths }, type);
  for (const c of chunks) r.push(Buffer.from(c));
  return r.end();
};

describe('createCostReader', () => {
  it.each([
    [
      'a JSON body',
      ['usage.total_tokens'],
      'application/json',
      ['{"usage":{"total_tokens":42}}'],
      42,
    ],
    [
      'split anywhere',
      ['usage.total_tokens'],
      'application/json',
      ['{"usage":{"tot', 'al_tokens":7}}'],
      7,
    ],
    [
      'paths summed',
      ['usage.input_tokens', 'usage.output_tokens'],
      'application/json',
      ['{"usage":{"input_tokens":3,"output_tokens":4}}'],
      7,
    ],
    ['no such path', ['usage.total_tokens'], 'application/json', ['{"usage":{}}'], undefined],
    [
      'not a number',
      ['usage.total_tokens'],
      'application/json',
      ['{"usage":{"total_tokens":"9"}}'],
      undefined,
    ],
    [
      'a negative number',
      ['usage.total_tokens'],
      'application/json',
      ['{"usage":{"total_tokens":-9}}'],
      undefined,
    ],
    ['not JSON', ['usage.total_tokens'], 'text/plain', ['hello'], undefined],
    ['an inherited key', ['constructor.name'], 'application/json', ['{}'], undefined],
    [
      'the last SSE event with usage',
      ['usage.total_tokens'],
      'text/event-stream; charset=utf-8',
      [
        'data: {"usage":{"total_tokens":1}}\n\n',
        'data: {"usage":null}\n\ndata: {"usage":{"total_',
        'tokens":50}}\r\n\r\ndata: [DONE]\n\n',
      ],
      50,
    ],
    [
      'an SSE stream without usage',
      ['usage.total_tokens'],
      'text/event-stream',
      ['data: {"x":1}\n\n'],
      undefined,
    ],
    [
      'an SSE event not ended by a blank line',
      ['usage.total_tokens'],
      'text/event-stream',
      ['event: done\ndata: {"usage":{"total_tokens":5}}'],
      5,
    ],
  ])('%s', (_what, paths, type, chunks, expected) => {
    expect(read(paths, type, ...chunks)).toBe(expected);
  });

  it('review: a huge cost, or costs summing to Infinity, count as MAX_COST; negative and NaN-like values not at all', () => {
    expect(read(['a'], 'application/json', '{"a":1e300}')).toBe(MAX_COST);
    expect(read(['a', 'b'], 'application/json', '{"a":1.7e308,"b":1.7e308}')).toBe(MAX_COST);
    expect(read(['a', 'b'], 'application/json', '{"a":-5,"b":"NaN"}')).toBeUndefined();
    expect(read(['a', 'b'], 'application/json', '{"a":-5,"b":3}')).toBe(3);
  });

  it('gives up on a JSON body over the bound', () => {
    const big = `{"pad":"${'x'.repeat(MAX_JSON_BYTES)}","usage":{"total_tokens":1}}`;
    expect(read(['usage.total_tokens'], 'application/json', big)).toBeUndefined();
  });
});
