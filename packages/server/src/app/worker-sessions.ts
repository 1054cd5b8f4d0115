/**
 * The web console's login state under `nexus up --workers N`: the primary holds the one
 * session table, the one table of person tokens (OIDC logins) and the one table of OIDC
 * logins in progress (in its memory, as a single node holds its own: nothing is written to
 * the store), and every worker asks it over IPC. So a login on one worker is valid on
 * every other (the console's admin calls land on any worker), an OIDC callback may reach
 * another worker than the login's start, and a logout or a session's end (expiry,
 * eviction) ends the session and its person token on all.
 *
 * Asks (ipc-peer.ts):
 * - `console.session`: `{ op: 'create', bearer, user } | { op: 'get', cookie } | { op:
 *   'delete', cookie }`, answered `{ created?, session? }`.
 * - `console.person`: `{ op: 'issue', hash, person } | { op: 'find', hash } | { op:
 *   'revoke', hash }`, answered `{ person? }`. The worker mints the token and sends its
 *   SHA-256 only: a person token never crosses the pipe on its own (it does as the bearer
 *   of the session it belongs to, as an operator token does).
 * - `console.oidc-flow`: `{ op: 'put', key, flow } | { op: 'take', key }`, answered
 *   `{ flow? }` (`key`: the hash of the flow's binding cookie).
 *
 * They carry a session's cookie value and bearer and a flow's PKCE verifier between the
 * processes of one node (a local pipe); they are never logged.
 */
import { NexusError } from '@nexus-proxy/protocol';
import {
  ConsoleSessions,
  type ConsoleSession,
  type SessionTable,
  type SessionUser,
} from '../console/sessions.js';
import {
  mintPersonToken,
  personTokenHash,
  PersonTokens,
  type Person,
  type PersonTokenTable,
} from '../admin/callers.js';
import { OidcFlows, type OidcFlowTable, type PendingFlow } from '../console/oidc.js';
import { primaryPeer, type IpcPeer } from './ipc-peer.js';

type SessionOp =
  | { op: 'create'; bearer: string; user: SessionUser }
  | { op: 'get'; cookie: string | undefined }
  | { op: 'delete'; cookie: string | undefined };

interface SessionReply {
  created?: { id: string; session: ConsoleSession };
  session?: ConsoleSession;
}

type PersonOp =
  | { op: 'issue'; hash: string; person: Person }
  | { op: 'find'; hash: string }
  | { op: 'revoke'; hash: string };

type FlowOp = { op: 'put'; key: string; flow: PendingFlow } | { op: 'take'; key: string };

const SESSION_TOPIC = 'console.session';
const PERSON_TOPIC = 'console.person';
const FLOW_TOPIC = 'console.oidc-flow';

/** The console state the primary holds for all its workers (one per primary). */
export interface ConsoleState {
  readonly sessions: ConsoleSessions;
  readonly people: PersonTokens;
  readonly flows: OidcFlows;
}

/**
 * In the primary: the one console state (default session limits, as a single node's). A
 * person's token ends with their session, whichever worker ended it or none (expiry).
 */
export function primaryConsoleState(clock: () => number = Date.now): ConsoleState {
  const people = new PersonTokens();
  const sessions = new ConsoleSessions(clock, {}, (s) => {
    if (s.user.type === 'person') people.revoke(s.bearer);
  });
  return { sessions, people, flows: new OidcFlows(clock) };
}

/** In the primary: answers one worker's console asks from the one state. */
export function answerSessions(peer: IpcPeer, state: ConsoleState): void {
  const { sessions, people, flows } = state;
  peer.handle(SESSION_TOPIC, (body): SessionReply => {
    const op = body as SessionOp;
    if (op.op === 'create') return { created: sessions.create(op.bearer, op.user) };
    if (op.op === 'get') {
      const session = sessions.get(op.cookie);
      return session === undefined ? {} : { session };
    }
    sessions.delete(op.cookie);
    return {};
  });
  peer.handle(PERSON_TOPIC, (body): { person?: Person } => {
    const op = body as PersonOp;
    if (typeof op.hash !== 'string') throw new NexusError('internal_error');
    if (op.op === 'issue') {
      people.add(op.hash, op.person);
      return {};
    }
    if (op.op === 'find') {
      const person = people.findHash(op.hash);
      return person === undefined ? {} : { person };
    }
    people.revokeHash(op.hash);
    return {};
  });
  peer.handle(FLOW_TOPIC, (body): { flow?: PendingFlow } => {
    const op = body as FlowOp;
    if (typeof op.key !== 'string') throw new NexusError('internal_error');
    if (op.op === 'put') {
      flows.put(op.key, op.flow);
      return {};
    }
    const flow = flows.take(op.key);
    return flow === undefined ? {} : { flow };
  });
}

/**
 * In a worker: the session table the primary holds. A primary that does not answer within
 * 5 s fails the call with `internal_error` (no session is assumed). `peer`: the pipe to the
 * primary (default: this worker's).
 */
export function workerSessionTable(peer: IpcPeer = primaryPeer()): SessionTable {
  const ask = (op: SessionOp) => peer.ask<SessionReply>(SESSION_TOPIC, op);
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

/**
 * In a worker: the person tokens the primary holds. The token is minted here; the primary
 * gets its hash. A primary that does not answer within 5 s fails the call with
 * `internal_error`: no token is issued, and a call with a token that cannot be looked up
 * is refused with `internal_error` (never a person assumed; not `unauthorized`, which
 * would end the console session over a slow answer). `peer`: as {@link workerSessionTable}.
 */
export function workerPersonTokens(peer: IpcPeer = primaryPeer()): PersonTokenTable {
  const ask = (op: PersonOp) => peer.ask<{ person?: Person }>(PERSON_TOPIC, op);
  return {
    async issue(person) {
      const token = mintPersonToken();
      await ask({ op: 'issue', hash: personTokenHash(token), person });
      return token;
    },
    async find(token) {
      return (await ask({ op: 'find', hash: personTokenHash(token) })).person;
    },
    async revoke(token) {
      await ask({ op: 'revoke', hash: personTokenHash(token) });
    },
  };
}

/** In a worker: the OIDC logins in progress the primary holds (`peer`: as above). */
export function workerOidcFlows(peer: IpcPeer = primaryPeer()): OidcFlowTable {
  const ask = (op: FlowOp) => peer.ask<{ flow?: PendingFlow }>(FLOW_TOPIC, op);
  return {
    async put(key, flow) {
      await ask({ op: 'put', key, flow });
    },
    async take(key) {
      return (await ask({ op: 'take', key })).flow;
    },
  };
}
