/**
 * Replay protection across restarts.
 *
 * The replay cache lives in memory. A clean shutdown stores its live entries in the store
 * and marks the proxy `stopped`; the next start restores them, so a request accepted
 * before the restart is still refused after it. If the previous process did not stop
 * cleanly (state `running`), the entries are lost: the proxy then refuses every signature
 * that could predate its start (`created <= start + skew`, see proxy/pipeline.ts), which
 * covers everything the lost cache could have held. A store that never ran a proxy needs
 * neither.
 */
import type { Store } from '../store/store.js';
import type { ReplayCache } from '../proxy/replay-cache.js';

const STATE = 'proxy.state';
const SNAPSHOT = 'proxy.replay_snapshot';

/**
 * Restores the replay cache and returns the time before which signatures are refused
 * (0 when nothing needs refusing).
 */
export async function restoreReplayState(
  store: Store,
  replay: ReplayCache,
  startedAt: number,
): Promise<number> {
  const state = await store.getMeta(STATE);
  let notBefore = 0;
  if (state === 'stopped') {
    const text = await store.getMeta(SNAPSHOT);
    if (text === undefined) notBefore = startedAt;
    else replay.restore(JSON.parse(text) as [string, number][]);
  } else if (state === 'running' || state === 'workers') {
    // `workers` (`nexus up --workers`): the records are in `replay_nonces`, not in a
    // snapshot this cache could load.
    notBefore = startedAt;
  }
  // `running` first: a crash between the two writes must leave the barrier in force.
  await store.setMeta(STATE, 'running');
  await store.setMeta(SNAPSHOT, '[]');
  return notBefore;
}

/** Saves the replay cache after the listeners have drained. */
export async function saveReplayState(store: Store, replay: ReplayCache): Promise<void> {
  await store.setMeta(SNAPSHOT, JSON.stringify(replay.snapshot()));
  await store.setMeta(STATE, 'stopped');
}
