// What `nexus up --workers N` on SQLite refuses at start (issue 13): per-process state that
// would split across workers. An oauth2_authorization_code service is no longer refused
// (the primary holds its refresh lock: worker-oauth-locks.ts), nor an approve rule; the
// other refusals stay.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
// Registers every mechanic's auth schema (oauth2_authorization_code among them).
import { registerMechanicSchemas } from '../mechanics/index.js';

registerMechanicSchemas();
import { refuseWorkersConfig, WorkersConfigError } from './workers.js';

const oauthService = {
  upstream: 'https://mail.example.test',
  auth: {
    type: 'oauth2_authorization_code',
    credential: 'web-client',
    authorize_url: 'https://idp.example.test/authorize',
    token_url: 'https://idp.example.test/token',
  },
};

function refusal(extra: Record<string, unknown>, count = 2): WorkersConfigError | undefined {
  const config = parseConfig({ version: 1, ...extra }, { baseDir: '/srv' });
  try {
    refuseWorkersConfig(config, count);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(WorkersConfigError);
    return err as WorkersConfigError;
  }
}

describe('refuseWorkersConfig', () => {
  it('runs an oauth2_authorization_code service on SQLite workers', () => {
    expect(refusal({ services: { mail: oauthService } })).toBeUndefined();
  });

  it('runs an approve rule next to an OAuth service (held approvals: worker-approvals.ts)', () => {
    expect(
      refusal({
        services: { mail: oauthService },
        policies: [{ id: 'hold', approve: { services: ['mail'] } }],
      }),
    ).toBeUndefined();
  });

  it('still refuses limits without redis, and nothing with one worker', () => {
    const limits = { limits: [{ id: 'per-agent', requests: { max: 10, window: '1m' } }] };
    expect(refusal(limits)?.code).toBe('workers_refused');
    expect(refusal(limits, 1)).toBeUndefined();
  });
});
