// The request payload of the A/B and profile scenarios, chosen by an environment variable
// (BENCH_AB_BODY, BENCH_PROFILE_BODY): `1KiB` (default) is the paths scenario's small POST
// (64 connections), `1MiB` its large one (8 connections, as bench/paths.mjs measures it).
// The upstream answers /bench/small with 1 KiB and /bench/large with 1 MiB.

const SIZES = {
  '1KiB': () => ({
    size: '1KiB',
    path: '/bench/small',
    body: Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) })),
    connections: 64,
    // Pre-signed requests per second of load: never fewer than the node can serve (wrk
    // reports a wrap), and few enough to be signed well within their 60 s lifetime.
    perSecond: 6000,
    // Pre-signed on top, for the profile scenario (2/3 of perSecond per second, plus this).
    margin: 5000,
  }),
  '1MiB': () => ({
    size: '1MiB',
    path: '/bench/large',
    body: Buffer.alloc(1024 * 1024, '{"k":"abcdefghijklmnopqrstuvwxyz"}\n'),
    connections: 8,
    perSecond: 150,
    margin: 500,
  }),
};

/** The payload named by `value` (`1KiB` when unset); throws for an unknown size. */
export function benchPayload(value) {
  const make = SIZES[value ?? '1KiB'];
  if (make === undefined) {
    throw new Error(`unknown body size "${value}" (one of ${Object.keys(SIZES).join(', ')})`);
  }
  return make();
}
