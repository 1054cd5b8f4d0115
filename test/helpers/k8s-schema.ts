/**
 * Validates Kubernetes manifests against Kubernetes' own API schemas, as carried by the
 * `kubernetes-models` package (generated from Kubernetes' OpenAPI spec), strictly as
 * `kubectl apply --validate=strict` would, without an API server:
 *
 * - each document's apiVersion/kind must be a built-in kind that the package knows (an
 *   unknown kind is a problem, not a skip), in a GA version: the package also keeps
 *   alpha and beta versions that current clusters no longer serve (apps/v1beta1...);
 * - the package's compiled JSON-schema validator (ajv) checks required fields, types
 *   (a string where an integer is required...), int32/int64 ranges and formats;
 * - unknown fields: that validator lets them through (its schemas carry no
 *   `additionalProperties: false`), so every document is also type-checked by the
 *   TypeScript compiler against the package's generated interface for its kind
 *   (`IDeployment`...): the excess-property check refuses, at any depth, a field that
 *   the schema does not name. A `null` field counts as absent, as for the API server.
 *
 * Not checked (the API server's own validation, beyond the schema): cross-field rules,
 * name formats, quantities' grammar, immutability.
 */
import { join } from 'node:path';
import ts from 'typescript';
import { REPO } from './node.js';

/** A parsed manifest document (YAML `toJS()`). */
export type K8sDocument = Record<string, unknown>;

interface KindModel {
  apiVersion?: unknown;
  kind?: unknown;
  new (data: unknown): { validate(): void };
}

// GA versions only (`v1`, `apps/v1`, `autoscaling/v2`...).
const GROUP_VERSION = /^([a-z0-9]+(\.[a-z0-9-]+)*\/)?v[0-9]+$/;
const KIND = /^[A-Z][A-Za-z0-9]*$/;

function label(doc: K8sDocument, i: number): string {
  const meta = doc.metadata as { name?: unknown } | undefined;
  return `document ${i} (${String(doc.kind)} ${String(meta?.name ?? '?')})`;
}

/** The model class of a built-in kind, or undefined when the package has none. */
async function modelOf(apiVersion: unknown, kind: unknown): Promise<KindModel | undefined> {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined;
  if (!GROUP_VERSION.test(apiVersion) || !KIND.test(kind)) return undefined;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const model = mod[kind] as KindModel | undefined;
  // The package also exports nested types (DeploymentSpec...) by name: only a kind
  // carries its own apiVersion and kind.
  return typeof model === 'function' && model.apiVersion === apiVersion && model.kind === kind
    ? model
    : undefined;
}

// The TypeScript check: one virtual module, `export const d0: IKind = {...}` per document.
const VIRTUAL = join(REPO, 'test', '.k8s-schema-check.ts');
const OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es5.d.ts'],
  types: [],
};
// Parsed declaration files, kept across calls: a second check only type-checks.
const parsed = new Map<string, ts.SourceFile>();
let previous: ts.Program | undefined;

function typeCheck(source: string): { program: ts.Program; file: ts.SourceFile } {
  const host = ts.createCompilerHost(OPTIONS);
  const file = ts.createSourceFile(VIRTUAL, source, ts.ScriptTarget.ES2022, true);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (name) => name === VIRTUAL || fileExists.call(host, name);
  host.readFile = (name) => (name === VIRTUAL ? source : readFile.call(host, name));
  host.getSourceFile = (name, lang, onError) => {
    if (name === VIRTUAL) return file;
    let sf = parsed.get(name);
    if (!sf) {
      sf = getSourceFile.call(host, name, lang, onError);
      if (sf) parsed.set(name, sf);
    }
    return sf;
  };
  const program = ts.createProgram([VIRTUAL], OPTIONS, host, previous);
  previous = program;
  return { program, file };
}

/** The JSON path (`spec.template.spec.containers[0]`) of the innermost node at `pos`. */
function pathAt(node: ts.Node, pos: number, file: ts.SourceFile): string {
  let path = '';
  for (;;) {
    let next: ts.Node | undefined;
    ts.forEachChild(node, (child) => {
      if (!next && child.getStart(file) <= pos && pos < child.getEnd()) next = child;
    });
    if (!next) return path;
    if (ts.isArrayLiteralExpression(node))
      path += `[${node.elements.indexOf(next as ts.Expression)}]`;
    if (ts.isPropertyAssignment(next) && ts.isStringLiteral(next.name)) {
      path += (path ? '.' : '') + next.name.text;
    }
    node = next;
  }
}

/**
 * The problems of each document against Kubernetes' schema for its apiVersion/kind, one
 * line each (`document 2 (Job x) spec.backoffLimit: ...`); empty when all pass.
 */
export async function k8sProblems(docs: K8sDocument[]): Promise<string[]> {
  const problems: string[] = [];
  const checked: { index: number; kind: string; apiVersion: string }[] = [];
  for (const [i, doc] of docs.entries()) {
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      problems.push(`document ${i}: not an object`);
      continue;
    }
    const model = await modelOf(doc.apiVersion, doc.kind);
    if (!model) {
      problems.push(
        `${label(doc, i)}: unknown apiVersion/kind ${String(doc.apiVersion)}/${String(doc.kind)}` +
          ' (built-in kinds in GA versions only)',
      );
      continue;
    }
    try {
      new model(doc).validate();
    } catch (err) {
      problems.push(`${label(doc, i)}: ${(err as Error).message}`);
    }
    checked.push({ index: i, kind: doc.kind as string, apiVersion: doc.apiVersion as string });
  }
  if (checked.length === 0) return problems;

  const lines: string[] = [];
  for (const { index, kind, apiVersion } of checked) {
    const body = JSON.stringify(docs[index], (_k, v: unknown) => (v === null ? undefined : v));
    lines.push(
      `import type { I${kind} as T${index} } from 'kubernetes-models/${apiVersion}/${kind}';`,
      `export const d${index}: T${index} = ${body};`,
    );
  }
  const { program, file } = typeCheck(lines.join('\n'));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (d.file !== file || d.start === undefined) {
      problems.push(`TypeScript: ${text}`);
      continue;
    }
    const pos = d.start;
    const decl = file.statements
      .filter(ts.isVariableStatement)
      .flatMap((s) => s.declarationList.declarations)
      .find((v) => v.getStart(file) <= pos && pos < v.getEnd());
    const index = decl && ts.isIdentifier(decl.name) ? Number(decl.name.text.slice(1)) : NaN;
    const doc = docs[index];
    const where = doc && decl?.initializer ? pathAt(decl.initializer, pos, file) : '';
    problems.push(`${doc ? label(doc, index) : 'TypeScript'}${where ? ` ${where}` : ''}: ${text}`);
  }
  return problems;
}
