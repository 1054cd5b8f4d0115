// nexus-proxy: the `nexus` command (bin/nexus.js). Exposed for tests and embedding.
export { main, buildProgram } from './main.js';
