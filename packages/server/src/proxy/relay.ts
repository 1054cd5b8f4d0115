/**
 * Relays an identity-coded upstream body to the agent through the redactor, without a
 * stream pipeline. `stream.pipeline` over the upstream body, the scrubber, a byte counter
 * and the response cost a fifth of the proxy's main-thread time per request in the
 * benchmark profile: four stream objects, and on completion an error object (with its
 * stack trace) and an `AbortSignal` per stream. Compressed bodies keep the scrub stream,
 * which owns the decoder and its back-pressure.
 *
 * MUST: every byte goes through `redactor.push`, and the held-back tail through
 * `redactor.end`, before it is written (the same redactor as the scrub stream).
 * MUST: when the agent goes away, before or during the relay, the upstream body is
 * destroyed (a server-sent-events stream would otherwise be read forever, and the request
 * would hold its service runtime and keep shutdown waiting) and the relay rejects.
 * Back-pressure: a full response buffer pauses reading until it drains.
 */
import type { Readable, Writable } from 'node:stream';
import type { Redactor } from '../scrub/redactor.js';

/** Thrown when the agent's connection closes before the response was complete. */
function agentGone(): Error {
  return Object.assign(new Error('agent connection closed'), {
    code: 'ERR_STREAM_PREMATURE_CLOSE',
  });
}

/**
 * Writes the redacted body and ends the response. `onBytes` is told every write's size
 * and bytes (so a failed relay still reports what reached the agent).
 *
 * @throws the upstream body's error, or `ERR_STREAM_PREMATURE_CLOSE` when the agent left.
 */
export async function relayRedacted(
  body: Readable,
  redactor: Redactor,
  res: Writable,
  onBytes: (n: number, chunk: Buffer) => void,
): Promise<void> {
  let gone = false;
  let wake: (() => void) | undefined;
  const onClose = () => {
    if (res.writableFinished || gone) return;
    gone = true;
    body.destroy(agentGone());
    wake?.();
  };
  res.once('close', onClose);
  // The agent may have left while the upstream was still answering: its 'close' has been
  // emitted already, and only this state shows it.
  if (res.destroyed || res.closed) onClose();
  const write = async (chunk: Buffer): Promise<void> => {
    if (chunk.length === 0) return;
    if (gone) throw agentGone();
    onBytes(chunk.length, chunk);
    if (res.write(chunk)) return;
    if (res.destroyed) {
      onClose();
      throw agentGone();
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
      res.once('drain', resolve);
    });
    wake = undefined;
    if (gone) throw agentGone();
  };
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      await write(redactor.push(chunk));
    }
    await write(redactor.end());
    await new Promise<void>((resolve, reject) => {
      wake = () => reject(agentGone());
      if (gone) wake();
      else res.end(() => (gone ? reject(agentGone()) : resolve()));
    });
  } finally {
    res.off('close', onClose);
  }
}
