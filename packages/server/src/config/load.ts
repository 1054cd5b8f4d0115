// Loading nexus.yaml: read, parse YAML (syntax errors with line numbers), validate with
// the schema, run cross-field checks, and return one deeply frozen Config. Every problem
// is collected and thrown at once as a ConfigError (`config_invalid`).
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError, joinPath, type ConfigIssue } from './errors.js';
import { RedactedString } from './redacted.js';
import { buildConfigSchema, DEFAULTS, isLoopbackHost, type Config } from './schema.js';
import { parseDuration, parseListen, type ListenAddress } from './units.js';
import { duplicateHosts } from './reach.js';

/** Options for {@link parseConfig}. */
export interface ParseConfigOptions {
  /** Directory relative paths resolve against. Default: the current directory. */
  readonly baseDir?: string;
  /** Environment to read NEXUS_MASTER_KEY from. Default: none (tests stay hermetic). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** File name used in issue lines. */
  readonly file?: string;
}

/** Options for {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Environment to read NEXUS_MASTER_KEY from. Default: `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

type RawIssue = { path: PropertyKey[]; message: string };

/**
 * Validates a config object (already parsed from YAML or built in a test).
 *
 * @throws ConfigError (`config_invalid`) listing every problem.
 * @example const config = parseConfig({ version: 1 }, { baseDir: '/srv/nexus' });
 */
export function parseConfig(input: unknown, opts: ParseConfigOptions = {}): Config {
  const r = validate(input, opts);
  if (r.issues.length > 0) {
    throw new ConfigError(
      r.issues.map((i) => ({ path: joinPath(i.path), message: i.message })),
      opts.file,
    );
  }
  return r.config as Config;
}

/**
 * Reads, validates and freezes a nexus.yaml. Relative paths in it resolve against the
 * file's directory. This and the CLI entry are the only readers of the environment.
 *
 * @throws ConfigError (`config_invalid`) with every problem, each with its line when known.
 */
export async function loadConfig(path: string, opts: LoadConfigOptions = {}): Promise<Config> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw Object.assign(
      new ConfigError([{ path: '', message: `cannot read the config file (${code})` }], path),
      {
        cause: err,
      },
    );
  }
  return parseConfigText(text, {
    baseDir: dirname(file),
    env: opts.env ?? process.env,
    file: path,
  });
}

/**
 * Parses YAML text and validates it; issues carry line and column numbers.
 *
 * @throws ConfigError (`config_invalid`).
 */
export function parseConfigText(text: string, opts: ParseConfigOptions = {}): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return {
          path: '',
          message: `YAML syntax error: ${e.code.toLowerCase().replace(/_/g, ' ')}`,
          line: pos.line,
          column: pos.col,
        };
      }),
      opts.file,
    );
  }
  let input: unknown;
  try {
    input = doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new ConfigError(
      [{ path: '', message: 'YAML could not be converted (too many aliases?)' }],
      opts.file,
    );
  }
  const r = validate(input, opts);
  if (r.issues.length > 0) {
    const issues = r.issues.map((i) => withLine(doc, lineCounter, i));
    issues.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    throw new ConfigError(issues, opts.file);
  }
  return r.config as Config;
}

function withLine(doc: Document, lc: LineCounter, issue: RawIssue): ConfigIssue {
  const path = joinPath(issue.path);
  for (let n = issue.path.length; n > 0; n--) {
    const node = doc.getIn(issue.path.slice(0, n) as unknown[], true) as
      { range?: [number, number, number] } | undefined;
    if (
      node !== undefined &&
      node !== null &&
      typeof node === 'object' &&
      Array.isArray(node.range)
    ) {
      const pos = lc.linePos(node.range[0]);
      return { path, message: issue.message, line: pos.line, column: pos.col };
    }
  }
  return { path, message: issue.message };
}

