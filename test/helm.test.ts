/**
 * The Helm chart (deploy/helm/nexus), checked without `helm` (it is neither in the npm
 * registry nor in Debian) and without a Kubernetes API server (`kubectl --dry-run=client`
 * still needs one for discovery):
 *
 * - always: values.yaml and the cluster example validate against values.schema.json
 *   (ajv), the schema refuses what it must, and the SQLite replica guard is wired in;
 * - when Go and Debian's Sprig sources are installed (`apt-get install golang-go
 *   golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev`): the templates are
 *   rendered by test/helm-render (Go text/template + Sprig + Helm's include/toYaml/
 *   required/tpl) for the default and the cluster values, every document parses as
 *   YAML, the nodes' nexus.yaml passes Nexus's own config schema, and the guard fails
 *   the render for more than one replica on SQLite. Not checked: Kubernetes' own schemas.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { parseConfigText } from '@nexus-proxy/server';
import { REPO } from './helpers/node.js';

const CHART = join(REPO, 'deploy/helm/nexus');
const GOPATH = '/usr/share/gocode';
const run = promisify(execFile);

function which(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => existsSync(join(dir, cmd)));
}
const canRender =
  which('go') &&
  existsSync(join(GOPATH, 'src/github.com/Masterminds/sprig')) &&
  existsSync(join(GOPATH, 'src/gopkg.in/yaml.v3'));

type Values = Record<string, unknown>;
const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Values;
const clusterValues = parse(
  readFileSync(join(CHART, 'values-cluster.example.yaml'), 'utf8'),
) as Values;

/** Deep merge as `helm -f` does: maps merge, anything else replaces. */
function merged(base: Values, over: Values): Values {
  const out: Values = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      typeof v === 'object' && v !== null && !Array.isArray(v) && typeof b === 'object' && b
        ? merged(b as Values, v as Values)
        : v;
  }
  return out;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')));

interface Manifest {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

/** Renders the chart with the extra values; rejects with the renderer's error text. */
async function render(extra: Values = {}): Promise<Manifest[]> {
  const dir = await mkdtemp(join(tmpdir(), 'nexus-helm-'));
  const file = join(dir, 'values.yaml');
  await writeFile(file, stringify(extra));
  const { stdout } = await run('go', ['run', join(REPO, 'test/helm-render/main.go'), CHART, file], {
    env: { ...process.env, GO111MODULE: 'off', GOPATH, GOFLAGS: '' },
    timeout: 120_000,
  });
  return parseAllDocuments(stdout).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS() as Manifest;
  });
}

const kinds = (docs: Manifest[]) => docs.map((d) => d.kind).sort();
const nodeConfig = (docs: Manifest[]) =>
  docs.find((d) => d.kind === 'ConfigMap' && !d.metadata.annotations)?.data?.['nexus.yaml'] ?? '';

