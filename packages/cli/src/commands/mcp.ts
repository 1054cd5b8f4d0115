// `nexus mcp`: the command's options and help; the work is in ../mcp-stdio.ts.
import { Option, type Command } from 'commander';
import { serveMcpStdio, type McpOptions } from '../mcp-stdio.js';
import { DEFAULT_AUTHORITY } from '../run.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Adds `nexus mcp` to the program. */
export function registerMcp(program: Command, env: Env, warn: (line: string) => void): void {
  program
    .command('mcp')
    .description(
      'serve MCP on stdio for a client that launches MCP servers, reaching MCP services through Nexus with agent rights only',
    )
    .requiredOption(
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
}
