#!/usr/bin/env node
// `npm run demo`: a one-command tour of Nexus in a temporary directory. It starts a local
// upstream that echoes what it receives, initialises and starts a Nexus node on SQLite,
// stores a credential, hands an agent a one-time enrollment token, runs it through
// `nexus run -- curl` from a directory of its own (agent rights only: no operator token,
// no key), shows an allowed call, a denied call, that the agent never saw the secret, and
// the verified audit trail.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const bin = join(repo, 'packages/cli/bin/nexus.js');
const SECRET = `demo-secret-${Math.random().toString(36).slice(2)}-do-not-leak`;

const bold = (s) => (process.stdout.isTTY ? `\u001b[1m${s}\u001b[0m` : s);
const step = (n, s) => console.log(`\n${bold(`${n}. ${s}`)}`);

function freePort() {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Async on purpose: the demo's upstream lives in this process and must keep answering.
function nexus(args, { input, env, cwd } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: cwd ?? dir,
      env: { ...process.env, ...env },
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
    child.stdin.end(input ?? '');
  });
}

// 1. A local upstream that records the Authorization header it receives.
const seen = [];
const upstream = createServer((req, res) => {
  seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
  res.setHeader('content-type', 'application/json');
  // A hostile upstream: it echoes the credential back, plainly and base64-encoded.
  res.end(
    JSON.stringify({
      you_sent: req.headers.authorization,
      base64: Buffer.from(req.headers.authorization ?? '').toString('base64'),
    }) + '\n',
  );
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

const dir = mkdtempSync(join(tmpdir(), 'nexus-demo-'));
// The agent's side: a directory of its own, apart from the node's state in `dir`.
const agentDir = mkdtempSync(join(tmpdir(), 'nexus-demo-agent-'));
let node;
let failed = false;
try {
  step(1, `nexus init in ${dir}`);
  const init = await nexus(['init', '--dir', dir]);
  if (init.code !== 0) throw new Error(init.out);
  console.log(init.out.replace(/nxo_[A-Za-z0-9_-]+/, 'nxo_…(hidden in the demo)'));
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const config = readFileSync(join(dir, 'nexus.yaml'), 'utf8')
    .replaceAll('127.0.0.1:7070', `127.0.0.1:${proxyPort}`)
    .replaceAll('127.0.0.1:7071', `127.0.0.1:${adminPort}`)
    .replace('http://127.0.0.1:8080', upstreamUrl)
    .replace('level: info', 'level: warn');
  writeFileSync(join(dir, 'nexus.yaml'), config);
  console.log(`   config: service "echo" -> ${upstreamUrl}, agent "demo-agent" may GET /**`);

  step(2, 'nexus up (SQLite, no other service)');
  node = spawn(process.execPath, [bin, 'up'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let log = '';
    node.stdout.on('data', (c) => {
      log += c;
      if (log.includes('admin API listening')) resolve();
    });
    node.once('exit', (code) => reject(new Error(`nexus up exited with ${code}`)));
  });
  console.log(
    `   proxy and Authority on http://127.0.0.1:${proxyPort}, admin API on http://127.0.0.1:${adminPort}`,
  );

  step(3, 'nexus credential set echo-token   (value from stdin, never an argument)');
  console.log(
    '   ' + (await nexus(['credential', 'set', 'echo-token'], { input: SECRET })).out.trim(),
  );

  // The operator hands the agent a one-time enrollment token; `nexus run` spends it before
  // the command starts and never holds the operator token or a key of the node.
  const authority = `http://127.0.0.1:${proxyPort}`;
  const runAsAgent = async (args) => {
    const token = (await nexus(['agent', 'enroll', 'demo-agent'])).out.split('\n')[0].trim();
    if (!token.startsWith('nxe_')) throw new Error('nexus agent enroll failed');
    return nexus(['run', '--authority', authority, ...args], {
      cwd: agentDir,
      env: { NEXUS_ENROLLMENT_TOKEN: token },
    });
  };

  step(
    4,
    'An allowed call: NEXUS_ENROLLMENT_TOKEN=$(nexus agent enroll demo-agent) nexus run -- curl $NEXUS_PROXY/echo/hello',
  );
  const allowed = await runAsAgent([
    '--intent',
    'demo: say hello',
    '--',
    'sh',
    '-c',
    'curl -s -w "   HTTP %{http_code}\\n" "$NEXUS_PROXY/echo/hello"',
  ]);
  console.log('   agent saw: ' + allowed.out.trim());
  console.log(
    `   upstream received: Authorization: ${seen.at(-1)?.authorization?.replace(SECRET, '<the real secret>')}`,
  );

  step(5, 'A denied call: DELETE is not in the policy');
  const denied = await runAsAgent([
    '--',
    'sh',
    '-c',
    'curl -s -X DELETE "$NEXUS_PROXY/echo/hello"; echo',
  ]);
  console.log('   agent saw: ' + denied.out.trim());
  console.log(`   upstream requests so far: ${seen.length} (the DELETE never left Nexus)`);

  step(6, 'Proof: the agent never saw the secret');
  const forms = [
    SECRET,
    Buffer.from(SECRET).toString('base64'),
    Buffer.from(`Bearer ${SECRET}`).toString('base64'),
  ];
  const leaked = forms.filter((f) => (allowed.out + denied.out).includes(f));
  console.log(
    leaked.length === 0
      ? '   no form of the secret in anything the agent received'
      : `   LEAK: ${leaked}`,
  );
  if (leaked.length > 0) failed = true;

  step(7, 'The audit trail: nexus audit query');
  console.log((await nexus(['audit', 'query', '--limit', '10'])).out.replace(/^/gm, '   '));

  step(8, 'nexus audit verify   (hash chain and signed checkpoints)');
  node.kill('SIGTERM');
  await new Promise((r) => node.once('exit', r));
  node = undefined;
  const verify = await nexus(['audit', 'verify']);
  console.log('   ' + verify.out.trim());
  if (verify.code !== 0) failed = true;
  console.log(`\nDone. The node's files are in ${dir}.`);
} catch (err) {
  failed = true;
  console.error(`demo failed: ${err.message}`);
} finally {
  node?.kill('SIGTERM');
  upstream.close();
}
process.exitCode = failed ? 1 : 0;
