/**
 * Issue 10: the audit survives the operator's own tools and the store's faults. A real
 * `nexus up` on a real SQLite file, and real second processes: the `sqlite3` CLI an
 * operator would run, a node child holding the database's write lock, a second
 * `nexus up` on the same store. Every test says what it guards; none asserts a duration
 * (events are ordered instead: "answered while the lock was still held").
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, link, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, REPO, runCli, startNode, type TestNode } from '../helpers/node.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { attack, enrollAttacker, restartAndWait, type Attacker } from './harness.js';

const run = promisify(execFile);
/** The Debian `sqlite3` CLI (`.ci/run` installs it): what an operator types. */
const SQLITE3 = 'sqlite3';

const storeOf = (node: TestNode) => join(node.dir, '.nexus', 'nexus.db');

/** The node's JSON log lines so far. */
function logLines(node: TestNode): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of node.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line
    }
  }
  return out;
}

/** Waits (bounded) until the node has logged a line `match` accepts; returns it. */
async function logged(
  node: TestNode,
  match: (line: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  for (let i = 0; i < 400; i++) {
    const line = logLines(node).find(match);
    if (line !== undefined) return line;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('expected log line never came');
}

/** The codes down an `err` summary's cause chain (`errorSummary` in the log). */
function causeCodes(err: unknown): string[] {
  const codes: string[] = [];
  for (let e = err as { code?: string; cause?: unknown } | undefined; e;) {
    if (typeof e.code === 'string') codes.push(e.code);
    e = e.cause as typeof e;
  }
  return codes;
}

/**
 * Another process holding the database's write lock (`BEGIN EXCLUSIVE`) until the test
 * releases it.
 */
async function holdWriteLock(db: string): Promise<{ release(): Promise<void> }> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(process.argv[1]);
    db.exec('BEGIN EXCLUSIVE');
    process.stdout.write('locked\\n');
    process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0); });
  `;
  const child: ChildProcess = spawn(process.execPath, ['-e', script, db], {
    cwd: REPO,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.includes('locked')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  return {
    async release() {
      const exited = once(child, 'exit');
      child.stdin!.write('release\n');
      await exited;
    },
  };
}

const SERVICES = (upstream: TestUpstream) => ({
  echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
});
const AGENTS = { bot: { roles: ['r'] } };
const POLICIES = [{ id: 'all', allow: { roles: ['r'], methods: ['*'] } }];

describe('an outside sqlite3 client under load (issue 10)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({ services: SERVICES(upstream), agents: AGENTS, policies: POLICIES });
    await node.setCredential('echo-token', { value: 'store-faults-token-0123456789' });
    agent = await enrollAttacker(node, 'bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('every forwarded request keeps its durable record after a crash and restart', async () => {
    const db = storeOf(node);
    const forwarded: string[] = [];
    let stop = false;
    const load = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const r = await attack(node, agent, `/echo/w${w}/${i}`);
        if (r.status === 200) forwarded.push(String(r.headers['nexus-request-id']));
      }
    };
    const loaders = [0, 1, 2, 3].map(load);
    const forwardedAtLeast = async (n: number) => {
      while (forwarded.length < n) await new Promise((r) => setTimeout(r, 10));
    };
    try {
      await forwardedAtLeast(20);
      // The operator's read-write client opens and closes the store five times, under load.
      for (let i = 0; i < 5; i++) {
        const { stdout } = await run(SQLITE3, [db, 'select count(*) from audit']);
        expect(Number(stdout.trim())).toBeGreaterThan(0);
      }
      // Requests after the last outside open: the ones a deleted WAL would swallow.
      await forwardedAtLeast(forwarded.length + 50);
    } finally {
      stop = true;
      await Promise.all(loaders);
    }
    // The WAL the node writes is still the file at the store's path.
    expect(existsSync(`${db}-wal`)).toBe(true);
    await restartAndWait(node, true);
    const check = new Database(db, { readonly: true });
    try {
      const has = check.prepare(
        "SELECT count(*) AS n FROM audit WHERE request_id = ? AND kind = 'request'",
      );
      const missing = forwarded.filter((id) => (has.get(id) as { n: number }).n === 0);
      expect({ forwarded: forwarded.length, missing: missing.length }).toEqual({
        forwarded: forwarded.length,
        missing: 0,
      });
    } finally {
      check.close();
    }
    const verify = await node.cli(['audit', 'verify', '--json']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});

describe('a database locked by another process (issue 10)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({ services: SERVICES(upstream), agents: AGENTS, policies: POLICIES });
    await node.setCredential('echo-token', { value: 'store-faults-token-0123456789' });
    agent = await enrollAttacker(node, 'bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('discovery and proxied requests are answered while the lock is held; enrollment waits or fails with store_busy; the audit failure logs SQLITE_BUSY', async () => {
    const token = await node.enrollmentToken('bot');
    const lock = await holdWriteLock(storeOf(node));
    let released = false;
    try {
      upstream.reset();
      // Enrollment writes on the main thread: it must not hold up anything else.
      let enrollSettled = false;
      const enrollment = fetch(`${node.proxyUrl}/v1/leases`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ enrollment_token: token, jwk: agent.key.publicJwk }),
      }).then(async (res) => {
        enrollSettled = true;
        return { status: res.status, body: (await res.json()) as { code?: string } };
      });

      const discovery = await fetch(`${node.proxyUrl}/.well-known/nexus-configuration`);
      expect(discovery.status).toBe(200);
      expect(enrollSettled).toBe(false);

      // A request on an existing lease: its record cannot be written, so it fails fast
      // and closed, and nothing reaches the upstream.
      const proxied = await attack(node, agent, '/echo/while-locked');
      expect(proxied.status).toBe(503);
      expect(proxied.code).toBe('audit_unavailable');
      expect(upstream.requests).toHaveLength(0);
      const line = await logged(node, (l) => l.msg === 'audit write failed');
      expect(causeCodes(line.err)).toEqual(['audit_unavailable', 'SQLITE_BUSY']);

      const health = await fetch(`${node.adminUrl}/v1/health`);
      expect(health.status).toBe(200);

      await lock.release();
      released = true;
      const enrolled = await enrollment;
      if (enrolled.status !== 201) {
        expect(enrolled).toMatchObject({ status: 503, body: { code: 'store_busy' } });
      }
    } finally {
      if (!released) await lock.release();
    }
    // Lock gone: requests flow again.
    const after = await attack(node, agent, '/echo/after-release');
    expect(after.status).toBe(200);
  });
});

describe('a store file deleted or replaced under the running node (issue 10)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({ services: SERVICES(upstream), agents: AGENTS, policies: POLICIES });
    await node.setCredential('echo-token', { value: 'store-faults-token-0123456789' });
    agent = await enrollAttacker(node, 'bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('fails closed with a logged cause, and `nexus up` will not create an empty store in its place', async () => {
    const db = storeOf(node);
    expect((await attack(node, agent, '/echo/before')).status).toBe(200);
    // A backup restored over the live file (copy, then rename over it).
    await copyFile(db, `${db}.restored`);
    await rename(`${db}.restored`, db);
    upstream.reset();

    const proxied = await attack(node, agent, '/echo/after-replace');
    expect(proxied.status).toBe(503);
    expect(proxied.code).toBe('audit_unavailable');
    expect(upstream.requests).toHaveLength(0);
    const fault = await logged(node, (l) =>
      String(l.msg).startsWith('store file deleted or replaced'),
    );
    expect(causeCodes(fault.err)).toContain('store_unavailable');
    const failed = await logged(node, (l) => l.msg === 'audit write failed');
    expect(causeCodes(failed.err)).toEqual(['audit_unavailable', 'store_unavailable']);

    // Admin writes refuse too: their audit record (written before the action, issue 15)
    // cannot be written, so the action is not carried out.
    const token = await node.admin<{ code?: string }>(
      'POST',
      '/v1/agents/bot/enrollment-tokens',
      {},
    );
    expect(token.status).toBe(503);
    expect(token.body.code).toBe('audit_unavailable');
    // Still nothing forwarded, however often it is asked.
    expect((await attack(node, agent, '/echo/again')).code).toBe('audit_unavailable');
    expect(upstream.requests).toHaveLength(0);

    await node.stop();
    for (const f of [db, `${db}-wal`, `${db}-shm`]) await rm(f, { force: true });
    const up = await runCli(['up', '--config', node.configPath], { timeoutMs: 15_000 });
    expect(up.code).not.toBe(0);
    expect(up.stderr.trim().split('\n')).toHaveLength(1);
    expect(up.stderr).toContain('(store_missing)');
    expect(up.stderr).toContain('nexus init');
    expect(existsSync(db)).toBe(false);
  });
});

describe('one live node per SQLite store (issue 10)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({ services: SERVICES(upstream), agents: AGENTS, policies: POLICIES });
    await node.setCredential('echo-token', { value: 'store-faults-token-0123456789' });
    agent = await enrollAttacker(node, 'bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('a second `nexus up` on the store exits with store_in_use, the first keeps serving; a new one starts after it stops or dies', async () => {
    // The same config, and one with other ports on the same store (the dangerous case:
    // both could listen).
    const other = join(node.dir, 'nexus-second.yaml');
    const config = parse(await readFile(node.configPath, 'utf8')) as Record<string, unknown>;
    config.proxy = { listen: `127.0.0.1:${await freePort()}` };
    config.admin = { listen: `127.0.0.1:${await freePort()}` };
    await writeFile(other, stringify(config));
    for (const path of [node.configPath, other]) {
      const second = await runCli(['up', '--config', path], { timeoutMs: 15_000 });
      expect(second.code).not.toBe(0);
      expect(second.stderr.trim().split('\n')).toHaveLength(1);
      expect(second.stderr).toContain('(store_in_use)');
    }
    // The same file under another name (issue 10, black-box re-run: two nodes served one
    // store through a hard link and corrupted it): a symbolic link is followed to the file
    // and meets the lock; a hard link is refused, whichever node comes first.
    const db = join(node.dir, '.nexus', 'nexus.db');
    for (const [how, code] of [
      ['symlink', 'store_in_use'],
      ['link', 'store_linked'],
    ] as const) {
      const alias = join(node.dir, `alias-${how}.db`);
      await (how === 'symlink' ? symlink(db, alias) : link(db, alias));
      const aliased = { ...config, store: `sqlite:${alias}` };
      await writeFile(other, stringify(aliased));
      const second = await runCli(['up', '--config', other], { timeoutMs: 15_000 });
      await unlink(alias);
      expect(second.code).not.toBe(0);
      expect(second.stderr).toContain(`(${code})`);
    }

    // The first node was not disturbed, and read-only tools work beside it.
    expect((await attack(node, agent, '/echo/still-serving')).status).toBe(200);
    const verify = await node.cli(['audit', 'verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });

    // After a clean stop, and after a crash (no stale lock), a new node starts and serves.
    await restartAndWait(node);
    expect((await attack(node, agent, '/echo/after-restart')).status).toBe(200);
    await restartAndWait(node, true);
    // (After a crash, signatures made before the restart are refused: enroll anew.)
    const fresh = await enrollAttacker(node, 'bot');
    expect(fresh.lease.split('.')).toHaveLength(3);
  });
});

describe('audit tail truncation, detected against checkpoints kept outside the database (issue 10)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: SERVICES(upstream),
      agents: AGENTS,
      policies: POLICIES,
      overrides: { audit: { checkpoint_every: 4 } },
    });
    await node.setCredential('echo-token', { value: 'store-faults-token-0123456789' });
    agent = await enrollAttacker(node, 'bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('the truncated chain verifies alone, and fails `verify --against` the checkpoint file or a logged checkpoint', async () => {
    for (let i = 0; i < 12; i++) expect((await attack(node, agent, `/echo/${i}`)).status).toBe(200);
    await logged(node, (l) => l.msg === 'audit checkpoint');
    await node.stop(); // the final checkpoint covers the last record
    // ... and appended to the checkpoint file beside the store.
    const file = `${storeOf(node)}.checkpoints.jsonl`;
    const shipped = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; hash: string; jws: string });
    expect(shipped.length).toBeGreaterThan(1);
    const newest = shipped.at(-1)!;
    // Every checkpoint is also a log line (seq, hash, time, kid, JWS), the same as the file.
    const loggedCps = logLines(node)
      .filter((l) => l.msg === 'audit checkpoint')
      .map((l) => l.checkpoint as { seq: number; hash: string; jws: string });
    expect(loggedCps.map((c) => c.jws)).toEqual(shipped.map((c) => c.jws));
    const copy = join(node.dir, 'shipped-checkpoints.jsonl');
    await copyFile(file, copy);

    const intact = await node.cli(['audit', 'verify', '--against', copy, '--json']);
    expect(intact.code, intact.stdout + intact.stderr).toBe(0);
    expect(JSON.parse(intact.stdout)).toMatchObject({
      ok: true,
      against: { seq: newest.seq, hash: newest.hash },
    });

    // Someone with write access removes the newest records and the newest checkpoints.
    const keep = shipped[0]!.seq;
    await run(SQLITE3, [
      storeOf(node),
      `DROP TRIGGER audit_no_delete; DELETE FROM audit_checkpoints WHERE seq > ${keep}; DELETE FROM audit WHERE seq > ${keep};`,
    ]);
    const alone = await node.cli(['audit', 'verify', '--json']);
    expect(alone.code).toBe(0); // what the database alone cannot tell
    expect(JSON.parse(alone.stdout)).toMatchObject({ ok: true, count: keep });

    const againstFile = await node.cli(['audit', 'verify', '--against', copy, '--json']);
    expect(againstFile.code).toBe(1);
    expect(JSON.parse(againstFile.stdout)).toMatchObject({
      ok: false,
      reason: 'truncated',
      seq: keep + 1,
    });
    const human = await node.cli(['audit', 'verify', '--against', copy]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain('(truncated)');
    // A single JWS taken from the newest log line is enough.
    const againstJws = await node.cli([
      'audit',
      'verify',
      '--against',
      loggedCps.at(-1)!.jws,
      '--json',
    ]);
    expect(againstJws.code).toBe(1);
    expect(JSON.parse(againstJws.stdout)).toMatchObject({ ok: false, reason: 'truncated' });

    // A forged checkpoint (a valid shape, a signature the Authority never made) is refused.
    const [h, p, s] = newest.jws.split('.');
    const forged = `${h}.${p}.${s!.slice(0, -4)}AAAA`;
    const bad = await node.cli(['audit', 'verify', '--against', forged, '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, reason: 'checkpoint_invalid' });

    // The node itself refuses to start on the truncated store, which would write new
    // records over the missing seqs: its own checkpoint file vouches for more (issue 10,
    // black-box re-run).
    const up = await runCli(['up', '--config', node.configPath], { timeoutMs: 15_000 });
    expect(up.code).not.toBe(0);
    expect(up.stderr).toContain('(audit_truncated)');
  });
});