function validate(
  input: unknown,
  opts: ParseConfigOptions,
): { config?: Config; issues: RawIssue[] } {
  if (input === null || input === undefined) {
    return {
      issues: [{ path: [], message: 'the config is empty; it needs at least "version: 1"' }],
    };
  }
  if (typeof input !== 'object' || Array.isArray(input)) {
    return { issues: [{ path: [], message: 'the config must be a mapping' }] };
  }
  const baseDir = resolve(opts.baseDir ?? '.');
  const envKey = opts.env?.NEXUS_MASTER_KEY;
  const schema = buildConfigSchema({
    baseDir,
    ...(envKey !== undefined && envKey !== ''
      ? { masterKeyFromEnv: new RedactedString(envKey) }
      : {}),
  });
  const r = schema.safeParse(input);
  const issues: RawIssue[] = r.success ? [] : r.error.issues.flatMap(fromZod);
  issues.push(...crossCheck(input as Record<string, unknown>));
  if (issues.length > 0) return { issues: dedupe(issues) };
  return { config: deepFreeze(r.data as Config), issues };
}

function fromZod(issue: z.core.$ZodIssue): RawIssue[] {
  const path = issue.path as PropertyKey[];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => ({ path: [...path, k], message: 'unknown key' }));
  }
  if (issue.code === 'invalid_key') {
    return [{ path, message: issue.issues[0]?.message ?? 'invalid name' }];
  }
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) {
    return [{ path, message: `required (expected ${issue.expected})` }];
  }
  return [{ path, message: issue.message }];
}

