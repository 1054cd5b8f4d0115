/**
 * Ready service definitions ("presets"), kept as data: what `nexus service add NAME
 * --preset ID` writes into nexus.yaml, what `nexus service presets` lists and what
 * docs/mechanics/presets.md tabulates (generated from this file; a test keeps them in sync).
 *
 * A preset holds no secret: only the upstream, the auth mechanic and its options, the names
 * of the credential fields the operator stores in the vault, extra response headers to
 * scrub, and a link to the provider's own authentication docs. `{var}` placeholders in the
 * upstream and in string options are filled from `variables` (`--var name=value`).
 */

/** A credential field the operator stores with `nexus credential set`. */
export interface PresetField {
  readonly name: string;
  readonly description: string;
  /** The field may be left out. */
  readonly optional?: boolean;
}

/** A `{name}` placeholder in a preset's upstream or options. */
export interface PresetVariable {
  readonly description: string;
  /** A realistic value, used by the validation test and shown in help. */
  readonly example: string;
  /** Used when `--var` does not give one. */
  readonly default?: string;
}

/** One ready service definition. */
export interface ServicePreset {
  /** Stable id, used with `--preset`. */
  readonly id: string;
  /** Human name of the provider and API. */
  readonly name: string;
  /** Upstream base URL; may contain `{variable}` placeholders. */
  readonly upstream: string;
  /** The `auth` block minus `credential`; string values may contain `{variable}` placeholders. */
  readonly auth: { readonly type: string } & Readonly<Record<string, unknown>>;
  /** Credential fields the mechanic reads. */
  readonly fields: readonly PresetField[];
  /** Response headers removed on top of the global list (they describe the credential). */
  readonly removeHeaders: readonly string[];
  readonly variables?: Readonly<Record<string, PresetVariable>>;
  /** The provider's authentication documentation. */
  readonly docs: string;
  /** One line the operator should know (headers the agent must still send, scopes...). */
  readonly note?: string;
  /**
   * Variables the provider's official SDKs read, for base-URL mode (`config/reach.ts`):
   * `{base_url}[/path]` or `{dummy_key}`. The service's `hosts` is the upstream's host name.
   */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Where a response says what it cost (`cost.json` dotted paths, summed; limits/cost.ts),
   * for `cost` budgets in `limits:`: an LLM API's token usage.
   */
  readonly cost?: { readonly json: readonly string[] };
}

const token = (description: string): readonly PresetField[] => [{ name: 'value', description }];

const OAUTH_CLIENT: readonly PresetField[] = [
  { name: 'client_id', description: 'OAuth client (application) id' },
  { name: 'client_secret', description: 'OAuth client secret' },
];

const ATLASSIAN_BASIC = {
  type: 'basic',
  username_field: 'email',
  password_field: 'api_token',
} as const;
const ATLASSIAN_FIELDS: readonly PresetField[] = [
  { name: 'email', description: 'Atlassian account email' },
  { name: 'api_token', description: 'API token from id.atlassian.com' },
];
const ATLASSIAN_SITE: Readonly<Record<string, PresetVariable>> = {
  site: { description: 'your Atlassian site (<site>.atlassian.net)', example: 'acme' },
};

const MS_TENANT: Readonly<Record<string, PresetVariable>> = {
  tenant: {
    description: 'Microsoft Entra tenant id or domain',
    example: 'contoso.onmicrosoft.com',
  },
};

