/**
 * The `nexus` command line. Every operator command takes `--config FILE` (default
 * ./nexus.yaml); commands that talk to a running node find its admin listener in that file
 * and the operator token in NEXUS_OPERATOR_TOKEN or `.nexus/operator.token` beside it.
 * `nexus run` (run.ts) is the agent's side: an enrollment token and the Authority URL only.
 *
 * This file and the config loader are the only readers of `process.env`.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { chmod, mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { Config } from '@nexus-proxy/server/config';
import { adminClient, configFrom, CliError, operatorTokenPath } from './admin-client.js';
import { DEFAULT_AUTHORITY, enrollmentFileJson, runAsAgent } from './run.js';
import { registerMcp } from './commands/mcp.js';
import { registerCompletion } from './commands/completion.js';
import { reloadDiffText } from './commands/reload-diff.js';
import { startEchoServer } from './echo-server.js';
import { readStdin, parseFields } from './input.js';
import { printTable } from './output.js';
import { formatDoctor, runDoctor } from './doctor.js';

/**
 * The whole server (proxy, stores and their drivers): loaded only by the commands that
 * need it, so that `nexus run`, `agent enroll` and the other admin commands start in about
 * half the time (they need the config loader alone: `@nexus-proxy/server/config`).
 */
const server = () => import('@nexus-proxy/server');

type Env = Readonly<Record<string, string | undefined>>;

const EXAMPLES: Record<string, string> = {};
function example(cmd: Command, text: string): Command {
  EXAMPLES[cmd.name()] = text;
  return cmd.addHelpText('after', `\nExample:\n  ${text.split('\n').join('\n  ')}\n`);
}

/** `--workers`: a number from 1 to 256, or `auto` (the number of cores). */
function workerCount(text: string): number {
  if (text === 'auto') return availableParallelism();
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < 1 || n > 256) {
    throw new CliError('--workers must be a number from 1 to 256, or auto');
  }
  return n;
}

function parseTtl(text: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (m === null) throw new CliError(`invalid duration "${text}" (use e.g. 90s, 10m, 1h)`);
  const mult = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * mult;
}