describe('deploy/helm/nexus values', () => {
  it('values.yaml and the cluster example validate against values.schema.json', () => {
    expect(validate(defaults), JSON.stringify(validate.errors)).toBe(true);
    expect(validate(merged(defaults, clusterValues)), JSON.stringify(validate.errors)).toBe(true);
  });

  it('the schema refuses a password in the store URL, listeners in config, unknown keys', () => {
    expect(validate(merged(defaults, { store: 'postgres://nexus:hunter2@db/nexus' }))).toBe(false);
    expect(validate(merged(defaults, { config: { store: 'sqlite:/x' } }))).toBe(false);
    expect(validate(merged(defaults, { replicaCount: 0 }))).toBe(false);
    expect(validate(merged(defaults, { replicas: 3 }))).toBe(false);
  });

  it('every node template goes through the SQLite replica guard', () => {
    const helpers = readFileSync(join(CHART, 'templates/_helpers.tpl'), 'utf8');
    expect(helpers).toMatch(/define "nexus\.guard"[\s\S]*fail "nexus: more than one replica/);
    for (const t of ['deployment.yaml', 'configmap.yaml']) {
      expect(readFileSync(join(CHART, 'templates', t), 'utf8')).toContain(
        '{{- include "nexus.guard" . }}',
      );
    }
  });
});

describe.skipIf(!canRender)('deploy/helm/nexus rendered (Go text/template + Sprig)', () => {
  it('default values: one SQLite node on a volume, probes, non-root; no HPA, PDB or Job', async () => {
    const docs = await render();
    expect(kinds(docs)).toEqual([
      'ConfigMap',
      'Deployment',
      'NetworkPolicy',
      'PersistentVolumeClaim',
      'Service',
    ]);
    const config = parseConfigText(nodeConfig(docs), { baseDir: '/etc/nexus' });
    expect(config.store).toMatchObject({ driver: 'sqlite', path: '/var/lib/nexus/nexus.db' });
    const deployment = docs.find((d) => d.kind === 'Deployment') as Manifest;
    const spec = deployment.spec as {
      replicas: number;
      strategy: { type: string };
      template: {
        spec: {
          securityContext: { runAsNonRoot: boolean; runAsUser: number };
          containers: {
            args: string[];
            livenessProbe: { httpGet: { path: string; port: string } };
            readinessProbe: { httpGet: { path: string; port: string } };
          }[];
        };
      };
    };
    expect(spec.replicas).toBe(1);
    expect(spec.strategy.type).toBe('Recreate');
    expect(spec.template.spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
    });
    const c = spec.template.spec.containers[0];
    expect(c?.args).toEqual(['up', '--config', '/etc/nexus/nexus.yaml']);
    expect(c?.livenessProbe.httpGet).toEqual({ path: '/v1/health', port: 'admin' });
    expect(c?.readinessProbe.httpGet).toEqual({ path: '/v1/health', port: 'admin' });
  }, 180_000);

  it('cluster values: PostgreSQL and Redis, HPA, PDB and a migration Job', async () => {
    const docs = await render(clusterValues);
    expect(kinds(docs)).toEqual([
      'ConfigMap',
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'Job',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Service',
    ]);
    const config = parseConfigText(nodeConfig(docs), { baseDir: '/etc/nexus' });
    expect(config.store).toEqual({
      driver: 'postgres',
      url: 'postgres://nexus@db.internal:5432/nexus',
    });
    expect(config.redis?.url).toBe('redis://redis.internal:6379/0');
    expect(config.proxy.public_url).toBe('http://nexus.example.com');
    const deployment = docs.find((d) => d.kind === 'Deployment') as Manifest;
    // The HPA owns the replica count.
    expect(deployment.spec).not.toHaveProperty('replicas');
    const hpa = docs.find((d) => d.kind === 'HorizontalPodAutoscaler') as Manifest;
    expect(hpa.spec).toMatchObject({ minReplicas: 3, maxReplicas: 12 });
    const job = docs.find((d) => d.kind === 'Job') as Manifest;
    expect(job.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    const jobPod = (
      job.spec as {
        template: {
          metadata: { labels: Record<string, string> };
          spec: { containers: { args: string[] }[] };
        };
      }
    ).template;
    expect(jobPod.spec.containers[0]?.args).toEqual([
      'migrate',
      '--config',
      '/etc/nexus/nexus.yaml',
    ]);
    // The Service does not send traffic to the migration pod.
    const service = docs.find((d) => d.kind === 'Service') as Manifest;
    const selector = (service.spec as { selector: Record<string, string> }).selector;
    expect(Object.entries(selector).every(([k, v]) => jobPod.metadata.labels[k] === v)).toBe(false);
  }, 180_000);

  it('refuses more than one replica, or autoscaling, on SQLite', async () => {
    for (const extra of [{ replicaCount: 2 }, { autoscaling: { enabled: true } }]) {
      await expect(render(extra)).rejects.toThrow(
        /more than one replica .* needs a PostgreSQL store/,
      );
    }
    expect(kinds(await render({ store: 'postgres://n@db/n', replicaCount: 2 }))).toContain(
      'PodDisruptionBudget',
    );
  }, 180_000);
});
