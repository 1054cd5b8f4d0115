#!/usr/bin/env node
// The `nexus` command. Built output lives in dist/ (`npm ci` builds it via `prepare`).
import { main } from '../dist/main.js';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`nexus: ${err?.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
