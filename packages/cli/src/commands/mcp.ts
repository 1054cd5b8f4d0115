// `nexus mcp`: the command's options and help; the work is in ../mcp-stdio.ts.
import { Option, type Command } from 'commander';
import { isNexusError, safeDetail } from '@nexus-proxy/protocol';
import { adminClient, CliError } from '../admin-client.js';
import type { McpOptions } from '../mcp-stdio.js';
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
      // The MCP SDK is loaded only by this command.
      const { serveMcpStdio } = await import('../mcp-stdio.js');
      await serveMcpStdio(opts, env, warn);
    });

  mcp
    .command('discover <url>')
    .description(
      'find how an OAuth-protected MCP server wants tokens (RFC 9728, RFC 8414) and print its service entry for nexus.yaml',
    )
    .option('--name <service>', 'the service name in the printed entry', 'mcp')
    .option(
      '--write <file>',
      'add the entry to this nexus.yaml under services (comments kept; an existing service is not replaced)',
    )
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      [
        '',
        'Then, on the running node: `nexus reload`, and `nexus mcp connect NAME --principal P`',
        'registers Nexus as a client (client ID metadata document, else dynamic client',
        'registration, unless the client credential is already stored) and prints the',
        'authorize link for the account (docs/mcp.md).',
        '',
        'Example:',
        '  nexus mcp discover https://mcp.example.com/mcp --name tickets --write nexus.yaml',
      ].join('\n'),
    )
    .action(async (url: string, opts: { name: string; json?: boolean; write?: string }) => {
      const { addServiceToConfigFile, discoverMcpAuthorization } =
        await import('@nexus-proxy/server');
      const d = await discoverMcpAuthorization(url).catch((e: unknown) => {
        if (!isNexusError(e)) throw e;
        // The safe detail says what failed (no fetched content).
        throw new CliError(`${e.code}: ${safeDetail(e)}`, e.code);
      });
      if (opts.write !== undefined) {
        const entry = {
          kind: 'mcp',
          upstream: url,
          auth: {
            type: 'oauth2_authorization_code',
            credential: `${opts.name}-oauth-client`,
            authorize_url: d.authorizationEndpoint,
            token_url: d.tokenEndpoint,
            resource: d.resource,
            ...(d.scopes === undefined ? {} : { scope: d.scopes.join(' ') }),
          },
        };
        await addServiceToConfigFile(opts.write, opts.name, entry).catch((e: unknown) => {
          if (!isNexusError(e)) throw e;
          throw new CliError(`${e.code}: ${e.message}`, e.code);
        });
      }
      if (opts.json === true) {
        out(JSON.stringify(d, null, 2) + '\n');
        return;
      }
      if (opts.write !== undefined) {
        out(`services.${opts.name} added to ${opts.write}; apply it with \`nexus reload\`\n`);
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

  const configOpt = () =>
    new Option('-c, --config <file>', 'path to nexus.yaml (env: NEXUS_CONFIG)').default(
      env.NEXUS_CONFIG ?? 'nexus.yaml',
    );
  const methodOpt = () =>
    new Option(
      '--method <method>',
      'registration: cimd (client ID metadata document) or dcr (dynamic client registration); default: cimd when the server accepts it, else dcr',
    ).choices(['cimd', 'dcr']);

  interface Registered {
    method: string;
    client_id: string;
    issuer: string;
    credential: string;
  }
  const register = (
    client: Awaited<ReturnType<typeof adminClient>>,
    service: string,
    opts: { method?: string; replace?: boolean },
  ) =>
    client.request<Registered>('POST', `/v1/mcp/${encodeURIComponent(service)}/registration`, {
      ...(opts.method === undefined ? {} : { method: opts.method }),
      replace: opts.replace === true,
    });

  mcp
    .command('register <service>')
    .description(
      "register Nexus as an OAuth client of a kind: mcp service's authorization server and store the client credential in the vault",
    )
    .addOption(configOpt())
    .addOption(methodOpt())
    .option('--replace', 'register again, replacing the stored client credential')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      [
        '',
        'Pre-registered client instead: `nexus credential set NAME-oauth-client` with client_id and',
        'client_secret (and token_endpoint_auth_method: none for a public client).',
        '',
        'Example:',
        '  nexus mcp register tickets',
      ].join('\n'),
    )
    .action(
      async (
        service: string,
        opts: { config: string; method?: string; replace?: boolean; json?: boolean },
      ) => {
        const client = await adminClient(opts.config, env);
        const r = await register(client, service, opts);
        if (opts.json === true) out(JSON.stringify(r, null, 2) + '\n');
        else
          out(
            `registered with ${r.issuer} (${r.method}); client_id ${r.client_id}; stored as credential ${r.credential}\n`,
          );
      },
    );

  mcp
    .command('connect <service>')
    .description(
      "connect a principal's account to a kind: mcp OAuth service: registers Nexus as a client if no client credential is stored, then prints a one-time authorize link",
    )
    .addOption(configOpt())
    .requiredOption(
      '-p, --principal <principal>',
      "whose account: an agent's act principal, or an agent name",
    )
    .addOption(methodOpt())
    .option('--json', 'JSON output')
    .addHelpText('after', '\nExample:\n  nexus mcp connect tickets --principal alice@example.com\n')
    .action(
      async (
        service: string,
        opts: { config: string; principal: string; method?: string; json?: boolean },
      ) => {
        const client = await adminClient(opts.config, env);
        let registered: Registered | undefined;
        try {
          registered = await register(client, service, { method: opts.method });
        } catch (e) {
          // A stored client credential (an earlier registration or a pre-registered client).
          if (!(e instanceof CliError && e.code === 'conflict')) throw e;
        }
        const r = await client.request<{ authorize_url: string; state_expires_at: string }>(
          'POST',
          `/v1/connections/${encodeURIComponent(service)}`,
          { principal: opts.principal },
        );
        if (opts.json === true) {
          out(JSON.stringify({ ...r, registration: registered ?? null }, null, 2) + '\n');
          return;
        }
        out(
          `${r.authorize_url}\n(open in a browser as ${opts.principal}; single use, expires ${r.state_expires_at})\n`,
        );
        if (registered !== undefined) {
          warn(`registered with ${registered.issuer} (${registered.method})`);
        }
      },
    );
}
