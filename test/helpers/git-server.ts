/**
 * A loopback Git smart-HTTP server for end-to-end tests: `git http-backend` (CGI) behind a
 * node:http server that demands HTTP Basic credentials and records the Authorization it
 * received, so a test can show that the real credential reached it and the agent never
 * held it. One bare repository, `repo.git`, with one commit, pushes allowed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GitServer {
  readonly url: string;
  readonly root: string;
  /** Authorization fields received, in order. */
  readonly authorizations: (string | undefined)[];
  /** `git log --format=%s` of the bare repository. */
  log(): string[];
  close(): Promise<void>;
}

const HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

function git(args: string[], cwd: string): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@t',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@t',
    },
  });
}

export async function startGitServer(expected: {
  user: string;
  password: string;
}): Promise<GitServer> {
  const root = await mkdtemp(join(tmpdir(), 'nexus-git-'));
  const work = join(root, 'seed');
  git(['init', '-q', '-b', 'main', work], root);
  await writeFile(join(work, 'README'), 'hello\n');
  git(['add', 'README'], work);
  git(['commit', '-q', '-m', 'seed'], work);
  git(['clone', '-q', '--bare', work, join(root, 'repo.git')], root);
  git(['config', 'http.receivepack', 'true'], join(root, 'repo.git'));

  const want = `Basic ${Buffer.from(`${expected.user}:${expected.password}`).toString('base64')}`;
  const authorizations: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    authorizations.push(req.headers.authorization);
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const cgi = spawn(HTTP_BACKEND, [], {
      env: {
        PATH: process.env.PATH ?? '',
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: expected.user,
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-encoding'] === undefined
          ? {}
          : { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] }),
        ...(req.headers['git-protocol'] === undefined
          ? {}
          : { GIT_PROTOCOL: String(req.headers['git-protocol']) }),
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const crlf = head.indexOf('\r\n\r\n');
      const lf = head.indexOf('\n\n');
      const end = crlf !== -1 && (lf === -1 || crlf < lf) ? crlf : lf;
      if (end === -1) return;
      const sep = end === crlf ? 4 : 2;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim().toLowerCase();
        const v = line.slice(i + 1).trim();
        if (k === 'status') status = Number.parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + sep));
    });
    cgi.stdout.on('end', () => res.end());
    cgi.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    root,
    authorizations,
    log: () => git(['log', '--format=%s', 'main'], join(root, 'repo.git')).trim().split('\n'),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
