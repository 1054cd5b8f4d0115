/**
 * The web console's sessions under `nexus up --workers N`: the primary holds the one
 * session table (in its memory, as a single node holds its own: nothing is written to the
 * store), and every worker asks it over IPC, so a login on one worker is valid on every
 * other, and a logout or expiry ends it on all.
 *
 * Asks (ipc-peer.ts, topic `console.session`): `{ op: 'create', bearer, user } | { op:
 * 'get', cookie } | { op: 'delete', cookie }`, answered `{ created?, session? }`. They carry
 * a session's cookie value and bearer between the processes of one node (a local pipe);
 * they are never logged.
 *
 * Limits: a person's token (OIDC login) is minted and known in the worker that made it
 * (admin/callers.ts); the admin API of another worker refuses it, which ends the session
 * (the console asks to log in again). Operator-token sessions are valid everywhere.
 */
import { NexusError } from '@nexus-proxy/protocol';
import {
  ConsoleSessions,
  type ConsoleSession,
  type SessionTable,
  type SessionUser,
} from '../console/sessions.js';
import { primaryPeer, type IpcPeer } from './ipc-peer.js';

type SessionOp =
  | { op: 'create'; bearer: string; user: SessionUser }
  | { op: 'get'; cookie: string | undefined }
  | { op: 'delete'; cookie: string | undefined };

interface SessionReply {
  created?: { id: string; session: ConsoleSession };
  session?: ConsoleSession;
}

const TOPIC = 'console.session';

/** The primary's table (made on the first request; default limits, as a single node's). */
let table: ConsoleSessions | undefined;

/** In the primary: answers a worker's session asks from the one table. */
export function answerSessions(peer: IpcPeer, clock: () => number = Date.now): void {
  peer.handle(TOPIC, (body): SessionReply => {
    table ??= new ConsoleSessions(clock);
    const op = body as SessionOp;
    if (op.op === 'create') return { created: table.create(op.bearer, op.user) };
    if (op.op === 'get') {
      const session = table.get(op.cookie);
      return session === undefined ? {} : { session };
    }
    table.delete(op.cookie);
    return {};
  });
}

/**
 * In a worker: the session table the primary holds. A primary that does not answer within
 * 5 s fails the call with `internal_error` (no session is assumed).
 */
export function workerSessionTable(): SessionTable {
  const peer = primaryPeer();
  const ask = (op: SessionOp) => peer.ask<SessionReply>(TOPIC, op);
  return {
    // The primary's table has the default limits (sessions.ts).
    maxAgeSeconds: new ConsoleSessions(Date.now).maxAgeSeconds,
    async create(bearer, user) {
      const reply = await ask({ op: 'create', bearer, user });
      if (reply.created === undefined) throw new NexusError('internal_error');
      return reply.created;
    },
    async get(cookie) {
      if (cookie === undefined || cookie.length === 0 || cookie.length > 128) return undefined;
      return (await ask({ op: 'get', cookie })).session;
    },
    async delete(cookie) {
      if (cookie === undefined) return;
      await ask({ op: 'delete', cookie });
    },
  };
}
