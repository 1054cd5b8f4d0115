// The query layer's own mechanics (queries.ts): templates and the dialect hooks. What the
// queries do is the conformance suite's job (sqlite.test.ts, postgres.test.ts).
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { Dialect, Template, replayStatements, slot } from './queries.js';

describe('Template', () => {
  it('binds its slots per call and keeps constants in place', () => {
    const { db } = new Dialect('postgres');
    const t = new Template(
      db
        .selectFrom('audit')
        .select('hash')
        .where('chain', '=', 'c1')
        .where('seq', '=', slot<number>(0))
        .limit(1),
    );
    expect(t.positional).toBe(false);
    expect(t.sql).toBe('select "hash" from "audit" where "chain" = $1 and "seq" = $2 limit $3');
    expect(t.bind(7).parameters).toEqual(['c1', 7, 1]);
    expect(t.bind(8).parameters).toEqual(['c1', 8, 1]);
    // The text is the same string every call: one prepared statement for all of them.
    expect(t.bind(9).sql).toBe(t.sql);
  });

  it('is positional when its parameters are its arguments in order', () => {
    const { db } = new Dialect('sqlite');
    const t = new Template(
      db.insertInto('meta').values({ key: slot<string>(0), value: slot<string>(1) }),
    );
    expect(t.positional).toBe(true);
    expect(t.bind('k', 'v').parameters).toEqual(['k', 'v']);
    const swapped = new Template(
      db.insertInto('meta').values({ key: slot<string>(1), value: slot<string>(0) }),
    );
    expect(swapped.positional).toBe(false);
    expect(swapped.bind('v', 'k').parameters).toEqual(['k', 'v']);
  });
});

describe('Dialect hooks', () => {
  it('sorts text in byte order on both (COLLATE "C" on PostgreSQL only)', () => {
    const pg = new Dialect('postgres');
    const lite = new Dialect('sqlite');
    const q = (d: Dialect) =>
      d.db.selectFrom('agents').select('name').orderBy(d.bytes('name')).compile().sql;
    expect(q(pg)).toBe('select "name" from "agents" order by "name" collate "C"');
    expect(q(lite)).toBe('select "name" from "agents" order by "name"');
  });

  it('binds booleans as SQLite can store them (0/1), and as booleans on PostgreSQL', () => {
    expect(new Dialect('sqlite').bool(true)).toBe(1);
    expect(new Dialect('sqlite').bool(false)).toBe(0);
    expect(new Dialect('postgres').bool(true)).toBe(true);
    expect(new Dialect('sqlite').rowLocks).toBe(false);
    expect(new Dialect('postgres').rowLocks).toBe(true);
  });
});

describe('replayStatements', () => {
  it('records a key once, refuses it while live and takes it over once forgotten (SQLite)', () => {
    const statements = replayStatements('sqlite');
    expect(statements.record.positional).toBe(true);
    const db = new Database(':memory:');
    try {
      db.exec('CREATE TABLE replay_nonces (key TEXT PRIMARY KEY, forget_at INTEGER NOT NULL)');
      const record = db.prepare(statements.record.sql);
      const sweep = db.prepare(statements.sweep.sql);
      expect(record.run('k', 2000, 1000).changes).toBe(1);
      expect(record.run('k', 3000, 1500).changes).toBe(0); // a replay
      expect(record.run('k', 4000, 2000).changes).toBe(1); // forgotten at 2000: taken over
      expect(sweep.run(3999).changes).toBe(0);
      expect(sweep.run(4000).changes).toBe(1);
    } finally {
      db.close();
    }
  });
});