/** Every built-in preset, sorted by id. */
export const PRESETS: readonly ServicePreset[] = [
  {
    id: 'airtable',
    name: 'Airtable Web API',
    upstream: 'https://api.airtable.com',
    auth: { type: 'bearer' },
    fields: token('personal access token (pat...)'),
    removeHeaders: [],
    docs: 'https://airtable.com/developers/web/api/authentication',
  },
  {
    id: 'anthropic',
    name: 'Anthropic API',
    upstream: 'https://api.anthropic.com',
    auth: { type: 'header', name: 'x-api-key' },
    fields: token('API key (sk-ant-...)'),
    removeHeaders: ['anthropic-organization-id'],
    // Tokens: a message's usage; a stream's message_delta event carries the final usage.
    cost: { json: ['usage.input_tokens', 'usage.output_tokens'] },
    docs: 'https://docs.anthropic.com/en/api/overview#authentication',
    note: 'the agent still sends anthropic-version',
    // The Anthropic SDKs append /v1/... to ANTHROPIC_BASE_URL.
    env: { ANTHROPIC_BASE_URL: '{base_url}', ANTHROPIC_API_KEY: '{dummy_key}' },
  },
  {
    id: 'asana',
    name: 'Asana API',
    upstream: 'https://app.asana.com/api/1.0',
    auth: { type: 'bearer' },
    fields: token('personal access token'),
    removeHeaders: [],
    docs: 'https://developers.asana.com/docs/personal-access-token',
  },
  {
    id: 'aws',
    name: 'Amazon Web Services (any service, SigV4)',
    upstream: 'https://{service}.{region}.amazonaws.com',
    auth: { type: 'aws_sigv4', region: '{region}', service: '{service}' },
    fields: [
      { name: 'access_key_id', description: 'AWS access key id (AKIA... or ASIA...)' },
      { name: 'secret_access_key', description: 'AWS secret access key' },
      { name: 'session_token', description: 'STS session token', optional: true },
    ],
    removeHeaders: [],
    variables: {
      region: { description: 'AWS region', example: 'eu-west-1', default: 'us-east-1' },
      service: { description: 'AWS signing name and endpoint prefix', example: 's3' },
    },
    docs: 'https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html',
    note: 'some services use another host than <service>.<region>: pass --upstream',
  },
  {
    id: 'azure',
    name: 'Azure Resource Manager',
    upstream: 'https://management.azure.com',
    auth: {
      type: 'oauth2_client_credentials',
      token_url: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token',
      auth_method: 'client_secret_post',
      scope: 'https://management.azure.com/.default',
    },
    fields: OAUTH_CLIENT,
    removeHeaders: [],
    variables: MS_TENANT,
    docs: 'https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow',
  },
  {
    id: 'bitbucket',
    name: 'Bitbucket Cloud API',
    upstream: 'https://api.bitbucket.org/2.0',
    auth: { type: 'bearer' },
    fields: token('repository, project or workspace access token'),
    removeHeaders: [],
    docs: 'https://support.atlassian.com/bitbucket-cloud/docs/using-access-tokens/',
  },
  {
    id: 'cloudflare',
    name: 'Cloudflare API',
    upstream: 'https://api.cloudflare.com/client/v4',
    auth: { type: 'bearer' },
    fields: token('API token'),
    removeHeaders: [],
    docs: 'https://developers.cloudflare.com/fundamentals/api/get-started/create-token/',
  },
  {
    id: 'confluence',
    name: 'Confluence Cloud REST API',
    upstream: 'https://{site}.atlassian.net/wiki',
    auth: ATLASSIAN_BASIC,
    fields: ATLASSIAN_FIELDS,
    removeHeaders: [],
    variables: ATLASSIAN_SITE,
    docs: 'https://developer.atlassian.com/cloud/confluence/basic-auth-for-rest-apis/',
  },
  {
    id: 'datadog',
    name: 'Datadog API',
    upstream: 'https://api.{site}',
    auth: { type: 'header', name: 'dd-api-key' },
    fields: token('API key'),
    removeHeaders: [],
    variables: {
      site: { description: 'Datadog site', example: 'datadoghq.eu', default: 'datadoghq.com' },
    },
    docs: 'https://docs.datadoghq.com/api/latest/authentication/',
    note: 'endpoints that also need DD-APPLICATION-KEY need a second credential',
  },
  {
    id: 'discord',
    name: 'Discord API (bot)',
    upstream: 'https://discord.com/api/v10',
    auth: { type: 'header', name: 'authorization', template: 'Bot {{value}}' },
    fields: token('bot token'),
    removeHeaders: [],
    docs: 'https://discord.com/developers/docs/reference#authentication',
  },
  {
    id: 'github',
    name: 'GitHub REST API (token)',
    upstream: 'https://api.github.com',
    auth: { type: 'bearer' },
    fields: token('fine-grained or classic personal access token'),
    removeHeaders: [
      'x-oauth-scopes',
      'x-accepted-oauth-scopes',
      'x-oauth-client-id',
      'github-authentication-token-expiration',
    ],
    docs: 'https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api',
  },
  {
    id: 'github-app',
    name: 'GitHub REST API (GitHub App installation)',
    upstream: 'https://api.github.com',
    auth: { type: 'github_app', installation_id: '{installation_id}' },
    fields: [
      { name: 'app_id', description: 'the App id (or client id)' },
      { name: 'private_key', description: 'the App private key (PEM)' },
    ],
    removeHeaders: ['x-oauth-scopes', 'x-accepted-oauth-scopes'],
    variables: {
      installation_id: { description: 'installation id of the App', example: '12345678' },
    },
    docs: 'https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation',
  },
  {
    id: 'gitlab',
    name: 'GitLab REST API',
    upstream: 'https://gitlab.com/api/v4',
    auth: { type: 'header', name: 'private-token' },
    fields: token('personal, project or group access token (glpat-...)'),
    removeHeaders: [],
    docs: 'https://docs.gitlab.com/api/rest/authentication/',
  },
  {
    id: 'google',
    name: 'Google APIs (service account)',
    upstream: 'https://www.googleapis.com',
    auth: {
      type: 'jwt_bearer',
      token_url: 'https://oauth2.googleapis.com/token',
      scope: 'https://www.googleapis.com/auth/cloud-platform',
    },
    fields: [
      { name: 'client_email', description: 'client_email of the service-account key file' },
      { name: 'private_key', description: 'private_key of the key file (PEM)' },
      { name: 'key_id', description: 'private_key_id of the key file', optional: true },
    ],
    removeHeaders: [],
    docs: 'https://developers.google.com/identity/protocols/oauth2/service-account#httprest',
    note: 'other Google hosts (e.g. sheets.googleapis.com): pass --upstream',
  },
  {
    id: 'google-gemini',
    name: 'Google Gemini API (API key)',
    upstream: 'https://generativelanguage.googleapis.com',
    auth: { type: 'header', name: 'x-goog-api-key' },
    fields: token('API key'),
    removeHeaders: [],
    docs: 'https://ai.google.dev/gemini-api/docs/api-key',
  },
  {
    id: 'hubspot',
    name: 'HubSpot API',
    upstream: 'https://api.hubapi.com',
    auth: { type: 'bearer' },
    fields: token('private app access token'),
    removeHeaders: [],
    docs: 'https://developers.hubspot.com/docs/api/private-apps',
  },
  {
    id: 'huggingface',
    name: 'Hugging Face Hub API',
    upstream: 'https://huggingface.co',
    auth: { type: 'bearer' },
    fields: token('user access token (hf_...)'),
    removeHeaders: [],
    docs: 'https://huggingface.co/docs/hub/security-tokens',
  },
  {
    id: 'intercom',
    name: 'Intercom API',
    upstream: 'https://api.intercom.io',
    auth: { type: 'bearer' },
    fields: token('access token'),
    removeHeaders: [],
    docs: 'https://developers.intercom.com/docs/build-an-integration/learn-more/authentication',
  },
  {
    id: 'jira',
    name: 'Jira Cloud REST API',
    upstream: 'https://{site}.atlassian.net',
    auth: ATLASSIAN_BASIC,
    fields: ATLASSIAN_FIELDS,
    removeHeaders: [],
    variables: ATLASSIAN_SITE,
    docs: 'https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/',
  },
  {
    id: 'linear',
    name: 'Linear GraphQL API',
    upstream: 'https://api.linear.app',
    auth: { type: 'header', name: 'authorization' },
    fields: token('personal API key (lin_api_..., sent without "Bearer")'),
    removeHeaders: [],
    docs: 'https://linear.app/developers/graphql#personal-api-keys',
  },
  {
    id: 'mailgun',
    name: 'Mailgun API',
    upstream: 'https://api.mailgun.net',
    auth: { type: 'basic' },
    fields: [
      { name: 'username', description: 'the literal string "api"' },
      { name: 'password', description: 'API key' },
    ],
    removeHeaders: [],
    docs: 'https://documentation.mailgun.com/docs/mailgun/api-reference/authentication',
    note: 'EU domains: --upstream https://api.eu.mailgun.net',
  },
  {
    id: 'microsoft-graph',
    name: 'Microsoft Graph (app-only)',
    upstream: 'https://graph.microsoft.com',
    auth: {
      type: 'oauth2_client_credentials',
      token_url: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token',
      auth_method: 'client_secret_post',
      scope: 'https://graph.microsoft.com/.default',
    },
    fields: OAUTH_CLIENT,
    removeHeaders: [],
    variables: MS_TENANT,
    docs: 'https://learn.microsoft.com/en-us/graph/auth-v2-service',
  },
  {
    id: 'mistral',
    name: 'Mistral AI API',
    upstream: 'https://api.mistral.ai',
    auth: { type: 'bearer' },
    fields: token('API key'),
    removeHeaders: [],
    docs: 'https://docs.mistral.ai/api/',
  },
  {
    id: 'notion',
    name: 'Notion API',
    upstream: 'https://api.notion.com',
    auth: { type: 'bearer' },
    fields: token('internal integration secret (ntn_... or secret_...)'),
    removeHeaders: [],
    docs: 'https://developers.notion.com/reference/authentication',
    note: 'the agent still sends Notion-Version',
  },
  {
    id: 'openai',
    name: 'OpenAI API',
    upstream: 'https://api.openai.com',
    auth: { type: 'bearer' },
    fields: token('API key (sk-...)'),
    removeHeaders: ['openai-organization', 'openai-project'],
    docs: 'https://platform.openai.com/docs/api-reference/authentication',
    // Tokens; a streamed answer has them in its last event with stream_options.include_usage.
    cost: { json: ['usage.total_tokens'] },
    // The OpenAI SDKs' base URL includes /v1 (their default is https://api.openai.com/v1).
    env: { OPENAI_BASE_URL: '{base_url}/v1', OPENAI_API_KEY: '{dummy_key}' },
  },
  {
    id: 'pagerduty',
    name: 'PagerDuty REST API',
    upstream: 'https://api.pagerduty.com',
    auth: { type: 'header', name: 'authorization', template: 'Token token={{value}}' },
    fields: token('REST API key'),
    removeHeaders: [],
    docs: 'https://developer.pagerduty.com/docs/authentication',
  },
  {
    id: 'salesforce',
    name: 'Salesforce REST API (client credentials)',
    upstream: 'https://{instance}.my.salesforce.com',
    auth: {
      type: 'oauth2_client_credentials',
      token_url: 'https://{instance}.my.salesforce.com/services/oauth2/token',
      auth_method: 'client_secret_post',
    },
    fields: [
      { name: 'client_id', description: 'connected app consumer key' },
      { name: 'client_secret', description: 'connected app consumer secret' },
    ],
    removeHeaders: [],
    variables: { instance: { description: 'My Domain name', example: 'acme' } },
    docs: 'https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm',
  },
  {
    id: 'sendgrid',
    name: 'SendGrid v3 API',
    upstream: 'https://api.sendgrid.com',
    auth: { type: 'bearer' },
    fields: token('API key (SG....)'),
    removeHeaders: [],
    docs: 'https://www.twilio.com/docs/sendgrid/for-developers/sending-email/authentication',
  },
  {
    id: 'sentry',
    name: 'Sentry API',
    upstream: 'https://sentry.io/api/0',
    auth: { type: 'bearer' },
    fields: token('auth token'),
    removeHeaders: [],
    docs: 'https://docs.sentry.io/api/auth/',
  },
  {
    id: 'shopify',
    name: 'Shopify Admin API',
    upstream: 'https://{shop}.myshopify.com/admin/api',
    auth: { type: 'header', name: 'x-shopify-access-token' },
    fields: token('Admin API access token (shpat_...)'),
    removeHeaders: [],
    variables: { shop: { description: 'shop name (<shop>.myshopify.com)', example: 'acme' } },
    docs: 'https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/generate-app-access-tokens-admin',
  },
  {
    id: 'slack',
    name: 'Slack Web API',
    upstream: 'https://slack.com/api',
    auth: { type: 'bearer' },
    fields: token('bot or user token (xoxb-..., xoxp-...)'),
    removeHeaders: ['x-oauth-scopes', 'x-accepted-oauth-scopes'],
    docs: 'https://api.slack.com/authentication/token-types',
  },
  {
    id: 'stripe',
    name: 'Stripe API',
    upstream: 'https://api.stripe.com',
    auth: { type: 'bearer' },
    fields: token('secret or restricted key (sk_..., rk_...)'),
    removeHeaders: [],
    docs: 'https://docs.stripe.com/api/authentication',
  },
  {
    id: 'supabase',
    name: 'Supabase project API',
    upstream: 'https://{project}.supabase.co',
    auth: { type: 'header', name: 'apikey' },
    fields: token('secret API key (sb_secret_...)'),
    removeHeaders: [],
    variables: { project: { description: 'project ref', example: 'abcdefghijklmnop' } },
    docs: 'https://supabase.com/docs/guides/api/api-keys',
  },
  {
    id: 'twilio',
    name: 'Twilio REST API',
    upstream: 'https://api.twilio.com',
    auth: { type: 'basic', username_field: 'account_sid', password_field: 'auth_token' },
    fields: [
      { name: 'account_sid', description: 'Account SID (AC...) or API key SID (SK...)' },
      { name: 'auth_token', description: 'auth token or API key secret' },
    ],
    removeHeaders: [],
    docs: 'https://www.twilio.com/docs/usage/requests-to-twilio',
  },
  {
    id: 'vercel',
    name: 'Vercel REST API',
    upstream: 'https://api.vercel.com',
    auth: { type: 'bearer' },
    fields: token('access token'),
    removeHeaders: [],
    docs: 'https://vercel.com/docs/rest-api#authentication',
  },
  {
    id: 'zendesk',
    name: 'Zendesk Support API',
    upstream: 'https://{subdomain}.zendesk.com/api/v2',
    auth: { type: 'basic' },
    fields: [
      { name: 'username', description: 'agent email followed by /token (you@acme.com/token)' },
      { name: 'password', description: 'API token' },
    ],
    removeHeaders: [],
    variables: { subdomain: { description: 'your Zendesk subdomain', example: 'acme' } },
    docs: 'https://developer.zendesk.com/api-reference/introduction/security-and-auth/',
  },
];

/** The preset with this id, if any. */
export function getPreset(id: string): ServicePreset | undefined {
  return PRESETS.find((p) => p.id === id);
}
