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
 *   required/tpl) for the default and the cluster values, and for value sets that take
 *   every optional branch; every document parses as YAML and validates strictly against
 *   Kubernetes' own schema for its apiVersion/kind (test/helpers/k8s-schema.ts, the
 *   schemas of `kubernetes-models`: unknown fields, wrong types, missing required fields
 *   and unknown kinds are refused, as `kubectl apply --validate=strict` would); the
 *   nodes' nexus.yaml passes Nexus's own config schema, and the guard fails the render
 *   for more than one replica on SQLite. Not checked: the API server's own validation
 *   beyond the schema (cross-field rules, name formats), and an install on a cluster.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { parseConfigText } from '@nexus-proxy/server';
import { k8sProblems, type K8sDocument } from './helpers/k8s-schema.js';
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

let work: Promise<{ dir: string; bin: string }> | undefined;

/** The renderer, built once per run (`go run` would link it again for every render). */
function renderer(): Promise<{ dir: string; bin: string }> {
  work ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nexus-helm-'));
    const bin = join(dir, 'helm-render');
    await run('go', ['build', '-o', bin, join(REPO, 'test/helm-render/main.go')], {
      env: { ...process.env, GO111MODULE: 'off', GOPATH, GOFLAGS: '' },
      timeout: 120_000,
    });
    return { dir, bin };
  })();
  return work;
}
afterAll(async () => {
  if (work) await rm((await work).dir, { recursive: true, force: true });
});

let renders = 0;
const cache = new Map<string, Promise<Manifest[]>>();

/**
 * Renders the chart with the extra values, as release `release`; rejects with the
 * renderer's error text. Every document must parse and pass Kubernetes' schema for its
 * apiVersion/kind. The same values render once.
 */
function render(extra: Values = {}, release = 'test'): Promise<Manifest[]> {
  const key = JSON.stringify([extra, release]);
  let docs = cache.get(key);
  if (!docs) {
    docs = renderNow(extra, release);
    cache.set(key, docs);
  }
  return docs.then((d) => structuredClone(d));
}

async function renderNow(extra: Values, release: string): Promise<Manifest[]> {
  const { dir, bin } = await renderer();
  const file = join(dir, `values-${++renders}.yaml`);
  await writeFile(file, stringify(extra));
  const { stdout } = await run(bin, ['-name', release, CHART, file], { timeout: 60_000 });
  // YAML 1.1, as Helm reads manifests (sigs.k8s.io/yaml): `yes` is a boolean there.
  const docs = parseAllDocuments(stdout, { version: '1.1' }).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS() as Manifest;
  });
  expect(await k8sProblems(docs as unknown as K8sDocument[])).toEqual([]);
  return docs;
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
  it('every optional branch renders to manifests that pass Kubernetes schemas', async () => {
    const scheduling = {
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'nexus', effect: 'NoSchedule' }],
      affinity: {
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 100,
              podAffinityTerm: {
                topologyKey: 'kubernetes.io/hostname',
                labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'nexus' } },
              },
            },
          ],
        },
      },
    };
    const sqlite = await render({
      ...scheduling,
      image: { pullPolicy: 'Always' },
      service: { type: 'LoadBalancer' },
      persistence: { size: '5Gi', storageClass: 'fast-ssd' },
      networkPolicy: {
        proxyFrom: [
          { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress' } } },
        ],
      },
    });
    const pvc = sqlite.find((d) => d.kind === 'PersistentVolumeClaim') as Manifest;
    expect(pvc.spec).toMatchObject({ storageClassName: 'fast-ssd' });
    const podSpec = (d: Manifest[]) =>
      (
        (d.find((m) => m.kind === 'Deployment') as Manifest).spec as {
          template: { spec: Record<string, unknown> };
        }
      ).template.spec;
    expect(podSpec(sqlite)).toMatchObject(scheduling);

    const postgres = await render({
      store: 'postgres://n@db/n',
      replicaCount: 2,
      podDisruptionBudget: { minAvailable: '50%' },
      migration: { enabled: false },
      networkPolicy: { enabled: false },
    });
    expect(kinds(postgres)).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service']);
  }, 180_000);

  it('names that YAML would read as numbers stay strings (release, Secret, storage class)', async () => {
    // Valid Kubernetes names, but unquoted in a template they become integers, which
    // Kubernetes refuses where a string is required (labels, secretRef.name...).
    const docs = await render(
      { secrets: { existingSecret: '2024' }, persistence: { storageClass: '1' } },
      '1234',
    );
    const deployment = docs.find((d) => d.kind === 'Deployment') as Manifest;
    expect(deployment.metadata).toMatchObject({
      labels: { 'app.kubernetes.io/instance': '1234' },
    });
    const clusterDocs = await render(
      { ...clusterValues, secrets: { existingSecret: '2024' } },
      '1234',
    );
    const job = clusterDocs.find((d) => d.kind === 'Job') as Manifest;
    expect(JSON.stringify(job.spec)).toContain('"name":"2024"');
  }, 180_000);

  it('the Kubernetes schema check refuses unknown fields, wrong types and unknown kinds', async () => {
    // These pass (render checks them); each copy below differs in one field.
    const docs = (await render(clusterValues)) as unknown as K8sDocument[];
    type Node = Record<string | number, unknown>;
    // [kind of the document changed, path of the field, new value (undefined: deleted),
    //  the problem expected]
    const cases: [string, (string | number)[], unknown, RegExp][] = [
      // A misspelt field deep in the pod template (the JSON schema alone lets it through).
      [
        'Deployment',
        ['spec', 'template', 'spec', 'containers', 0, 'readinessProbe', 'periodSecond'],
        5,
        /spec\.template\.spec\.containers\[0\]\.readinessProbe\.periodSecond: .*'"periodSecond"' does not exist in type 'IProbe'/,
      ],
      [
        'PodDisruptionBudget',
        ['spec', 'maxUnavialable'],
        1,
        /spec\.maxUnavialable: .*does not exist/,
      ],
      // A string where an integer is required.
      ['Job', ['spec', 'backoffLimit'], '3', /backoffLimit must be integer/],
      // A required field missing.
      ['Deployment', ['spec', 'selector'], undefined, /must have required property selector/],
      // An unknown kind, and a beta version that current clusters no longer serve.
      ['HorizontalPodAutoscaler', ['kind'], 'HorizontalPodAutoscalar', /unknown apiVersion\/kind/],
      ['Deployment', ['apiVersion'], 'apps/v1beta1', /unknown apiVersion\/kind apps\/v1beta1\//],
    ];
    // One mutated copy per case, all checked at once (one TypeScript program).
    const mutants = cases.map(([kind, path, value]) => {
      const doc = structuredClone(docs.find((d) => d.kind === kind)) as Node;
      let node = doc;
      for (const key of path.slice(0, -1)) node = node[key] as Node;
      const last = path[path.length - 1] as string | number;
      if (value === undefined) delete node[last];
      else node[last] = value;
      return doc;
    });
    const problems = await k8sProblems(mutants);
    for (const [i, [kind, path, , expected]] of cases.entries()) {
      const mine = problems.filter((p) => p.startsWith(`document ${i} (`));
      expect(
        mine.some((p) => expected.test(p)),
        `${kind} ${path.join('.')}: ${mine.join('\n')}`,
      ).toBe(true);
    }
  }, 180_000);
});
