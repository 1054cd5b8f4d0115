#!/usr/bin/env node
// The `nexus` command. Built output lives in dist/ (`npm ci` builds it via `prepare`).
import { readFileSync } from 'node:fs';

// A reader that goes away (`nexus audit query | head`) is not an error: stop quietly,
// without a stack trace, as other command-line tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err?.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  // Answered before the CLI and the server are loaded (they take most of a second).
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  const { main } = await import('../dist/main.js');
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`nexus: ${err?.message ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