function dedupe(issues: RawIssue[]): RawIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${joinPath(i.path)}\u0000${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks across sections, on the raw input so they run even when other parts are invalid:
 * policies name known services and agents, rule ids are unique, lease_ttl <=
 * lease_max_lifetime, the proxy and admin listeners differ.
 */
/**
 * A `cost` limit counts what services' responses cost (`services.<name>.cost`): one that
 * could never count anything is a mistake, said at load rather than found out later.
 */
function costLimitsCheck(raw: Record<string, unknown>): RawIssue[] {
  if (!Array.isArray(raw.limits)) return [];
  const services = isRecord(raw.services) ? raw.services : {};
  const costed = (name: string) => {
    const svc = services[name];
    return isRecord(svc) && svc.cost !== undefined;
  };
  const issues: RawIssue[] = [];
  raw.limits.forEach((limit: unknown, i) => {
    if (!isRecord(limit) || limit.cost === undefined) return;
    const match = isRecord(limit.match) ? limit.match : {};
    if (Array.isArray(match.services)) {
      match.services.forEach((name: unknown, j) => {
        if (typeof name === 'string' && !costed(name))
          issues.push({
            path: ['limits', i, 'match', 'services', j],
            message: `service "${name}" has no cost: to read (services.${name}.cost)`,
          });
      });
    } else if (!Object.keys(services).some(costed)) {
      issues.push({
        path: ['limits', i, 'cost'],
        message:
          'no service has a cost: to read (services.<name>.cost); this budget would never count',
      });
    }
  });
  return issues;
}

function crossCheck(raw: Record<string, unknown>): RawIssue[] {
  const issues: RawIssue[] = [];
  const services = isRecord(raw.services) ? new Set(Object.keys(raw.services)) : undefined;
  const agents = isRecord(raw.agents) ? new Set(Object.keys(raw.agents)) : undefined;

  if (Array.isArray(raw.policies)) {
    const ids = new Map<string, number>();
    raw.policies.forEach((rule: unknown, i) => {
      if (!isRecord(rule)) return;
      if (typeof rule.id === 'string') {
        const first = ids.get(rule.id);
        if (first !== undefined) {
          issues.push({
            path: ['policies', i, 'id'],
            message: `duplicate rule id (first at policies[${first}])`,
          });
        } else ids.set(rule.id, i);
      }
      for (const effect of ['allow', 'deny'] as const) {
        const m = rule[effect];
        if (!isRecord(m)) continue;
        const refs: [string, Set<string> | undefined, string][] = [
          ['services', services ?? new Set(), 'unknown service (not under services:)'],
          ['agents', agents ?? new Set(), 'unknown agent (not under agents:)'],
        ];
        for (const [field, known, message] of refs) {
          const list = m[field];
          if (!Array.isArray(list) || known === undefined) continue;
          list.forEach((name: unknown, j) => {
            if (typeof name === 'string' && !known.has(name)) {
              issues.push({ path: ['policies', i, effect, field, j], message });
            }
          });
        }
      }
    });
  }

  if (isRecord(raw.services)) {
    for (const [name, svc] of Object.entries(raw.services)) {
      if (!isRecord(svc) || typeof svc.upstream !== 'string') continue;
      let url: URL;
      try {
        url = new URL(svc.upstream);
      } catch {
        continue; // reported by the schema
      }
      // MUST: plain http only to loopback, unless the loudly named opt-in is set.
      if (
        url.protocol === 'http:' &&
        svc.allow_insecure_upstream !== true &&
        !isLoopbackHost(url.hostname)
      ) {
        issues.push({
          path: ['services', name, 'upstream'],
          message:
            'plain http is only allowed to loopback hosts; use https or set allow_insecure_upstream: true',
        });
      }
    }
  }

  issues.push(...hostClaims(raw.services));
  issues.push(...costLimitsCheck(raw));

  const authority = isRecord(raw.authority) ? raw.authority : {};
  const ttl = durationOr(authority.lease_ttl, DEFAULTS.authority.lease_ttl);
  const max = durationOr(authority.lease_max_lifetime, DEFAULTS.authority.lease_max_lifetime);
  if (ttl !== undefined && max !== undefined && ttl > max) {
    issues.push({
      path: ['authority', authority.lease_ttl === undefined ? 'lease_max_lifetime' : 'lease_ttl'],
      message: 'lease_ttl must not exceed lease_max_lifetime',
    });
  }

  const proxyListen = listenOr(
    isRecord(raw.proxy) ? raw.proxy.listen : undefined,
    DEFAULTS.proxy.listen,
  );
  const adminListen = listenOr(
    isRecord(raw.admin) ? raw.admin.listen : undefined,
    DEFAULTS.admin.listen,
  );
  if (
    proxyListen !== undefined &&
    adminListen !== undefined &&
    sameListener(proxyListen, adminListen)
  ) {
    issues.push({ path: ['admin', 'listen'], message: 'must differ from proxy.listen' });
  }
  return issues;
}

/** A host is owned by one service at most (the forward proxy routes by it). */
function hostClaims(services: unknown): RawIssue[] {
  if (!isRecord(services)) return [];
  const lists: Record<string, { hosts: string[] }> = {};
  for (const [name, svc] of Object.entries(services)) {
    if (isRecord(svc) && Array.isArray(svc.hosts)) {
      lists[name] = {
        hosts: svc.hosts.filter((h) => typeof h === 'string').map((h) => h.toLowerCase()),
      };
    }
  }
  return duplicateHosts(lists).map((d) => ({
    path: ['services', d.services[1], 'hosts'],
    message: `host ${d.host} is already owned by service ${d.services[0]}`,
  }));
}

function durationOr(v: unknown, dflt: string): number | undefined {
  if (v === undefined) return parseDuration(dflt);
  return typeof v === 'string' ? parseDuration(v) : undefined;
}

function listenOr(v: unknown, dflt: string): ListenAddress | undefined {
  if (v === undefined) return parseListen(dflt);
  return typeof v === 'string' ? parseListen(v) : undefined;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '0:0:0:0:0:0:0:0']);

function sameListener(a: ListenAddress, b: ListenAddress): boolean {
  if (a.port !== b.port || a.port === 0) return false;
  return a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host);
}

/** Freezes an object graph in place (plain objects and arrays) and returns it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