/** Builds the program; `env` and output streams are injected for tests. */
export function buildProgram(
  env: Env,
  out: (s: string) => void,
  err: (s: string) => void = (s) => process.stderr.write(s),
): Command {
  const program = new Command('nexus')
    .description('Nexus: agent identity and connection orchestration')
    .version('0.1.0')
    // Program options (-V, -h) only before the command: after it, `-V...` would be read as
    // --version anywhere, so `nexus lease revoke -VxY...` (a lease id, one in 4096) printed
    // the version and exited 0 without revoking anything.
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .exitOverride()
    .addHelpText(
      'after',
      [
        '',
        'Operator commands read nexus.yaml (--config, else $NEXUS_CONFIG, else ./nexus.yaml) for',
        'the admin API address (NEXUS_ADDR overrides it, e.g. http://10.0.0.5:7071) and the',
        'operator token from NEXUS_OPERATOR_TOKEN or .nexus/operator.token beside the config',
        '(written by `nexus init`); with NEXUS_ADDR and NEXUS_OPERATOR_TOKEN set, commands that',
        'call the admin API need no config file. --json gives machine output (snake_case keys).',
        '`nexus up` reads the vault master key from NEXUS_MASTER_KEY (base64 of 32 bytes, or',
        '"v2:<base64>,v1:<base64>" for several versions) or from the key file (master_key_file, default .nexus/master.key), and',
        'refuses key files or a store that other users can read.',
        '',
        'Agents are another trust domain: `nexus run` needs only a one-time enrollment token',
        '(`nexus agent enroll NAME`) and the Authority URL, never the operator token or keys.',
        '',
        'Example:',
        '  nexus init --dir ./my-nexus && nexus up --config ./my-nexus/nexus.yaml',
        '  nexus <command> --help   (every command has an example)',
        '',
      ].join('\n'),
    );

  // NEXUS_CONFIG names the config file for every command that takes --config.
  const configOption = (): Option =>
    new Option('-c, --config <file>', 'path to nexus.yaml (env: NEXUS_CONFIG)').default(
      env.NEXUS_CONFIG ?? 'nexus.yaml',
    );

  const print = (value: unknown, json: boolean, human: () => void): void => {
    if (json) out(JSON.stringify(value, null, 2) + '\n');
    else human();
  };

  // ---- init / up ------------------------------------------------------------------------
  example(
    program
      .command('init')
      .description('create nexus.yaml, keys, the master key and the first operator token')
      .option('-d, --dir <dir>', 'directory to initialise', '.')
      .option('--force', 'overwrite an existing nexus.yaml')
      .option('--listen <host:port>', 'proxy and Authority listen address (proxy.listen)')
      .option('-p, --port <port>', 'proxy port on 127.0.0.1 (the admin API takes the next one)')
      .option(
        '--admin-listen <host:port>',
        "admin API listen address (admin.listen; default: the proxy's host, its port + 1)",
      )
      .option(
        '--store <url>',
        'the store to create: sqlite:<path> (default sqlite:.nexus/nexus.db) or postgres://user@host/db (an existing database; its tables are created)',
      )
      .option('--json', 'JSON output')
      .action(async (opts: InitOptions) => {
        const {
          CONFIG_SCHEMA_FILE,
          configJsonSchemaText,
          initNode,
          parseConfigText,
          renderExampleConfig,
        } = await server();
        const listeners = initListeners(opts);
        const dir = resolve(opts.dir);
        await mkdir(dir, { recursive: true });
        const configPath = join(dir, 'nexus.yaml');
        const exists = await stat(configPath).then(
          () => true,
          () => false,
        );
        if (exists && !opts.force)
          throw new CliError(`${configPath} exists (use --force to overwrite)`);
        const text = renderExampleConfig({
          ...listeners,
          ...(opts.store === undefined ? {} : { store: opts.store }),
        });
        // The file MUST validate before it is written: a bad --listen is said now, once, and
        // a --store URL holding a password never reaches the (world-readable) nexus.yaml.
        parseConfigText(text, { baseDir: dir, env, file: configPath });
        await writeFile(configPath, text, { mode: 0o644 });
        // The schema its first line points editors at (generated here: offline, this version).
        await writeFile(join(dir, CONFIG_SCHEMA_FILE), configJsonSchemaText(), { mode: 0o644 });
        const config = await configFrom(configPath, env);
        const { operatorToken } = await initNode(config);
        const tokenPath = operatorTokenPath(config);
        await mkdir(dirname(tokenPath), { recursive: true, mode: 0o700 });
        await writeFile(tokenPath, operatorToken + '\n', { mode: 0o600 });
        await chmod(tokenPath, 0o600);
        const summary = {
          dir,
          config: configPath,
          proxy_listen: listeners.proxyListen,
          admin_listen: listeners.adminListen,
          master_key:
            config.master_key.source === 'file' ? config.master_key.path : 'NEXUS_MASTER_KEY',
          operator_token: operatorToken,
          operator_token_file: tokenPath,
        };
        if (opts.json) {
          print(summary, true, () => undefined);
          return;
        }
        out(
          [
            `Initialised Nexus in ${dir}`,
            `  config:         ${configPath}`,
            `  master key:     ${config.master_key.source === 'file' ? config.master_key.path : 'NEXUS_MASTER_KEY'}`,
            `  operator token: ${operatorToken}`,
            `                  (saved to ${tokenPath}; shown once, stored hashed)`,
            '',
            resolve(opts.dir) === process.cwd()
              ? 'Next: nexus up'
              : `Next: nexus up --config ${configPath}`,
            '',
          ].join('\n'),
        );
      }),
    'nexus init --dir ./my-nexus\nnexus init --dir ./staging --port 9070   # proxy 127.0.0.1:9070, admin 127.0.0.1:9071\nnexus init --dir ./node --store postgres://nexus@db.internal/nexus',
  );

  example(
    program
      .command('up')
      .description(
        'run the Authority, proxy and admin API from nexus.yaml (refuses key files or a store other users can read)',
      )
      .addOption(configOption())
      .addHelpText(
        'after',
        [
          '',
          'The store must exist (`nexus init` creates it; `up` never does). One node per',
          'SQLite store: a second `up` on a store a live node serves exits with store_in_use.',
          'Any number of nodes share one PostgreSQL store (store: postgres://...; see',
          'docs/deploy.md), each writing an audit chain of its own.',
          'Every signed audit checkpoint is logged and appended to <store>.checkpoints.jsonl',
          '(ship it elsewhere; see `nexus audit verify --help`).',
          '',
          '--workers N runs N worker processes (node:cluster) sharing the proxy and admin',
          'listeners; `auto` is the number of cores; the default, 1, is one process. The',
          'primary holds the store, restarts a worker that dies and stops them all on',
          'SIGTERM/SIGINT. On SQLite the workers share replay records and the audit chain',
          'through the store file, act as one node for held approvals, and run OAuth',
          'refreshes under a lock the primary holds; a config with limits (without redis:)',
          'is refused with more than one worker. See docs/deploy.md, "--workers".',
        ].join('\n'),
      )
      .addOption(
        new Option('--workers <n>', 'worker processes: a number, or auto (one per core)').default(
          '1',
        ),
      )
      .action(async (opts: { config: string; workers: string }) => {
        const {
          checkStateFileModes,
          createLogger,
          runWorkersPrimary,
          startNexus,
          workerRole,
          WorkersConfigError,
        } = await server();
        const count = workerCount(opts.workers);
        const config = await configFrom(opts.config, env);
        const role = workerRole(env);
        // MUST: the node's keys and state are readable by the node's user only.
        try {
          checkStateFileModes(config);
        } catch (e) {
          const c = e as Error & { code?: string };
          throw new CliError(`${c.message} (${c.code ?? 'state_insecure'})`, c.code);
        }
        const logger = createLogger(
          env.NEXUS_LOG_LEVEL ?? config.log.level,
          undefined,
          config.log.format,
        );
        if (count > 1 && role === undefined) {
          // The primary: forks the workers (each runs this command again, as a worker).
          try {
            await runWorkersPrimary({ config, count, out });
          } catch (e) {
            if (e instanceof WorkersConfigError) throw new CliError(e.message, e.code);
            throw e;
          }
          return;
        }
        const node = await startNexus({
          config,
          logger: role === undefined ? logger : logger.child({ worker: role.id, pid: process.pid }),
          reloadConfig: () => configFrom(opts.config, env),
          configFile: resolve(opts.config),
          ...(role === undefined ? {} : { worker: role }),
        });
        if (role !== undefined) {
          // The primary says where the workers listen once all of them are ready.
          process.send?.({ nexusReady: { proxy: node.proxyUrl, admin: node.adminUrl } });
        } else {
          out(`Nexus proxy and Authority listening on ${node.proxyUrl}\n`);
          out(`Nexus admin API listening on ${node.adminUrl}\n`);
        }
        // SIGHUP re-reads nexus.yaml (services, agents, policies) without a restart.
        const onHup = () => {
          node.reload().then(
            (r) =>
              out(`Reloaded ${opts.config}: ${r.services} services, policy ${r.policy_hash}\n`),
            (err: unknown) =>
              out(`reload failed, keeping the running configuration: ${(err as Error).message}\n`),
          );
        };
        process.on('SIGHUP', onHup);
        await new Promise<void>((resolveStop) => {
          const stop = (signal: string) => {
            out(`Received ${signal}: draining in-flight requests...\n`);
            node.close().then(
              () => {
                out('Nexus stopped.\n');
                resolveStop();
              },
              (err: unknown) => {
                out(`error while stopping: ${(err as Error).message}\n`);
                resolveStop();
              },
            );
          };
          process.once('SIGTERM', () => stop('SIGTERM'));
          process.once('SIGINT', () => stop('SIGINT'));
          // A worker whose primary is gone (it holds the node lock) stops too.
          if (role !== undefined) process.once('disconnect', () => stop('primary gone'));
        });
        if (role !== undefined && process.connected) process.disconnect();
      }),
    'nexus up --config ./nexus.yaml\nnexus up --config ./nexus.yaml --workers auto',
  );

  // ---- credential -------------------------------------------------------------------------
  const credential = program
    .command('credential')
    .description('manage vault credentials (write-only)')
    .addHelpText('after', '\nExample:\n  printf %s "$TOKEN" | nexus credential set github-token\n');
  const setLike = (name: 'set' | 'rotate') =>
    credential
      .command(`${name} <name>`)
      .description(
        name === 'set'
          ? 'store a credential; the value is read from stdin or --from-env, never from an argument'
          : 'store a new version of an existing credential (stdin or --from-env)',
      )
      .addOption(configOption())
      .option('--from-env <var>', 'read the value from this environment variable')
      .addOption(
        new Option(
          '--format <format>',
          'stdin format: value (one secret), json (object of fields), env (KEY=VALUE lines)',
        )
          .choices(['value', 'json', 'env'])
          .default('value'),
      )
      .option('--field <field>', 'field name for a single value', 'value')
      .option('--json', 'JSON output')
      .action(
        async (
          credName: string,
          opts: {
            config: string;
            fromEnv?: string;
            format: 'value' | 'json' | 'env';
            field: string;
            json?: boolean;
          },
        ) => {
          let fields: Record<string, string>;
          if (opts.fromEnv !== undefined) {
            const v = env[opts.fromEnv];
            if (v === undefined || v === '')
              throw new CliError(`environment variable ${opts.fromEnv} is not set`);
            fields = { [opts.field]: v };
          } else {
            fields = parseFields(await readStdin(), opts.format, opts.field);
          }
          const client = await adminClient(opts.config, env);
          const r = await client.request<{ name: string; version: number; fields: string[] }>(
            name === 'set' ? 'PUT' : 'POST',
            name === 'set'
              ? `/v1/credentials/${encodeURIComponent(credName)}`
              : `/v1/credentials/${encodeURIComponent(credName)}/rotate`,
            { fields },
          );
          print(r, !!opts.json, () =>
            out(
              `Credential ${r.name} stored as version ${r.version} (fields: ${r.fields.join(', ')})\n`,
            ),
          );
        },
      );
  example(
    setLike('set'),
    'printf %s "$GITHUB_TOKEN" | nexus credential set github-token\nnexus credential set github-token --from-env GITHUB_TOKEN',
  );
  example(setLike('rotate'), 'nexus credential rotate github-token --from-env NEW_GITHUB_TOKEN');
  example(
    credential
      .command('list')
      .description('list credential names, versions and field names (never values)')
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request<{
          credentials: { name: string; version: number; fields: string[]; updated_at: string }[];
        }>('GET', '/v1/credentials');
        print(r.credentials, !!opts.json, () =>
          printTable(
            out,
            ['NAME', 'VERSION', 'FIELDS', 'UPDATED'],
            r.credentials.map((c) => [c.name, String(c.version), c.fields.join(','), c.updated_at]),
          ),
        );
      }),
    'nexus credential list --json',
  );
  example(
    credential
      .command('delete <name>')
      .description('delete a credential and every stored version of it')
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (credName: string, opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        await client.request('DELETE', `/v1/credentials/${encodeURIComponent(credName)}`);
        print({ deleted: credName }, !!opts.json, () => out(`Credential ${credName} deleted\n`));
      }),
    'nexus credential delete github-token',
  );

  // ---- agent ---------------------------------------------------------------------------------
  const agent = program
    .command('agent')
    .description('manage agents')
    .addHelpText(
      'after',
      '\nExample:\n  NEXUS_ENROLLMENT_TOKEN=$(nexus agent enroll triage-bot) nexus run -- python agent.py\n',
    );
  example(
    agent
      .command('list')
      .description('list agents')
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request<{
          agents: { name: string; roles: string[]; disabled: boolean; source: string }[];
        }>('GET', '/v1/agents');
        print(r.agents, !!opts.json, () =>
          printTable(
            out,
            ['NAME', 'ROLES', 'STATUS', 'SOURCE'],
            r.agents.map((a) => [
              a.name,
              a.roles.join(','),
              a.disabled ? 'disabled' : 'enabled',
              a.source,
            ]),
          ),
        );
      }),
    'nexus agent list',
  );
  example(
    agent
      .command('add <name>')
      .description('create an agent through the admin API (agents in nexus.yaml exist already)')
      .addOption(configOption())
      .option('-r, --role <role...>', 'roles', [])
      .option('--json', 'JSON output')
      .action(async (name: string, opts: { config: string; role: string[]; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request('POST', '/v1/agents', { name, roles: opts.role });
        print(r, !!opts.json, () => out(`Agent ${name} created\n`));
      }),
    'nexus agent add report-bot --role reader',
  );
  example(
    agent
      .command('enroll <name>')
      .description(
        'create a one-time enrollment token for an agent: prints only the token (for $(...)), or writes an enrollment file for `nexus run --enrollment-file` (-o)',
      )
      .addOption(configOption())
      .option('--ttl <duration>', 'token lifetime, e.g. 10m (default: authority.enrollment_ttl)')
      .option(
        '--act <principal>',
        'the principal the agent acts for (goes into the lease as act.sub)',
      )
      .option('--task <id>', 'task id for provenance (nexus_task)')
      .option(
        '-o, --output <file>',
        'write an enrollment file (JSON: agent, authority, token, expiry; mode 0600) instead of printing the token',
      )
      .option('--json', 'JSON output')
      .action(
        async (
          name: string,
          opts: {
            config: string;
            ttl?: string;
            act?: string;
            task?: string;
            output?: string;
            json?: boolean;
          },
        ) => {
          const client = await adminClient(opts.config, env);
          const r = await client.request<{ enrollment_token: string; expires_at: string }>(
            'POST',
            `/v1/agents/${encodeURIComponent(name)}/enrollment-tokens`,
            {
              ttl_seconds: opts.ttl ? parseTtl(opts.ttl) : undefined,
              act: opts.act,
              task: opts.task,
            },
          );
          const authority = client.config?.authority.issuer;
          if (opts.output !== undefined) {
            if (authority === undefined) {
              throw new CliError('-o needs the Authority URL: pass --config nexus.yaml');
            }
            await writePrivateFile(
              opts.output,
              enrollmentFileJson({
                agent: name,
                authority,
                enrollment_token: r.enrollment_token,
                expires_at: r.expires_at,
              }),
            );
            print(
              { agent: name, file: resolve(opts.output), expires_at: r.expires_at, authority },
              !!opts.json,
              () =>
                out(
                  `Enrollment for ${name} written to ${opts.output} (mode 0600; single use, expires ${r.expires_at}).\nGive it to the agent's user, who runs: nexus run --enrollment-file FILE -- CMD\n`,
                ),
            );
            return;
          }
          print({ ...r, authority }, !!opts.json, () => {
            // Only the token on stdout, so that TOKEN=$(nexus agent enroll NAME) works.
            out(`${r.enrollment_token}\n`);
            err(
              `(single use, expires ${r.expires_at}${authority === undefined ? '' : `; authority ${authority}`})\n`,
            );
          });
        },
      ),
    'NEXUS_ENROLLMENT_TOKEN=$(nexus agent enroll triage-bot) nexus run -- python agent.py\nnexus agent enroll triage-bot --ttl 1h -o triage.enroll   # then: chown agent triage.enroll',
  );
  for (const [verb, path, desc] of [
    ['disable', 'disable', 'disable an agent and revoke its leases'],
    ['enable', 'enable', 'enable a disabled agent'],
  ] as const) {
    example(
      agent
        .command(`${verb} <name>`)
        .description(desc)
        .addOption(configOption())
        .option('--json', 'JSON output')
        .action(async (name: string, opts: { config: string; json?: boolean }) => {
          const client = await adminClient(opts.config, env);
          const r = await client.request('POST', `/v1/agents/${encodeURIComponent(name)}/${path}`);
          print(r, !!opts.json, () => out(`Agent ${name} ${verb}d\n`));
        }),
      `nexus agent ${verb} triage-bot`,
    );
  }

  // ---- lease -----------------------------------------------------------------------------------
  const lease = program
    .command('lease')
    .description('inspect and revoke leases')
    .addHelpText('after', '\nExample:\n  nexus lease revoke --agent triage-bot\n');
  example(
    lease
      .command('list')
      .description('list active leases')
      .addOption(configOption())
      .option('--agent <name>', 'only this agent')
      .option('--all', 'include expired and revoked leases')
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; agent?: string; all?: boolean; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const q = new URLSearchParams();
        if (opts.agent) q.set('agent', opts.agent);
        if (opts.all) q.set('all', 'true');
        const r = await client.request<{
          leases: {
            id: string;
            agent: string;
            expires_at: string;
            act?: string;
            revoked: boolean;
          }[];
        }>('GET', `/v1/leases?${q}`);
        print(r.leases, !!opts.json, () =>
          printTable(
            out,
            ['ID', 'AGENT', 'EXPIRES', 'ACT', 'REVOKED'],
            r.leases.map((l) => [
              l.id,
              l.agent,
              l.expires_at,
              l.act ?? '',
              l.revoked ? 'yes' : 'no',
            ]),
          ),
        );
      }),
    'nexus lease list --agent triage-bot',
  );
  example(
    lease
      .command('revoke [id]')
      .description('revoke one lease, every lease of an agent (--agent) or all leases (--all)')
      .addOption(configOption())
      .option('--agent <name>', 'revoke every lease of this agent')
      .option('--all', 'revoke every lease (kill switch)')
      .option('--json', 'JSON output')
      // A lease id is base64url and may start with `-`: it is the id, not an unknown option.
      // One that starts like a known option (`-c...`) needs `--` before it (see the example).
      .allowUnknownOption()
      .action(
        async (
          id: string | undefined,
          opts: { config: string; agent?: string; all?: boolean; json?: boolean },
        ) => {
          const chosen = [id !== undefined, opts.agent !== undefined, !!opts.all].filter(
            Boolean,
          ).length;
          if (chosen !== 1)
            throw new CliError(
              'give exactly one of: a lease id (after `--` if it starts with `-`), --agent NAME, --all',
            );
          const client = await adminClient(opts.config, env);
          const r = opts.all
            ? await client.request('POST', '/v1/leases/revoke-all')
            : opts.agent
              ? await client.request(
                  'POST',
                  `/v1/agents/${encodeURIComponent(opts.agent)}/revoke-leases`,
                )
              : await client.request(
                  'POST',
                  `/v1/leases/${encodeURIComponent(id as string)}/revoke`,
                );
          print(r, !!opts.json, () => out('Revoked.\n'));
        },
      ),
    'nexus lease revoke 3q2-Xyz...\nnexus lease revoke -- -cQ2Xyz...   # an id that starts with -\nnexus lease revoke --agent triage-bot\nnexus lease revoke --all',
  );

  // ---- vault -------------------------------------------------------------------------------------
  const vault = program
    .command('vault')
    .description('vault maintenance')
    .addHelpText('after', '\nExample:\n  nexus vault rotate-master-key\n');
  example(
    vault
      .command('rotate-master-key')
      .description(
        'create a new master key version and re-wrap every data key (the node keeps running)',
      )
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request<{ version: number }>('POST', '/v1/vault/rotate-master-key');
        print(r, !!opts.json, () => out(`Master key rotated: now version ${r.version}\n`));
      }),
    'nexus vault rotate-master-key',
  );

  // ---- connection (OAuth authorization-code accounts) ----------------------------------------
  const connection = program
    .command('connection')
    .description('connect, list and delete OAuth accounts (oauth2_authorization_code services)')
    .addHelpText('after', '\nExample:\n  nexus connection connect google --principal alice\n');
  example(
    connection
      .command('connect <service>')
      .description(
        'create a one-time authorize link for a principal; open it in a browser to connect the account',
      )
      .addOption(configOption())
      .requiredOption(
        '-p, --principal <principal>',
        "whose account: an agent's act principal, or an agent name",
      )
      .option('--json', 'JSON output')
      .action(
        async (
          serviceName: string,
          opts: { config: string; principal: string; json?: boolean },
        ) => {
          const client = await adminClient(opts.config, env);
          const r = await client.request<{ authorize_url: string; state_expires_at: string }>(
            'POST',
            `/v1/connections/${encodeURIComponent(serviceName)}`,
            { principal: opts.principal },
          );
          print(r, !!opts.json, () =>
            out(
              `${r.authorize_url}\n(open in a browser as ${opts.principal}; single use, expires ${r.state_expires_at})\n`,
            ),
          );
        },
      ),
    'nexus connection connect gmail --principal alice@example.com',
  );
  example(
    connection
      .command('list')
      .description('list connected accounts (service, principal, dates; never a token)')
      .addOption(configOption())
      .option('-s, --service <service>', 'only this service')
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; service?: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const query = opts.service ? `?service=${encodeURIComponent(opts.service)}` : '';
        const r = await client.request<{
          connections: {
            service: string;
            principal: string;
            created_at?: string;
            refreshed_at?: string;
          }[];
        }>('GET', `/v1/connections${query}`);
        print(r.connections, !!opts.json, () =>
          printTable(
            out,
            ['SERVICE', 'PRINCIPAL', 'CREATED', 'REFRESHED'],
            r.connections.map((c) => [
              c.service,
              c.principal,
              c.created_at ?? '-',
              c.refreshed_at ?? '-',
            ]),
          ),
        );
      }),
    'nexus connection list --json',
  );
  example(
    connection
      .command('delete <service>')
      .description("delete a principal's connection (its tokens are erased from the vault)")
      .addOption(configOption())
      .requiredOption('-p, --principal <principal>', 'whose account')
      .option('--json', 'JSON output')
      .action(
        async (
          serviceName: string,
          opts: { config: string; principal: string; json?: boolean },
        ) => {
          const client = await adminClient(opts.config, env);
          await client.request(
            'DELETE',
            `/v1/connections/${encodeURIComponent(serviceName)}/${encodeURIComponent(opts.principal)}`,
          );
          print({ deleted: { service: serviceName, principal: opts.principal } }, !!opts.json, () =>
            out(`Connection ${serviceName} for ${opts.principal} deleted\n`),
          );
        },
      ),
    'nexus connection delete gmail --principal alice@example.com',
  );

  // ---- run -----------------------------------------------------------------------------------------
  example(
    program
      .command('run')
      .description(
        'run a command as an agent, with agent rights only: it reaches services through $NEXUS_PROXY and never sees a key',
      )
      .option(
        '--authority <url>',
        `the Authority URL (default: $NEXUS_AUTHORITY, the enrollment file's, authority.issuer of --config, else ${DEFAULT_AUTHORITY})`,
      )
      .option(
        '--enrollment-file <file>',
        'read the enrollment token from this file (`nexus agent enroll NAME -o FILE`); default: $NEXUS_ENROLLMENT_TOKEN; without a token, inside another `nexus run` ($NEXUS_PROXY), a sub-lease is delegated by it instead',
      )
      .option('-a, --agent <name>', 'refuse to run unless the token is for this agent')
      .option('-i, --intent <text>', 'default intent for requests that do not send Nexus-Intent')
      .addOption(
        new Option('--key <alg>', 'agent key algorithm')
          .choices(['ed25519', 'ecdsa-p256'])
          .default('ed25519'),
      )
      .option(
        '--sandbox',
        "run the command under bubblewrap (bwrap): its own PID namespace and /proc, only the system directories (read-only), its own /tmp and its working directory visible, the node's state hidden and its config read-only, no capabilities; loopback stays reachable",
      )
      .option(
        '--hide <path>',
        'with --sandbox, also hide this file or directory (repeatable)',
        (v: string, acc: string[]) => [...acc, v],
        [] as string[],
      )
      .option(
        '--share <path>',
        'with --sandbox, also let the command read and write this path (repeatable); it sees only the system directories, /tmp (its own) and its working directory otherwise',
        (v: string, acc: string[]) => [...acc, v],
        [] as string[],
      )
      .option(
        '-c, --config <file>',
        "the node's nexus.yaml, if this host has one (default ./nexus.yaml when present): only its Authority URL and the paths of its key files are used",
      )
      .option(
        '--env <services>',
        'base-URL mode: export the variables the SDKs of these services read (OPENAI_BASE_URL, ...), pointing at the sidecar, with a dummy key Nexus strips: comma-separated names, "all" (every service the node lists for this agent) or "none"',
        'all',
      )
      .option(
        '--delegate-roles <roles>',
        "inside another nexus run: the sub-lease gets only these roles (comma-separated, a subset of the enclosing lease's; refused with delegation_too_wide otherwise)",
      )
      .option(
        '--delegate-services <services>',
        'inside another nexus run: the sub-lease may call only these services (comma-separated; the proxy refuses others with service_not_delegated)',
      )
      .option(
        '--delegate-intent <glob>',
        'inside another nexus run: every intent of the sub-lease must match this glob (* any characters, case-insensitive; the proxy refuses others with intent_not_delegated)',
      )
      .option(
        '--delegate-ttl <seconds>',
        "inside another nexus run: the sub-lease's lifetime (never past the enclosing lease's)",
      )
      .option(
        '--no-forward-proxy',
        'do not set HTTP_PROXY/HTTPS_PROXY: by default the sidecar is also the forward proxy of the command, for the hosts services own (TLS intercepted with a per-run CA exported as SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, ...); other hosts are refused',
      )
      .argument('<command...>', 'the command to run, after --')
      .addHelpText(
        'after',
        [
          '',
          'The operator makes a one-time enrollment token (`nexus agent enroll NAME`); nexus run',
          'spends it before the command starts, so nothing in its environment is of use to the',
          'command. It never reads the operator token or the master key, and revokes its own',
          'lease at exit. It warns when the command could read the node key files or operator',
          'secrets (run agents as another OS user than the node, or use --sandbox).',
          '',
          'Three ways in, all signed, policed, audited and scrubbed alike (docs/agents.md):',
          '  path mode      $NEXUS_PROXY/<service>/<path>',
          '  base-URL mode  the variables a service declares (env:), e.g. OPENAI_BASE_URL and',
          '                 OPENAI_API_KEY=<a dummy key the sidecar strips>, for the services',
          '                 the node lists for this agent (--env all, the default)',
          '  forward proxy  HTTP_PROXY/HTTPS_PROXY for the hosts services own (hosts:); https',
          '                 through a per-run CA whose key never leaves this process',
        ].join('\n'),
      )
      .action(
        async (
          command: string[],
          opts: {
            authority?: string;
            enrollmentFile?: string;
            agent?: string;
            intent?: string;
            key: 'ed25519' | 'ecdsa-p256';
            sandbox?: boolean;
            hide: string[];
            share: string[];
            config?: string;
            env: string;
            forwardProxy: boolean;
            delegateRoles?: string;
            delegateServices?: string;
            delegateIntent?: string;
            delegateTtl?: string;
          },
        ) => {
          process.exitCode = await runAsAgent(command, opts, env, { warn: (l) => err(l + '\n') });
        },
      ),
    [
      'NEXUS_ENROLLMENT_TOKEN=$(nexus agent enroll triage-bot) \\',
      '  nexus run --authority http://127.0.0.1:7070 --intent "triage new issues" -- \\',
      "  sh -c 'curl -s $NEXUS_PROXY/github/repos/acme/app/issues'",
      'nexus run --enrollment-file ~/triage.enroll --sandbox -- python agent.py',
      'nexus run --enrollment-file ~/llm.enroll --env openai -- python uses_openai_sdk.py',
      "nexus run --enrollment-file ~/gh.enroll -- sh -c 'curl -s https://api.github.com/user'",
    ].join('\n'),
  );

  registerMcp(program, env, (l) => err(l + '\n'), out);
  registerCompletion(program, out);

  // ---- policy -------------------------------------------------------------------------------------
  const policy = program
    .command('policy')
    .description('check and explain policy')
    .addHelpText(
      'after',
      '\nExample:\n  nexus policy explain --agent triage-bot --service github --path /repos/acme/app/issues\n',
    );
  example(
    policy
      .command('check')
      .description('validate nexus.yaml and its policies offline; prints the policy hash')
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const config = await configFrom(opts.config, env);
        const { compilePolicy } = await server();
        const compiled = compilePolicy(config);
        const summary = {
          ok: true,
          rules: config.policies.length,
          services: Object.keys(config.services).length,
          policy_hash: compiled.hash,
        };
        print(summary, !!opts.json, () =>
          out(
            `OK: ${summary.rules} rules over ${summary.services} services, policy hash ${summary.policy_hash}\n`,
          ),
        );
      }),
    'nexus policy check --config ./nexus.yaml',
  );
  example(
    policy
      .command('explain')
      .description('explain the decision for a request (offline, from nexus.yaml)')
      .addOption(configOption())
      .requiredOption('--agent <name>', 'agent name')
      .requiredOption('--service <name>', 'service name')
      .option('--method <method>', 'HTTP method', 'GET')
      .requiredOption('--path <path>', 'path inside the service, e.g. /repos/acme/app/issues')
      .option('--intent <text>', 'declared intent', '')
      .option('--role <role...>', "roles (default: the agent's roles in nexus.yaml)")
      .option('--at <iso-time>', 'evaluate at this time')
      .option('--mcp <method>', 'an MCP service: the JSON-RPC method (docs/mcp.md)')
      .option('--mcp-name <name>', 'with --mcp: the tool, prompt or resource URI it names')
      .option(
        '--delegated-from <lease-id...>',
        "a sub-lease's delegation chain, root first (its depth is what `delegation:` rules match; default: not delegated)",
      )
      .option('--json', 'JSON output')
      .action(
        async (opts: {
          config: string;
          agent: string;
          service: string;
          method: string;
          path: string;
          intent: string;
          role?: string[];
          at?: string;
          mcp?: string;
          mcpName?: string;
          delegatedFrom?: string[];
          json?: boolean;
        }) => {
          const config = await configFrom(opts.config, env);
          const { compilePolicy, explanationJson, mcpTarget } = await server();
          const compiled = compilePolicy(config);
          const roles = opts.role ?? [...(config.agents[opts.agent]?.roles ?? [])];
          const result = explanationJson(
            compiled.explain({
              agent: opts.agent,
              roles,
              service: opts.service,
              method: opts.method.toUpperCase(),
              path: opts.path,
              intent: opts.intent,
              now: opts.at ? Date.parse(opts.at) : Date.now(),
              ...(opts.mcp === undefined ? {} : { mcp: mcpTarget(opts.mcp, opts.mcpName) }),
              ...(opts.delegatedFrom === undefined ? {} : { delegation: opts.delegatedFrom }),
            }),
          );
          print(result, !!opts.json, () => out(formatExplain(result) + '\n'));
          process.exitCode = result.decision === 'allow' ? 0 : 3;
        },
      ),
    'nexus policy explain --agent triage-bot --service github --method GET --path /repos/acme/app/issues',
  );

  // ---- audit --------------------------------------------------------------------------------------
  const audit = program
    .command('audit')
    .description('query, follow, verify and export the audit trail')
    .addHelpText('after', '\nExample:\n  nexus audit verify\n');
  example(
    audit
      .command('verify')
      .description(
        'verify the hash chain and signed checkpoints (offline, reads the store, also while the node runs); exit 1 if tampered',
      )
      .addOption(configOption())
      .option(
        '--against <checkpoint>',
        'also check checkpoints kept outside the database: a checkpoint file (the node appends every checkpoint to <store>.checkpoints.jsonl; ship a copy elsewhere) or one checkpoint JWS; a chain that no longer holds one is reported (truncated, checkpoint_mismatch)',
      )
      .option('--json', 'JSON output')
      .addHelpText(
        'after',
        [
          '',
          'Reasons (stable): edited, deleted, inserted, reordered, truncated (the chain ends',
          'before a signed checkpoint), checkpoint_mismatch, checkpoint_invalid.',
          'Without --against, removing the newest records together with the newest',
          'checkpoints leaves a shorter chain that verifies: keep checkpoints elsewhere.',
        ].join('\n'),
      )
      .action(async (opts: { config: string; against?: string; json?: boolean }) => {
        const config = await configFrom(opts.config, env);
        const { loadCheckpoints, verifyAuditOffline } = await server();
        const against =
          opts.against === undefined ? undefined : await loadCheckpoints(opts.against);
        const r = await verifyAuditOffline(config, against === undefined ? {} : { against });
        print(r, !!opts.json, () => {
          const cps = `${r.checkpoints} checkpoint${r.checkpoints === 1 ? '' : 's'}`;
          if (r.ok) {
            const anchor =
              r.against === undefined
                ? ''
                : `; holds the external checkpoint at seq ${r.against.seq} (${new Date(r.against.time).toISOString()})`;
            const chains = r.chains === undefined ? '' : ` in ${r.chains} node chains`;
            out(`OK: ${r.count} records${chains}, ${cps} verified${anchor}\n`);
          } else if (r.reason === 'truncated') {
            out(
              `TAMPERED: the chain${r.chain === undefined ? '' : ` ${r.chain}`} ends before a signed checkpoint, record seq ${r.seq} is missing (truncated)\n`,
            );
          } else
            out(
              `TAMPERED: first bad record${r.chain === undefined ? '' : ` of chain ${r.chain}`} seq ${r.seq} (${r.reason})\n`,
            );
        });
        if (!r.ok) process.exitCode = 1;
      }),
    'nexus audit verify\nnexus audit verify --against /backup/nexus.db.checkpoints.jsonl',
  );
  const queryOpts = (cmd: Command) =>
    cmd
      .addOption(configOption())
      .option('--agent <name>', 'filter by agent')
      .option('--service <name>', 'filter by service')
      .addOption(new Option('--decision <d>', 'filter by decision').choices(['allow', 'deny']))
      .option('--since <iso-time>', 'records at or after this time')
      .option('--limit <n>', 'at most this many records', '50');
  example(
    queryOpts(
      audit
        .command('query')
        .description('query audit records, newest first (asks the running node)'),
    )
      .option('--json', 'JSON output')
      .action(
        async (opts: {
          config: string;
          agent?: string;
          service?: string;
          decision?: string;
          since?: string;
          limit: string;
          json?: boolean;
        }) => {
          const client = await adminClient(opts.config, env);
          const q = new URLSearchParams({ limit: opts.limit });
          for (const k of ['agent', 'service', 'decision', 'since'] as const)
            if (opts[k]) q.set(k, opts[k] as string);
          const r = await client.request<{ records: AuditView[] }>('GET', `/v1/audit?${q}`);
          print(r.records, !!opts.json, () =>
            printTable(out, AUDIT_COLUMNS, r.records.map(auditRow)),
          );
        },
      ),
    'nexus audit query --agent triage-bot --decision deny',
  );
  example(
    audit
      .command('tail')
      .description('follow new audit records as they are written (Ctrl-C to stop)')
      .addOption(configOption())
      .option('--json', 'JSON lines output')
      .option('--interval <ms>', 'poll interval', '1000')
      .action(async (opts: { config: string; json?: boolean; interval: string }) => {
        const client = await adminClient(opts.config, env);
        const last = await client.request<{ records: AuditView[] }>('GET', '/v1/audit?limit=1');
        let next = (last.records[0]?.seq ?? 0) + 1;
        for (;;) {
          const res = await client.raw('GET', `/v1/audit/export?from_seq=${next}`);
          for (const line of (await res.text()).split('\n')) {
            if (!line) continue;
            const row = JSON.parse(line) as { seq: number; record: AuditView };
            next = row.seq + 1;
            if (opts.json) out(line + '\n');
            else out(auditRow({ ...row.record, seq: row.seq }).join('  ') + '\n');
          }
          await new Promise((r) => setTimeout(r, Number(opts.interval)));
        }
      }),
    'nexus audit tail',
  );
  example(
    audit
      .command('export')
      .description('export the whole audit log as JSON Lines (seq, prev_hash, hash, record)')
      .addOption(configOption())
      .option('-o, --output <file>', 'write to a file instead of stdout')
      .action(async (opts: { config: string; output?: string }) => {
        const client = await adminClient(opts.config, env);
        const res = await client.raw('GET', '/v1/audit/export');
        if (!res.ok) throw new CliError(`export failed with HTTP ${res.status}`);
        const text = await res.text();
        if (opts.output) await writeFile(opts.output, text);
        else out(text);
      }),
    'nexus audit export -o audit.jsonl',
  );

  // ---- service ---------------------------------------------------------------------------------
  const service = program
    .command('service')
    .description('services')
    .addHelpText('after', '\nExample:\n  nexus service list\n');
  example(
    service
      .command('list')
      .description('list configured services')
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const config = await configFrom(opts.config, env);
        const rows = Object.values(config.services).map((s) => ({
          name: s.name,
          upstream: s.upstream,
          auth_type: s.auth.type,
          credential: s.auth.credential ?? null,
        }));
        print(rows, !!opts.json, () =>
          printTable(
            out,
            ['NAME', 'UPSTREAM', 'AUTH', 'CREDENTIAL'],
            rows.map((r) => [r.name, r.upstream, r.auth_type, r.credential ?? '-']),
          ),
        );
      }),
    'nexus service list',
  );
  example(
    service
      .command('presets')
      .description('list the ready service definitions (presets) that `service add` can use')
      .option('--json', 'JSON output: an array, one object per preset')
      .action(async (opts: { json?: boolean }) => {
        const { PRESETS, presetToJson } = await server();
        const rows = PRESETS.map(presetToJson);
        print(rows, !!opts.json, () =>
          printTable(
            out,
            ['ID', 'NAME', 'UPSTREAM', 'AUTH', 'CREDENTIAL FIELDS'],
            PRESETS.map((p) => [
              p.id,
              p.name,
              p.upstream,
              p.auth.type,
              p.fields.map((f) => (f.optional === true ? `${f.name}?` : f.name)).join(','),
            ]),
          ),
        );
      }),
    'nexus service presets\nnexus service presets --json | jq -r ".[].id"',
  );
  example(
    service
      .command('add <name>')
      .description(
        'add a service from a preset to nexus.yaml (keeps the rest of the file and its comments)',
      )
      .requiredOption('--preset <id>', 'preset id (see `nexus service presets`)')
      .option('--upstream <url>', "override the preset's upstream base URL")
      .option('--credential <name>', 'vault credential name (default: the service name)')
      .option(
        '--var <name=value>',
        'fill a preset placeholder, e.g. --var region=eu-west-1 (repeatable)',
        (v: string, acc: string[]) => [...acc, v],
        [] as string[],
      )
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(
        async (
          name: string,
          opts: {
            preset: string;
            upstream?: string;
            credential?: string;
            var: string[];
            config: string;
            json?: boolean;
          },
        ) => {
          const {
            addServiceToConfigText,
            credentialInstructions,
            getPreset,
            parseConfigText,
            renderPresetService,
          } = await server();
          const preset = getPreset(opts.preset);
          if (preset === undefined) {
            throw new CliError(`unknown preset "${opts.preset}" (see \`nexus service presets\`)`);
          }
          const vars: Record<string, string> = {};
          for (const pair of opts.var) {
            const i = pair.indexOf('=');
            if (i <= 0) throw new CliError('--var wants name=value');
            vars[pair.slice(0, i)] = pair.slice(i + 1);
          }
          const credentialName = opts.credential ?? name;
          const entry = renderPresetService(preset, {
            credential: credentialName,
            upstream: opts.upstream,
            vars,
          });
          const path = resolve(opts.config);
          let text: string;
          try {
            text = await readFile(path, 'utf8');
          } catch {
            throw new CliError(`cannot read ${opts.config} (run \`nexus init\` first)`);
          }
          const updated = addServiceToConfigText(text, name, entry);
          // The result MUST validate before it replaces the file.
          parseConfigText(updated, { baseDir: dirname(path), env, file: opts.config });
          await writeFile(path, updated);
          const steps = credentialInstructions(preset, credentialName);
          // A running node picks the service up at once; otherwise it applies on `nexus up`.
          const reloaded = await tryReload(opts.config, env);
          print(
            {
              service: name,
              preset: preset.id,
              entry,
              credential: credentialName,
              credential_fields: preset.fields.map((f) => f.name),
              command: steps[steps.length - 1]?.trim(),
            },
            !!opts.json,
            () =>
              out(
                [
                  `Added service "${name}" (${preset.name}) to ${opts.config}`,
                  `  upstream: ${entry.upstream}`,
                  `  auth:     ${preset.auth.type}, credential "${credentialName}"`,
                  ...(preset.note === undefined ? [] : [`  note:     ${preset.note}`]),
                  '',
                  ...steps,
                  '',
                  reloaded
                    ? `The running node reloaded ${opts.config}: the service is live. Allow agents to use it in a policy (services: [${name}]).`
                    : `Then allow agents to use it in a policy (services: [${name}]); a running node applies it with \`nexus reload\`.`,
                  `Provider docs: ${preset.docs}`,
                  '',
                ].join('\n'),
              ),
          );
        },
      ),
    'nexus service add gh --preset github\nnexus service add s3 --preset aws --var service=s3 --var region=eu-west-1',
  );

  example(
    program
      .command('reload')
      .description(
        'make a running node re-read nexus.yaml (services, agents, policies); in a cluster every node re-reads its own (SIGHUP reloads one node only)',
      )
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request<{
          services: number;
          agents: number;
          policy_hash: string;
          restart_required: string[];
          cluster?: {
            other_nodes: number;
            reports: {
              node: string;
              ok: boolean;
              code?: string;
              result?: { services?: number; policy_hash?: string };
            }[];
          };
          changes?: Record<string, { added: string[]; removed: string[]; changed: string[] }>;
        }>('POST', '/v1/config/reload');
        print(r, !!opts.json, () => {
          out(`Reloaded: ${r.services} services, ${r.agents} agents, policy ${r.policy_hash}\n`);
          out(reloadDiffText(r.changes));
          // A cluster: every other node re-read its own nexus.yaml and answered.
          const c = r.cluster;
          if (c !== undefined) {
            for (const n of c.reports) {
              out(
                n.ok
                  ? `  node ${n.node}: reloaded, ${n.result?.services} services, policy ${n.result?.policy_hash}\n`
                  : `  node ${n.node}: reload FAILED (${n.code}), it keeps its running configuration\n`,
              );
            }
            const silent = c.other_nodes - c.reports.length;
            if (silent > 0) out(`  ${silent} other node(s) did not answer in time\n`);
          }
          if (r.restart_required.length > 0) {
            out(
              `Changed sections that apply only after a restart: ${r.restart_required.join(', ')}\n`,
            );
          }
        });
      }),
    'vi nexus.yaml && nexus reload',
  );

  // ---- approval ------------------------------------------------------------------------------
  const approval = program
    .command('approval')
    .description('requests held for a human by `approve` policy rules: list, approve, deny')
    .addHelpText('after', '\nExample:\n  nexus approval list && nexus approval approve apr_...\n');
  example(
    approval
      .command('list')
      .description('list the requests waiting for approval (agent, service, method, path, intent)')
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request<{
          approvals: {
            id: string;
            agent: string;
            service: string;
            method: string;
            path: string;
            intent: string;
            rule_id: string;
            expires_at: string;
          }[];
        }>('GET', '/v1/approvals');
        print(r.approvals, !!opts.json, () =>
          printTable(
            out,
            ['ID', 'AGENT', 'SERVICE', 'METHOD', 'PATH', 'INTENT', 'RULE', 'EXPIRES'],
            r.approvals.map((a) => [
              a.id,
              a.agent,
              a.service,
              a.method,
              a.path,
              a.intent,
              a.rule_id,
              a.expires_at,
            ]),
          ),
        );
      }),
    'nexus approval list --json',
  );
  for (const [verb, desc] of [
    ['approve', 'approve a held request: it is forwarded exactly as the agent signed it'],
    ['deny', 'deny a held request: the agent gets approval_denied'],
  ] as const) {
    example(
      approval
        .command(`${verb} <id>`)
        .description(desc)
        .addOption(configOption())
        .option('--json', 'JSON output')
        .action(async (id: string, opts: { config: string; json?: boolean }) => {
          const client = await adminClient(opts.config, env);
          const r = await client.request<{ state: string; approver: { name: string } }>(
            'POST',
            `/v1/approvals/${encodeURIComponent(id)}/${verb}`,
          );
          print(r, !!opts.json, () => out(`${id} ${r.state} by ${r.approver.name}\n`));
        }),
      `nexus approval ${verb} apr_3q2Xyz...`,
    );
  }

  example(
    program
      .command('migrate')
      .description(
        'bring the store schema up to date and exit (a deployment step before nodes start; nodes also migrate when they start)',
      )
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const config = await configFrom(opts.config, env);
        const { openConfiguredStore } = await server();
        const store = await openConfiguredStore(config);
        const r = { driver: config.store.driver, schema_version: store.schemaVersion };
        await store.close();
        print(r, !!opts.json, () =>
          out(`Store schema is at version ${r.schema_version} (${r.driver})\n`),
        );
      }),
    'nexus migrate --config /etc/nexus/nexus.yaml',
  );

  example(
    program
      .command('status')
      .description(
        'show a running node: listeners, uptime, agents and live leases, credential health per service, audit head and lag; under nexus up --workers N, the whole node and each worker',
      )
      .addOption(configOption())
      .option('--json', 'JSON output')
      .action(async (opts: { config: string; json?: boolean }) => {
        const client = await adminClient(opts.config, env);
        const r = await client.request<NodeStatus>('GET', '/v1/status');
        print(r, !!opts.json, () => out(formatStatus(r)));
      }),
    'nexus status\nNEXUS_ADDR=http://10.0.0.5:7071 nexus status --json',
  );

  example(
    program
      .command('doctor')
      .description(
        'check the setup: config, key file modes, ports, store and schema, clock, credentials, upstream reachability; says the fix for each problem',
      )
      .addOption(configOption())
      .option('--json', 'JSON output: {checks: [{name, status, detail, fix}]}')
      .addHelpText(
        'after',
        [
          '',
          'Each check is ok, warn or fail. fail: `nexus up` (or the running node) cannot work',
          '(invalid config, key files or store readable by others, a port another process holds,',
          'a store that does not open); warn: some requests will fail (an unset credential, an',
          'unreachable upstream) or a check could not be made. Exits 1 when a check fails.',
          'Upstreams get a TCP connect only: no request, no credential. Works with or without a',
          'running node; with one, it also reads /v1/status (operator token) and compares clocks.',
          'Never prints a secret: names, paths and addresses only.',
        ].join('\n'),
      )
      .action(async (opts: { config: string; json?: boolean }) => {
        const checks = await runDoctor(opts.config, env);
        print({ checks }, !!opts.json, () => out(formatDoctor(checks)));
        if (checks.some((c) => c.status === 'fail')) process.exitCode = 1;
      }),
    'nexus doctor\nnexus doctor --config /srv/nexus/nexus.yaml --json',
  );

  example(
    program
      .command('echo-server')
      .description('run a loopback upstream that echoes each request as JSON (for trying Nexus)')
      .option('--host <host>', 'listen address (loopback by default)', '127.0.0.1')
      .option('-p, --port <port>', 'port', '8080')
      .action(async (opts: { host: string; port: string }) => {
        const server = await startEchoServer(opts.host, Number(opts.port));
        out(`Echo upstream listening on http://${opts.host}:${opts.port} (Ctrl-C to stop)\n`);
        await new Promise<void>((resolveStop) => {
          const stop = () => server.close(() => resolveStop());
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      }),
    'nexus echo-server --port 8080',
  );

  return program;
}

interface InitOptions {
  dir: string;
  force?: boolean;
  store?: string;
  listen?: string;
  port?: string;
  adminListen?: string;
  json?: boolean;
}

/** The listen addresses `nexus init` writes: --listen or --port, and --admin-listen. */
function initListeners(opts: InitOptions): { proxyListen: string; adminListen: string } {
  if (opts.listen !== undefined && opts.port !== undefined) {
    throw new CliError('give --listen HOST:PORT or --port PORT, not both');
  }
  const port = (text: string, what: string): number => {
    const n = Number(text);
    if (!/^\d{1,5}$/.test(text) || n < 1 || n > 65535)
      throw new CliError(`${what} must be a port from 1 to 65535`);
    return n;
  };
  let host = '127.0.0.1';
  let proxyPort = 7070;
  if (opts.port !== undefined) proxyPort = port(opts.port, '--port');
  if (opts.listen !== undefined) {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):(\d+)$/.exec(opts.listen.trim());
    if (m === null) throw new CliError('--listen must be HOST:PORT, e.g. 127.0.0.1:7070');
    host = m[1] as string;
    proxyPort = port(m[2] as string, 'the --listen port');
  }
  const proxyListen = `${host}:${proxyPort}`;
  if (opts.adminListen !== undefined) return { proxyListen, adminListen: opts.adminListen.trim() };
  if (proxyPort === 65535) {
    throw new CliError('the proxy port is 65535: give the admin API one with --admin-listen');
  }
  return { proxyListen, adminListen: `${host}:${proxyPort + 1}` };
}

