/**
 * The deployment files that CI cannot run (no Docker daemon here), checked as far as they
 * can be: the docker-compose cluster (issue 13) parses, runs every Nexus container as the
 * image's non-root user, puts both nodes behind the load balancer, and gives them a
 * nexus.yaml that the real config schema accepts, with no secret in it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '@nexus-proxy/server';
import { REPO } from './helpers/node.js';

const DIR = join(REPO, 'deploy/docker/cluster');
const read = (name: string) => readFileSync(join(DIR, name), 'utf8');

interface ComposeService {
  image?: string;
  user?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, unknown> | string[];
}

describe('deploy/docker/cluster', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as {
    services: Record<string, ComposeService>;
  };
  const services = compose.services;

  it('has PostgreSQL, Redis, an init job, two nodes and a load balancer', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['lb', 'nexus-1', 'nexus-2', 'nexus-init', 'postgres', 'redis'].sort(),
    );
    for (const name of ['nexus-1', 'nexus-2']) {
      expect(services[name]?.command).toEqual(['up', '--config', '/etc/nexus/nexus.yaml']);
      expect(services[name]?.depends_on).toHaveProperty('nexus-init');
    }
  });

  it('runs every Nexus container as the non-root user of the image', () => {
    for (const name of ['nexus-init', 'nexus-1', 'nexus-2']) {
      expect(services[name]?.image).toBe('nexus');
      expect(services[name]?.user).toBe('10001:10001');
    }
    expect(readFileSync(join(REPO, 'deploy/docker/Dockerfile'), 'utf8')).toMatch(
      /^USER nexus:nexus$/m,
    );
  });

  it('balances over both nodes', () => {
    const nginx = read('nginx.conf');
    expect(nginx).toMatch(/server nexus-1:7070;/);
    expect(nginx).toMatch(/server nexus-2:7070;/);
  });

  it('gives the nodes a nexus.yaml the schema accepts, with no secret in it', () => {
    const text = read('nexus.yaml');
    const config = parseConfigText(text, { baseDir: '/etc/nexus' });
    expect(config.store).toEqual({
      driver: 'postgres',
      url: 'postgres://nexus@postgres:5432/nexus',
    });
    expect(config.redis).toEqual({ url: 'redis://redis:6379/0', key_prefix: 'nexus:' });
    expect(config.proxy.public_url).toBe('http://localhost:8080');
    expect(config.master_key_file).toBe('/var/lib/nexus/.nexus/master.key');
    const password = services.postgres?.environment?.POSTGRES_PASSWORD ?? '';
    expect(password.length).toBeGreaterThan(0);
    expect(text).not.toContain(password);
  });
});
