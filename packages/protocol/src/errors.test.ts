// The error table matches docs/dev/profile-decisions.md; problem details are RFC 9457 shaped.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  NexusError,
  isNexusError,
  problemDetails,
  safeDetail,
  type ErrorCode,
} from './errors.js';

const doc = readFileSync(
  new URL('../../../docs/dev/profile-decisions.md', import.meta.url),
  'utf8',
);
const table = [...doc.matchAll(/^\| ([a-z_]+) \| (\d{3}) \| (.+?) \|$/gm)].map((m) => ({
  code: m[1] as ErrorCode,
  status: Number(m[2]),
  description: m[3]!,
}));

describe('ERROR_CODES', () => {
  it('has exactly the codes of the profile table', () => {
    expect(table.length).toBeGreaterThan(30);
    expect(Object.keys(ERROR_CODES).sort()).toEqual(table.map((r) => r.code).sort());
  });
  it.each(table)('$code -> $status', ({ code, status, description }) => {
    expect(ERROR_CODES[code].status).toBe(status);
    expect(ERROR_CODES[code].description).toBe(description);
    expect(ERROR_CODES[code].title.length).toBeGreaterThan(0);
  });
});

describe('NexusError', () => {
  it('takes status and expose from the table', () => {
    const e = new NexusError('lease_expired');
    expect(e.code).toBe('lease_expired');
    expect(e.status).toBe(401);
    expect(e.expose).toBe(true);
    expect(e.message).toBe(ERROR_CODES.lease_expired.description);
    expect(new NexusError('internal_error').expose).toBe(false);
  });
  it('keeps the cause', () => {
    const cause = new Error('x');
    expect(new NexusError('internal_error', undefined, { cause }).cause).toBe(cause);
  });
  it('isNexusError recognises instances only', () => {
    expect(isNexusError(new NexusError('conflict'))).toBe(true);
    expect(isNexusError(new Error('conflict'))).toBe(false);
    expect(isNexusError({ name: 'NexusError', code: 'nope' })).toBe(false);
    expect(isNexusError(null)).toBe(false);
  });
});

describe('problemDetails', () => {
  it('renders RFC 9457 fields', () => {
    expect(problemDetails(new NexusError('policy_denied'), 'req-1')).toEqual({
      type: 'urn:nexus:problem:policy_denied',
      title: ERROR_CODES.policy_denied.title,
      status: 403,
      code: 'policy_denied',
      detail: ERROR_CODES.policy_denied.description,
      request_id: 'req-1',
    });
  });
  it('hides messages of 5xx and foreign errors', () => {
    const p = problemDetails(new Error('secret sk-123'), 'r');
    expect(p.code).toBe('internal_error');
    expect(JSON.stringify(p)).not.toContain('sk-123');
    const q = problemDetails(new NexusError('upstream_invalid', 'upstream said sk-456'), 'r');
    expect(JSON.stringify(q)).not.toContain('sk-456');
  });
  it('shows an explicit safe detail whatever the status, never the message (issue 10)', () => {
    const e = new NexusError('credential_unavailable', 'internal text sk-789', {
      detail: 'credential "github-token" is not set',
    });
    const p = problemDetails(e, 'r');
    expect(p.detail).toBe('credential "github-token" is not set');
    expect(JSON.stringify(p)).not.toContain('sk-789');
    expect(safeDetail(e)).toBe(p.detail);
    expect(safeDetail(new NexusError('upstream_timeout', 'secret sk-1'))).toBe(
      ERROR_CODES.upstream_timeout.description,
    );
    expect(safeDetail(new NexusError('policy_denied'))).toBe(ERROR_CODES.policy_denied.description);
  });
});

describe('docs/spec/nexus-v1.md Appendix D (issue 16)', () => {
  it('shows an example response for every code, with its status and challenge', () => {
    const spec = readFileSync(new URL('../../../docs/spec/nexus-v1.md', import.meta.url), 'utf8');
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      // Regenerate with scripts/gen-problem-examples.mjs when a code is added.
      const block = new RegExp(
        `\`${code}\`:\\n\\n\`\`\`\\nHTTP/1\\.1 ${info.status} [^\\n]*\\n[\\s\\S]*?Nexus-Error: ${code}\\n${info.status === 401 ? 'WWW-Authenticate: [^\\n]+\\n' : ''}\\n\\{[^\\n]*"code": "${code}"`,
      );
      expect([code, block.test(spec)]).toEqual([code, true]);
    }
  });
});