/**
 * Writes `text` to `path` with mode 0600: a fresh temp file beside it (created exclusively,
 * so never through a planted symlink), then renamed over the target.
 */
async function writePrivateFile(path: string, text: string): Promise<void> {
  const target = resolve(path);
  const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
    throw new CliError(`cannot write ${path}: ${e.code ?? 'error'}`);
  });
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new CliError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** Asks a running node to reload; false when none is reachable (it then applies at start). */
async function tryReload(configPath: string, env: Env): Promise<boolean> {
  try {
    const client = await adminClient(configPath, env);
    await client.request('POST', '/v1/config/reload');
    return true;
  } catch {
    return false;
  }
}

interface AuditView {
  seq?: number;
  time?: string;
  kind?: string;
  agent?: string;
  service?: string;
  method?: string;
  path?: string;
  decision?: string;
  upstream_status?: number;
  error_code?: string;
  error_detail?: string;
  request_id?: string;
  /** `passthrough` records: the tunnel's target. */
  host?: string;
  port?: number;
}
const AUDIT_COLUMNS = [
  'SEQ',
  'TIME',
  'KIND',
  'AGENT',
  'SERVICE',
  'METHOD',
  'PATH',
  'DECISION',
  'STATUS',
  'ERROR',
  'DETAIL',
];
function auditRow(r: AuditView): string[] {
  return [
    String(r.seq ?? ''),
    r.time ?? '',
    r.kind ?? '',
    r.agent ?? '-',
    r.service ?? '-',
    r.method ?? (r.kind === 'passthrough' ? 'CONNECT' : ''),
    r.path ?? (r.host === undefined ? '' : `${r.host}:${r.port ?? ''}`),
    r.decision ?? '',
    r.upstream_status === undefined ? '-' : String(r.upstream_status),
    r.error_code ?? '',
    r.error_detail ?? '',
  ];
}

