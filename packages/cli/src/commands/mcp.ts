// `nexus mcp`: the command's options and help; the work is in ../mcp-stdio.ts.
import { Option, type Command } from 'commander';
import { isNexusError, safeDetail } from '@nexus-proxy/protocol';
import { discoverMcpAuthorization } from '@nexus-proxy/server';
import { CliError } from '../admin-client.js';
import { serveMcpStdio, type McpOptions } from '../mcp-stdio.js';
import { DEFAULT_AUTHORITY } from '../run.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Adds `nexus mcp` to the program. */
export function registerMcp(
  program: Command,
  env: Env,
  warn: (line: string) => void,
  out: (text: string) => void,
): void {
  const mcp = program
    .command('mcp')
    .description(
      'serve MCP on stdio for a client that launches MCP servers, reaching MCP services through Nexus with agent rights only',
    )
    .option(
      '-s, --service <name>',
      'an MCP service (kind: mcp) to reach (repeatable: several are offered as {service}__{tool})',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--authority <url>',
      `the Authority URL (default: $NEXUS_AUTHORITY, the enrollment file's, else ${DEFAULT_AUTHORITY})`,
    )
    .option(
      '--enrollment-file <file>',
      'read the enrollment token from this file (`nexus agent enroll NAME -o FILE`); default: $NEXUS_ENROLLMENT_TOKEN',
    )
    .option('-a, --agent <name>', 'refuse to run unless the token is for this agent')
    .option('-i, --intent <text>', 'the intent of every message (default: "{method} {name}")')
    .option(
      '--intent-arg <name>',
      'add this optional argument to every tool, for the model to say why it calls it; its value is the call intent (removed before the call is sent)',
    )
    .addOption(
      new Option('--key <alg>', 'agent key algorithm')
        .choices(['ed25519', 'ecdsa-p256'])
        .default('ed25519'),
    )
    .addHelpText(
      'after',
      [
        '',
        'stdout carries MCP messages only. The lease key stays in this process; the lease is',
        'revoked when the client closes stdin.',
        '',
        'Example (an MCP client config entry):',
        '  { "command": "nexus", "args": ["mcp", "--service", "github-mcp", "--intent-arg", "why"],',
        '    "env": { "NEXUS_ENROLLMENT_TOKEN": "nxe_...", "NEXUS_AUTHORITY": "http://127.0.0.1:7070" } }',
      ].join('\n'),
    )
    .action(async (opts: McpOptions) => {
      await serveMcpStdio(opts, env, warn);
    });

  mcp
    .command('discover <url>')
    .description(
      'find how an OAuth-protected MCP server wants tokens (RFC 9728, RFC 8414) and print its service entry for nexus.yaml',
    )
    .option('--name <service>', 'the service name in the printed entry', 'mcp')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      [
        '',
        'Registration is not automatic yet: register a client at the reported registration',
        'endpoint (or with the provider), store it with `nexus credential set`, then connect an',
        'account as for any oauth2_authorization_code service (docs/mcp.md).',
        '',
        'Example:',
        '  nexus mcp discover https://mcp.example.com/mcp --name tickets >> snippet.yaml',
      ].join('\n'),
    )
    .action(async (url: string, opts: { name: string; json?: boolean }) => {
      const d = await discoverMcpAuthorization(url).catch((e: unknown) => {
        if (!isNexusError(e)) throw e;
        // The safe detail says what failed (no fetched content).
        throw new CliError(`${e.code}: ${safeDetail(e)}`, e.code);
      });
      if (opts.json === true) {
        out(JSON.stringify(d, null, 2) + '\n');
        return;
      }
      // JSON strings are YAML strings: every value is quoted, whatever it holds.
      const q = (v: string) => JSON.stringify(v);
      const lines = [
        `${opts.name}:`,
        '  kind: mcp',
        `  upstream: ${q(url)}`,
        '  auth:',
        '    type: oauth2_authorization_code',
        `    credential: ${q(`${opts.name}-oauth-client`)}`,
        `    authorize_url: ${q(d.authorizationEndpoint)}`,
        `    token_url: ${q(d.tokenEndpoint)}`,
        `    resource: ${q(d.resource)}`,
        ...(d.scopes === undefined ? [] : [`    scope: ${q(d.scopes.join(' '))}`]),
      ];
      out(
        [
          `# ${url}: protected resource metadata ${d.resourceMetadataUrl}`,
          `# authorization server ${d.issuer}`,
          d.registrationEndpoint === undefined
            ? '# no dynamic client registration: register a client with the provider'
            : `# dynamic client registration: ${d.registrationEndpoint}`,
          ...(d.clientIdMetadataDocuments
            ? ['# the server accepts client ID metadata documents']
            : []),
          '# under services:',
          ...lines,
          '',
        ].join('\n'),
      );
    });
}
