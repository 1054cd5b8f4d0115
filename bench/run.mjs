// Bench entry: runs every registered scenario, or one with `--only NAME`.
// To add a scenario: write bench/<name>.mjs exporting `name` and `async run()`, and list
// it in SCENARIOS below. Run with `npm run bench` (builds first).
const SCENARIOS = [
  './protocol.mjs',
  './redactor.mjs',
  './paths.mjs',
  './growth.mjs',
  './audit.mjs',
  './threads.mjs',
  './profile.mjs',
  './reach.mjs',
  './websocket.mjs',
  './cluster.mjs',
  './workers.mjs',
];

const args = process.argv.slice(2);
const onlyIndex = args.indexOf('--only');
const only = onlyIndex >= 0 ? args[onlyIndex + 1] : undefined;

const modules = [];
for (const path of SCENARIOS) modules.push(await import(path));
const selected = only ? modules.filter((m) => m.name === only) : modules;
if (selected.length === 0) {
  console.error(`unknown scenario ${only}; known: ${modules.map((m) => m.name).join(', ')}`);
  process.exit(2);
}
for (const scenario of selected) {
  console.log(`# ${scenario.name}`);
  await scenario.run();
}