interface NodeStatus {
  /** `degraded`: a worker of `nexus up --workers N` did not answer. */
  status?: string;
  node: {
    proxy_url: string | null;
    admin_url: string | null;
    uptime_seconds: number;
    store: string;
    policy_hash: string;
  };
  agents: { total: number; disabled: number };
  leases: { active: number; active_capped: boolean };
  services: {
    name: string;
    auth_type: string;
    credential: string | null;
    credential_status: string;
    credential_version: number | null;
  }[];
  audit: {
    head_seq: number;
    pending_records: number;
    lag_seconds: number;
    last_checkpoint: { seq: number; time: string } | null;
  };
  limits: number;
  /** `nexus up --workers N`: each worker (the figures above are the node's). */
  workers?: {
    id: number;
    pid: number | null;
    status: string;
    restarts: number;
    uptime_seconds: number | null;
    audit: { pending_records: number } | null;
  }[];
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function formatUptime(up: number): string {
  return `${Math.floor(up / 3600)}h${Math.floor((up % 3600) / 60)}m${up % 60}s`;
}

function formatStatus(s: NodeStatus): string {
  const uptime = formatUptime(s.node.uptime_seconds);
  const cp = s.audit.last_checkpoint;
  const lines = [
    `node:     proxy ${s.node.proxy_url ?? '-'}, admin ${s.node.admin_url ?? '-'}, up ${uptime}, store ${s.node.store}`,
    `policy:   ${s.node.policy_hash}`,
    `agents:   ${s.agents.total} (${s.agents.disabled} disabled), ${s.leases.active}${s.leases.active_capped ? '+' : ''} live leases`,
    `audit:    head seq ${s.audit.head_seq}, ${s.audit.pending_records} pending (lag ${s.audit.lag_seconds.toFixed(3)} s), last checkpoint ${cp === null ? 'none' : `seq ${cp.seq} at ${cp.time}`}`,
    `limits:   ${s.limits}`,
    ...(s.workers === undefined
      ? []
      : [
          `workers:  ${s.workers.length}${s.status === 'degraded' ? ' (degraded: a worker did not answer)' : ''}`,
          ...s.workers.map((w) =>
            w.status === 'ok'
              ? `  ${w.id}: pid ${w.pid ?? '-'}, up ${formatUptime(w.uptime_seconds ?? 0)}, ${plural(w.restarts, 'restart')}, ${w.audit?.pending_records ?? 0} audit records pending`
              : `  ${w.id}: pid ${w.pid ?? '-'}, ${w.status}, ${plural(w.restarts, 'restart')}`,
          ),
        ]),
    '',
  ];
  const rows = s.services.map((v) => [
    v.name,
    v.auth_type,
    v.credential ?? '-',
    v.credential_status + (v.credential_version === null ? '' : ` (v${v.credential_version})`),
  ]);
  let table = '';
  printTable((t) => (table += t), ['SERVICE', 'AUTH', 'CREDENTIAL', 'CREDENTIAL STATUS'], rows);
  const missing = s.services.filter((v) => v.credential_status === 'missing');
  const hint = missing.map(
    (v) =>
      `credential "${v.credential}" of ${v.name} is not set: nexus credential set ${v.credential}\n`,
  );
  return lines.join('\n') + '\n' + table + hint.join('');
}

function formatExplain(result: unknown): string {
  const r = result as { decision: string; rule_ids?: string[]; reasons?: string[] };
  const lines = [`decision: ${r.decision}`];
  if (r.rule_ids?.length) lines.push(`matched rules: ${r.rule_ids.join(', ')}`);
  for (const reason of r.reasons ?? []) lines.push(`  - ${reason}`);
  return lines.join('\n');
}

/** Runs the CLI; resolves with the exit code. Errors are one line on stderr. */
export async function main(argv: string[], env: Env = process.env): Promise<number> {
  const program = buildProgram(
    env,
    (s) => process.stdout.write(s),
    (s) => process.stderr.write(s),
  );
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode;
    }
    const e = err as { message?: string; code?: string; name?: string; issues?: unknown };
    // Store and listener start-up errors carry their stable code, for scripts (e.g.
    // store_in_use, address_in_use).
    const code =
      (e.name === 'StoreError' || e.name === 'ListenError') && typeof e.code === 'string'
        ? ` (${e.code})`
        : '';
    process.stderr.write(`nexus: ${e.message ?? String(err)}${code}\n`);
    return 1;
  }
}

export type { Config };
