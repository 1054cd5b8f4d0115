/**
 * Asking and answering over the IPC pipe between the primary of `nexus up --workers N` and
 * one of its workers: the one request/reply plumbing every shared piece of worker state
 * uses (console sessions, `/metrics`, held approvals, and what else the primary holds or
 * gathers for the workers). Either side can ask the other; each ask names a topic and gets
 * one answer or an error (a NexusError's code, and the detail a client would see from the
 * answering side).
 *
 * Messages: `{ nexusAsk: { id, topic, body } }` and `{ nexusAnswer: { id, body } | { id,
 * error: { code, detail } } }`. They travel on a local pipe between the processes of one
 * node and may carry secrets (a console session's bearer): they are never logged.
 *
 * Why our own and not a library: the pipe is `process.send`/`worker.send` with Node's
 * structured clone; an RPC library would add a framing layer for ~60 lines.
 */
import { NexusError, safeDetail, type ErrorCode } from '@nexus-proxy/protocol';

interface Ask {
  nexusAsk: { id: number; topic: string; body: unknown };
}
interface Answer {
  nexusAnswer: { id: number; body?: unknown; error?: { code: string; detail?: string } };
}

/** Answers one topic's asks. A thrown NexusError reaches the asker with its code (and detail). */
export type AskHandler = (body: unknown) => unknown;

/** One side of the pipe: asks the other side and answers its asks. */
export class IpcPeer {
  readonly #send: (message: unknown) => void;
  readonly #handlers = new Map<string, AskHandler>();
  readonly #waiting = new Map<
    number,
    { resolve: (body: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  #next = 1;

  /** `send`: `process.send` in a worker, `worker.send` in the primary. */
  constructor(send: (message: unknown) => void) {
    this.#send = send;
  }

  /** Answers `topic`'s asks with `handler` (one handler per topic). */
  handle(topic: string, handler: AskHandler): void {
    this.#handlers.set(topic, handler);
  }

  /**
   * Asks the other side. Rejects with the answer's error (its code kept), or with
   * `internal_error` when no answer comes within `timeoutMs` or the pipe is closed.
   */
  ask<T>(topic: string, body: unknown, timeoutMs = 5000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = this.#next++;
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new NexusError('internal_error', `no answer to ${topic} over the workers' pipe`));
      }, timeoutMs);
      timer.unref();
      this.#waiting.set(id, { resolve: resolve as (b: unknown) => void, reject, timer });
      try {
        this.#send({ nexusAsk: { id, topic, body } } satisfies Ask);
      } catch {
        clearTimeout(timer);
        this.#waiting.delete(id);
        reject(new NexusError('internal_error', `the workers' pipe is closed (${topic})`));
      }
    });
  }

  /** Fails every ask still waiting (the other side is gone). */
  close(): void {
    for (const [id, w] of this.#waiting) {
      clearTimeout(w.timer);
      this.#waiting.delete(id);
      w.reject(new NexusError('internal_error', "the workers' pipe closed before the answer"));
    }
  }

  /** Takes a message from the pipe; true when it was an ask or answer of this protocol. */
  receive(message: unknown): boolean {
    const ask = (message as Partial<Ask> | null)?.nexusAsk;
    if (typeof ask === 'object' && ask !== null && typeof ask.id === 'number') {
      void this.#answer(ask);
      return true;
    }
    const answer = (message as Partial<Answer> | null)?.nexusAnswer;
    if (typeof answer === 'object' && answer !== null && typeof answer.id === 'number') {
      const w = this.#waiting.get(answer.id);
      if (w !== undefined) {
        this.#waiting.delete(answer.id);
        clearTimeout(w.timer);
        if (answer.error === undefined) w.resolve(answer.body);
        else {
          const { code, detail } = answer.error;
          w.reject(
            new NexusError(code as ErrorCode, detail, detail === undefined ? {} : { detail }),
          );
        }
      }
      return true;
    }
    return false;
  }

  async #answer(ask: Ask['nexusAsk']): Promise<void> {
    let reply: Answer['nexusAnswer'];
    try {
      const handler = this.#handlers.get(ask.topic);
      if (handler === undefined) throw new NexusError('internal_error', `no ${ask.topic} here`);
      reply = { id: ask.id, body: await handler(ask.body) };
    } catch (err) {
      // The detail a client would see from this side (its explicit detail, or the message
      // of an error below 500), so the asker answers its client as this side would.
      if (err instanceof NexusError) {
        const detail = err.expose ? safeDetail(err) : err.detail;
        reply = { id: ask.id, error: { code: err.code, ...(detail ? { detail } : {}) } };
      } else {
        reply = { id: ask.id, error: { code: 'internal_error' } };
      }
    }
    try {
      this.#send({ nexusAnswer: reply } satisfies Answer);
    } catch {
      // The asker is gone; its own timeout or close() ends its wait.
    }
  }
}

let workerPeer: IpcPeer | undefined;

/**
 * In a worker of `nexus up --workers N`: its peer on the pipe to the primary (one per
 * process, listening from the first call on).
 */
export function primaryPeer(): IpcPeer {
  if (workerPeer !== undefined) return workerPeer;
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('primaryPeer runs in a worker of nexus up --workers');
  const peer = new IpcPeer((message) => {
    send(message);
  });
  process.on('message', (message: unknown) => {
    peer.receive(message);
  });
  process.on('disconnect', () => peer.close());
  workerPeer = peer;
  return peer;
}
