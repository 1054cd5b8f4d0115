// Human units in nexus.yaml: durations (`15m`, `1h30m`, `500ms`) to milliseconds, sizes
// (`10MiB`, `16KiB`, `512`) to bytes, and `host:port` listen addresses.

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const DURATION_RE = /^(?:\d+(?:ms|s|m|h|d))+$/;
/** {@link parseDuration}'s syntax as a JSON Schema `pattern` (surrounding spaces allowed). */
export const DURATION_PATTERN = '^\\s*(?:\\d+(?:ms|s|m|h|d))+\\s*$';
const DURATION_PART_RE = /(\d+)(ms|s|m|h|d)/g;

/**
 * Parses a duration string to milliseconds. Units: `ms`, `s`, `m`, `h`, `d`, combinable
 * (`1h30m`). A bare number is rejected: `900` is ambiguous between seconds and ms.
 *
 * @example parseDuration('15m') === 900_000
 * @returns the milliseconds, or `undefined` if the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (!DURATION_RE.test(t)) return undefined;
  let total = 0;
  for (const m of t.matchAll(DURATION_PART_RE)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Formats milliseconds back to the largest exact unit (`900000` -> `15m`). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = DURATION_UNITS[unit] as number;
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  B: 1,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

const SIZE_RE = /^(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/;
/** {@link parseSize}'s text syntax as a JSON Schema `pattern` (surrounding spaces allowed). */
export const SIZE_PATTERN = '^\\s*\\d+\\s*(?:B|KB|MB|GB|KiB|MiB|GiB)?\\s*$';

/**
 * Parses a size to bytes: a non-negative integer (bytes) or a number with a unit
 * (`B`, `KB`, `MB`, `GB` decimal; `KiB`, `MiB`, `GiB` binary; case-sensitive).
 *
 * @example parseSize('10MiB') === 10_485_760
 * @returns the bytes, or `undefined` if the value is not a size.
 */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  const m = SIZE_RE.exec(value.trim());
  if (m === null) return undefined;
  const bytes = Number(m[1]) * (SIZE_UNITS[m[2] ?? ''] as number);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** A parsed listen address. `host` is bare (no brackets for IPv6). */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Parses `host:port` (`127.0.0.1:7070`, `[::1]:7070`, `localhost:0`).
 *
 * @returns the address, or `undefined` if malformed or the port is out of 0..65535.
 */
export function parseListen(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? (m[2] as string);
  if (m[1] === undefined && !HOSTNAME_RE.test(host)) return undefined;
  return { host, port };
}

/** Renders a listen address as a URL authority (`[::1]:7070`). */
export function formatListen(addr: ListenAddress): string {
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
