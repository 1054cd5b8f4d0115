// nginx as a reverse proxy injecting a static Authorization header: writes a config into a
// temporary directory and starts `nginx -g 'daemon off;'` as a tracked child.
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess, sleep } from './common.mjs';

export async function startNginx({ port, upstreamPort }) {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-nginx-'));
  mkdirSync(join(dir, 'tmp'));
  const conf = `
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  client_max_body_size 16m;
  client_body_buffer_size 2m;
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-static-token-0123456789abcdef";
    }
  }
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const proc = await startProcess('nginx', ['-p', dir, '-c', confPath, '-g', 'daemon off;'], {
    name: 'nginx',
  });
  await sleep(500);
  if (proc.child.exitCode !== null) throw new Error(`nginx exited: ${proc.output()}`);
  return proc;
}
