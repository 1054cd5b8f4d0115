import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';
import { checkStateFileModes, nodeStateFiles } from './state-files.js';

function layout() {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-state-'));
  const state = join(dir, '.nexus');
  mkdirSync(state, { mode: 0o700 });
  for (const f of ['master.key', 'operator.token', 'nexus.db']) {
    writeFileSync(join(state, f), 'x', { mode: 0o600 });
  }
  return { dir, state, config: parseConfig({ version: 1 }, { baseDir: dir }) };
}

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

// Issue 10: `nexus up` refuses node state other local users could read (by mode bits: the
// tests run as root, who reads anything).
describe('checkStateFileModes', () => {
  it('lists the key files, the store and their directory, not the config directory', () => {
    const { dir, state, config } = layout();
    const paths = nodeStateFiles(config).map((f) => f.path);
    expect(paths).toEqual([
      state,
      join(state, 'master.key'),
      join(state, 'operator.token'),
      join(state, 'nexus.db'),
      join(state, 'nexus.db-wal'),
      join(state, 'nexus.db-shm'),
    ]);
    expect(paths).not.toContain(dir);
  });

  it('accepts 0600 files in a 0700 directory, and missing files', () => {
    expect(codeOf(() => checkStateFileModes(layout().config))).toBeUndefined();
  });

  it.each([
    ['master.key', 0o640],
    ['operator.token', 0o604],
    ['nexus.db', 0o644],
    ['', 0o750],
    ['', 0o701],
  ])('refuses %s with mode %o (state_insecure)', (name, mode) => {
    const { state, config } = layout();
    chmodSync(join(state, name), mode);
    expect(codeOf(() => checkStateFileModes(config))).toBe('state_insecure');
  });
});
