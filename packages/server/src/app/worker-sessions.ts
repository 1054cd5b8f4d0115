/**
 * The web console's sessions under `nexus up --workers N`: the primary holds the one
 * session table (in its memory, as a single node holds its own: nothing is written to the
 * store), and every worker asks it over IPC, so a login on one worker is valid on every
 * other, and a logout or expiry ends it on all.
 *
 * Protocol: worker -> primary `{ nexusSession: { id, op: 'create', bearer, user } |
 * { id, op: 'get', cookie } | { id, op: 'delete', cookie } }`; primary -> worker
 * `{ nexusSessionReply: { id, created?, session? } }`. The messages carry a session's cookie
 * value and bearer between the processes of one node (a local pipe); they are never logged.
 *
 * Limits: a person's token (OIDC login) is minted and known in the worker that made it
 * (admin/callers.ts); the admin API of another worker refuses it, which ends the session
 * (the console asks to log in again). Operator-token sessions are valid everywhere.
 */
import cluster, { type Worker } from 'node:cluster';
import { NexusError } from '@nexus-proxy/protocol';
import {
  ConsoleSessions,
  type ConsoleSession,
  type SessionTable,
  type SessionUser,
} from '../console/sessions.js';

type SessionOp =
  | { id: number; op: 'create'; bearer: string; user: SessionUser }
  | { id: number; op: 'get'; cookie: string | undefined }
  | { id: number; op: 'delete'; cookie: string | undefined };

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

interface SessionRequest {
  nexusSession: SessionOp;
}
interface SessionReply {
  nexusSessionReply: {
    id: number;
    created?: { id: string; session: ConsoleSession };
    session?: ConsoleSession;
  };
}

/** A worker's message to the primary's session table. */
export function isSessionRequest(message: unknown): message is SessionRequest {
  const op = (message as Partial<SessionRequest> | null)?.nexusSession;
  return typeof op === 'object' && op !== null && typeof op.id === 'number';
}

function isSessionReply(message: unknown): message is SessionReply {
  const r = (message as Partial<SessionReply> | null)?.nexusSessionReply;
  return typeof r === 'object' && r !== null && typeof r.id === 'number';
}

/** The primary's table (made on the first request; default limits, as a single node's). */
let table: ConsoleSessions | undefined;

/** In the primary: answers a worker's session request from the one table. */
export function answerSessionRequest(
  worker: Worker,
  message: SessionRequest,
  clock: () => number = Date.now,
): void {
  table ??= new ConsoleSessions(clock);
  const op = message.nexusSession;
  let reply: SessionReply['nexusSessionReply'];
  if (op.op === 'create') {
    reply = { id: op.id, created: table.create(op.bearer, op.user) };
  } else if (op.op === 'get') {
    const session = table.get(op.cookie);
    reply = session === undefined ? { id: op.id } : { id: op.id, session };
  } else {
    table.delete(op.cookie);
    reply = { id: op.id };
  }
  if (worker.isConnected()) worker.send({ nexusSessionReply: reply });
}

/**
 * In a worker: the session table the primary holds. A primary that does not answer within
 * 5 s fails the call with `internal_error` (no session is assumed).
 */
export function workerSessionTable(): SessionTable {
  if (!cluster.isWorker || process.send === undefined) {
    throw new Error('workerSessionTable runs in a worker of nexus up --workers');
  }
  let next = 1;
  const waiting = new Map<number, (reply: SessionReply['nexusSessionReply']) => void>();
  process.on('message', (message: unknown) => {
    if (!isSessionReply(message)) return;
    const done = waiting.get(message.nexusSessionReply.id);
    if (done === undefined) return;
    waiting.delete(message.nexusSessionReply.id);
    done(message.nexusSessionReply);
  });
  const ask = (op: WithoutId<SessionOp>): Promise<SessionReply['nexusSessionReply']> =>
    new Promise((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new NexusError('internal_error', 'the console session table did not answer'));
      }, 5000);
      timer.unref();
      waiting.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      process.send!({ nexusSession: { ...op, id } });
    });
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
