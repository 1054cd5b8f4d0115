// The Nexus console page: vanilla JS, no build step. It calls the admin API through the
// console's session (`/console/api/v1/...`) and renders with textContent only, never
// innerHTML: audit records hold agent-chosen text (intent, path).
/* global document, window, location, confirm, setInterval, clearInterval, URLSearchParams */

const API = '/console/api';
let csrf = '';
let csrfHeader = 'x-nexus-csrf';
let timer;
/** The session's role; buttons it may not use are disabled (the admin API enforces it). */
let role = 'admin';
const ROLES = ['viewer', 'operator', 'admin'];
const may = (need) => ROLES.indexOf(role) >= ROLES.indexOf(need);

/** Creates an element; children are nodes or text. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  }
  return e;
}

function status(text) {
  document.getElementById('status').textContent = text ?? '';
}

async function call(method, path, body) {
  const headers = {};
  if (method !== 'GET') headers[csrfHeader] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (res.status === 401) {
    location.href = '/console/login';
    throw new Error('logged out');
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new Error(`${data?.code ?? res.status}: ${data?.detail ?? data?.title ?? ''}`);
  return data;
}

/** Runs an action from a button, then redraws the page. */
function action(label, fn, { danger = false, confirmText } = {}) {
  // Every action button revokes, disables, approves, denies or connects: operator.
  return el(
    'button',
    {
      type: 'button',
      class: danger ? 'danger' : 'secondary',
      disabled: !may('operator'),
      title: may('operator') ? undefined : 'needs the operator role',
      onclick: async () => {
        if (confirmText !== undefined && !confirm(confirmText)) return;
        try {
          await fn();
          status('');
          await show();
        } catch (e) {
          status(String(e.message ?? e));
        }
      },
    },
    label,
  );
}

/** A table; `rows` is an array of rows, or a tbody the caller refills. */
function table(headers, rows) {
  return el(
    'table',
    {},
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        headers.map((h) => el('th', {}, h)),
      ),
    ),
    Array.isArray(rows) ? el('tbody', {}, rows) : rows,
  );
}

const when = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');
const enc = encodeURIComponent;

const pages = {
  async agents(view) {
    const [{ agents }, { leases }] = await Promise.all([
      call('GET', '/v1/agents'),
      call('GET', '/v1/leases'),
    ]);
    view.append(
      el('h2', {}, 'Agents'),
      table(
        ['Name', 'Roles', 'State', 'Source', 'Created', ''],
        agents.map((a) =>
          el(
            'tr',
            { 'data-agent': a.name },
            el('td', {}, a.name),
            el('td', {}, a.roles.join(', ')),
            el('td', {}, a.disabled ? el('span', { class: 'bad' }, 'disabled') : 'enabled'),
            el('td', {}, a.source ?? ''),
            el('td', {}, when(a.created_at)),
            el(
              'td',
              {},
              a.disabled
                ? action('Enable', () => call('POST', `/v1/agents/${enc(a.name)}/enable`))
                : action('Disable', () => call('POST', `/v1/agents/${enc(a.name)}/disable`)),
              ' ',
              action('Revoke leases', () =>
                call('POST', `/v1/agents/${enc(a.name)}/revoke-leases`),
              ),
            ),
          ),
        ),
      ),
      el('h3', {}, `Live leases (${leases.length})`),
      table(
        ['Lease', 'Agent', 'Issued', 'Expires', 'On behalf of', 'Task', 'Key', ''],
        leases.map((l) =>
          el(
            'tr',
            { 'data-lease': l.id },
            el('td', {}, el('code', {}, l.id)),
            el('td', {}, l.agent),
            el('td', {}, when(l.issued_at)),
            el('td', {}, when(l.expires_at)),
            el('td', {}, l.act ?? ''),
            el('td', {}, l.task ?? ''),
            el('td', {}, el('code', {}, (l.key_thumbprint ?? '').slice(0, 12))),
            el(
              'td',
              {},
              action('Revoke', () => call('POST', `/v1/leases/${enc(l.id)}/revoke`), {
                danger: true,
              }),
            ),
          ),
        ),
      ),
      el('h3', {}, 'Kill switch'),
      el(
        'p',
        { class: 'muted' },
        'Revokes every live lease of every agent at once. Agents must enroll again.',
      ),
      action('Revoke all leases', () => call('POST', '/v1/leases/revoke-all'), {
        danger: true,
        confirmText: 'Revoke every live lease of every agent?',
      }),
    );
  },

  async services(view) {
    const [{ services }, { credentials }, { presets }] = await Promise.all([
      call('GET', '/v1/services'),
      call('GET', '/v1/credentials'),
      call('GET', '/v1/presets'),
    ]);
    const form = el(
      'form',
      {
        class: 'inline',
        id: 'add-service',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const f = new window.FormData(form);
          const vars = {};
          for (const pair of String(f.get('vars') ?? '').split(/[\s,]+/)) {
            const i = pair.indexOf('=');
            if (i > 0) vars[pair.slice(0, i)] = pair.slice(i + 1);
          }
          try {
            const r = await call('POST', '/v1/services', {
              name: f.get('name'),
              preset: f.get('preset'),
              ...(f.get('credential') ? { credential: f.get('credential') } : {}),
              ...(f.get('upstream') ? { upstream: f.get('upstream') } : {}),
              ...(Object.keys(vars).length > 0 ? { vars } : {}),
            });
            await show();
            status(
              `Added service ${r.service} (${r.preset}). Set its credential "${r.credential}" ` +
                `(fields ${r.credential_fields.join(', ')}) with nexus credential set, then ` +
                `allow agents to use it in a policy.`,
            );
          } catch (e) {
            status(String(e.message ?? e));
          }
        },
      },
      el(
        'label',
        {},
        'Preset',
        el(
          'select',
          { name: 'preset' },
          presets.map((p) => el('option', { value: p.id }, `${p.id} (${p.name})`)),
        ),
      ),
      el('label', {}, 'Name', el('input', { name: 'name', required: true, size: 12 })),
      el(
        'label',
        {},
        'Credential',
        el('input', { name: 'credential', placeholder: 'default: the name', size: 14 }),
      ),
      el(
        'label',
        {},
        'Upstream',
        el('input', { name: 'upstream', placeholder: "default: the preset's", size: 22 }),
      ),
      el(
        'label',
        {},
        'Variables',
        el('input', { name: 'vars', placeholder: 'region=eu-west-1', size: 16 }),
      ),
      el(
        'button',
        {
          type: 'submit',
          disabled: !may('admin'),
          title: may('admin') ? undefined : 'needs the admin role',
        },
        'Add service',
      ),
    );
    const byName = new Map(credentials.map((c) => [c.name, c]));
    const health = (name) => {
      if (name === undefined) return el('span', { class: 'muted' }, 'none needed');
      const c = byName.get(name);
      return c === undefined
        ? el('span', { class: 'bad' }, 'not set')
        : el('span', { class: 'ok' }, `set (v${c.version}; fields ${c.fields.join(', ')})`);
    };
    view.append(
      el('h2', {}, 'Services'),
      table(
        ['Service', 'Upstream', 'Mechanic', 'Credential', 'Health'],
        services.map((s) =>
          el(
            'tr',
            { 'data-service': s.name },
            el('td', {}, s.name),
            el('td', {}, el('code', {}, s.upstream)),
            el('td', {}, s.auth_type),
            el('td', {}, s.credential ?? ''),
            el('td', {}, health(s.credential)),
          ),
        ),
      ),
      el('h3', {}, 'Add a service from a preset'),
      el(
        'p',
        { class: 'muted' },
        'Writes the service into nexus.yaml and reloads the node. The credential is set ' +
          'apart (nexus credential set): no value goes through the console.',
      ),
      form,
      el('h3', {}, 'Credentials in the vault'),
      el('p', { class: 'muted' }, 'Names and field names only: values are never shown.'),
      table(
        ['Name', 'Version', 'Fields', 'Updated'],
        credentials.map((c) =>
          el(
            'tr',
            {},
            el('td', {}, c.name),
            el('td', {}, c.version),
            el('td', {}, c.fields.join(', ')),
            el('td', {}, when(c.updated_at)),
          ),
        ),
      ),
    );
  },

  async policies(view) {
    const [{ agents }, { services }] = await Promise.all([
      call('GET', '/v1/agents'),
      call('GET', '/v1/services'),
    ]);
    const out = el('pre', { id: 'explain-result' }, 'Fill in a request and press Explain.');
    const verdict = el('p', { id: 'explain-verdict' });
    const form = el(
      'form',
      {
        class: 'inline',
        id: 'explain',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const f = new window.FormData(form);
          try {
            const r = await call('POST', '/v1/policy/explain', {
              agent: f.get('agent'),
              service: f.get('service'),
              method: f.get('method'),
              path: f.get('path'),
              intent: f.get('intent'),
            });
            const d = r?.decision ?? '?';
            verdict.replaceChildren(
              'Decision: ',
              el('span', { class: d === 'allow' ? 'ok' : 'bad' }, d),
            );
            out.textContent = JSON.stringify(r, null, 2);
            status('');
          } catch (e) {
            status(String(e.message ?? e));
          }
        },
      },
      el(
        'label',
        {},
        'Agent',
        el(
          'select',
          { name: 'agent' },
          agents.map((a) => el('option', {}, a.name)),
        ),
      ),
      el(
        'label',
        {},
        'Service',
        el(
          'select',
          { name: 'service' },
          services.map((s) => el('option', {}, s.name)),
        ),
      ),
      el(
        'label',
        {},
        'Method',
        el(
          'select',
          { name: 'method' },
          ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => el('option', {}, m)),
        ),
      ),
      el('label', {}, 'Path', el('input', { name: 'path', value: '/', size: 30 })),
      el('label', {}, 'Intent', el('input', { name: 'intent', value: '', size: 24 })),
      el('button', { type: 'submit' }, 'Explain'),
    );
    view.append(
      el('h2', {}, 'Policies'),
      el(
        'p',
        { class: 'muted' },
        'The explain simulator evaluates the policies in force for a request without sending it.',
      ),
      form,
      verdict,
      out,
    );
  },

  async limits(view) {
    const body = el('tbody', {});
    view.append(
      el('h2', {}, 'Limits'),
      el(
        'p',
        { class: 'muted' },
        'Rate limits and budgets from the limits section of nexus.yaml, with the live ' +
          'counters of every agent or service that used some of them in the current window.',
      ),
      table(['Limit', 'Matches', 'Per', 'Caps', 'Live counters'], body),
    );
    const match = (m) =>
      [
        m.agents && `agents ${m.agents.join(', ')}`,
        m.roles && `roles ${m.roles.join(', ')}`,
        m.services && `services ${m.services.join(', ')}`,
        m.credentials && `credentials ${m.credentials.join(', ')}`,
      ]
        .filter(Boolean)
        .join('; ') || 'every request';
    const caps = (l) =>
      [
        l.requests && `${l.requests.max} requests / ${l.requests.window_seconds}s`,
        l.concurrent && `${l.concurrent} in flight`,
        l.bytes && `${l.bytes.max} bytes / ${l.bytes.window_seconds}s`,
        l.cost && `cost ${l.cost.max} / ${l.cost.window_seconds}s`,
      ]
        .filter(Boolean)
        .join(', ');
    const counter = (c) => {
      const parts = [
        c.requests && `${c.requests.used}/${c.requests.max} requests`,
        c.concurrent && `${c.concurrent.in_flight}/${c.concurrent.max} in flight`,
        c.bytes && `${c.bytes.used}/${c.bytes.max} bytes`,
        c.cost && `cost ${c.cost.used}/${c.cost.max}`,
      ].filter(Boolean);
      const full =
        (c.requests && c.requests.used >= c.requests.max) ||
        (c.bytes && c.bytes.used >= c.bytes.max) ||
        (c.cost && c.cost.used >= c.cost.max);
      return el(
        'div',
        { 'data-subject': c.subject, class: full ? 'bad' : undefined },
        `${c.subject}: ${parts.join(', ')}`,
      );
    };
    const load = async () => {
      const { limits } = await call('GET', '/v1/limits');
      body.replaceChildren(
        ...limits.map((l) =>
          el(
            'tr',
            { 'data-limit': l.id },
            el('td', {}, l.id, l.description ? el('div', { class: 'muted' }, l.description) : ''),
            el('td', {}, match(l.match)),
            el('td', {}, l.per),
            el('td', {}, caps(l)),
            el(
              'td',
              {},
              l.counters.length === 0
                ? el('span', { class: 'muted' }, 'nothing counted yet')
                : l.counters.map(counter),
            ),
          ),
        ),
      );
    };
    await load();
    timer = setInterval(() => {
      load().catch((e) => status(String(e.message ?? e)));
    }, 2000);
  },

  async approvals(view) {
    const body = el('tbody', {});
    const count = el('h2', {}, 'Pending approvals');
    view.append(
      count,
      el(
        'p',
        { class: 'muted' },
        'Requests held by an approve rule, waiting for a person. Approve forwards exactly the ' +
          'request the agent signed; deny answers it approval_denied. Headers, query and body ' +
          'are never shown.',
      ),
      table(
        ['Held since', 'Agent', 'Service', 'Request', 'Intent', 'Rule', 'Approvers', 'Expires', ''],
        body,
      ),
    );
    let shown;
    const load = async () => {
      const { approvals } = await call('GET', '/v1/approvals');
      // Redraw only when the set changes: a row must not move under the operator's click.
      const key = approvals.map((a) => a.id).join(' ');
      if (key === shown) return;
      shown = key;
      count.textContent = `Pending approvals (${approvals.length})`;
      body.replaceChildren(
        ...approvals.map((a) =>
          el(
            'tr',
            { 'data-approval': a.id },
            el('td', {}, when(a.created_at)),
            el('td', {}, a.act ? `${a.agent} for ${a.act}` : a.agent),
            el('td', {}, a.service),
            el('td', {}, el('code', {}, `${a.method} ${a.path}`)),
            el('td', {}, a.intent),
            el('td', {}, a.rule_id),
            el('td', {}, a.approvers ? a.approvers.join(', ') : 'any operator'),
            el('td', {}, when(a.expires_at)),
            el(
              'td',
              {},
              action('Approve', () => call('POST', `/v1/approvals/${enc(a.id)}/approve`)),
              ' ',
              action('Deny', () => call('POST', `/v1/approvals/${enc(a.id)}/deny`), {
                danger: true,
              }),
            ),
          ),
        ),
      );
    };
    await load();
    // Live: held requests appear (and timed-out ones go) without a reload.
    timer = setInterval(() => {
      load().catch((e) => status(String(e.message ?? e)));
    }, 2000);
  },

  async connections(view) {
    const [{ connections }, { services }] = await Promise.all([
      call('GET', '/v1/connections'),
      call('GET', '/v1/services'),
    ]);
    const oauth = services.filter((s) => s.auth_type === 'oauth2_authorization_code');
    const form = el(
      'form',
      {
        class: 'inline',
        id: 'connect',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const f = new window.FormData(form);
          try {
            const r = await call('POST', `/v1/connections/${enc(f.get('service'))}`, {
              principal: f.get('principal'),
            });
            // The provider's consent page; it redirects back to the admin callback.
            window.open(r.authorize_url, '_blank', 'noopener');
            status('');
          } catch (e) {
            status(String(e.message ?? e));
          }
        },
      },
      el(
        'label',
        {},
        'Service',
        el(
          'select',
          { name: 'service' },
          oauth.map((s) => el('option', {}, s.name)),
        ),
      ),
      el('label', {}, 'Principal', el('input', { name: 'principal', required: true })),
      el('button', { type: 'submit', disabled: oauth.length === 0 || !may('operator') }, 'Connect'),
    );
    view.append(
      el('h2', {}, 'OAuth connections'),
      oauth.length === 0
        ? el('p', { class: 'muted' }, 'No oauth2_authorization_code service is configured.')
        : form,
      table(
        ['Service', 'Principal', 'Connected', 'Refreshed', ''],
        connections.map((c) =>
          el(
            'tr',
            {},
            el('td', {}, c.service),
            el('td', {}, c.principal),
            el('td', {}, when(c.created_at)),
            el('td', {}, when(c.refreshed_at)),
            el(
              'td',
              {},
              action(
                'Remove',
                () => call('DELETE', `/v1/connections/${enc(c.service)}/${enc(c.principal)}`),
                { danger: true, confirmText: `Remove ${c.principal} from ${c.service}?` },
              ),
            ),
          ),
        ),
      ),
    );
  },

  async audit(view) {
    const params = new URLSearchParams(location.hash.split('?')[1] ?? '');
    const verify = el('p', { id: 'chain' }, 'Verifying the chain...');
    const detail = el('pre', { id: 'record' }, 'Select a record to see it whole.');
    const body = el('tbody', {});
    const form = el(
      'form',
      {
        class: 'inline',
        id: 'audit-filters',
        onsubmit: (ev) => {
          ev.preventDefault();
          const f = new window.FormData(form);
          const q = new URLSearchParams();
          for (const k of ['agent', 'service', 'decision', 'kind']) {
            const v = String(f.get(k) ?? '').trim();
            if (v !== '') q.set(k, v);
          }
          location.hash = `audit?${q}`;
        },
      },
      el('label', {}, 'Agent', el('input', { name: 'agent', value: params.get('agent') ?? '' })),
      el(
        'label',
        {},
        'Service',
        el('input', { name: 'service', value: params.get('service') ?? '' }),
      ),
      el(
        'label',
        {},
        'Decision',
        el(
          'select',
          { name: 'decision' },
          ['', 'allow', 'deny'].map((d) =>
            el('option', { value: d, selected: params.get('decision') === d }, d || 'any'),
          ),
        ),
      ),
      el(
        'label',
        {},
        'Kind',
        el(
          'select',
          { name: 'kind' },
          ['', 'request', 'outcome', 'authority'].map((d) =>
            el('option', { value: d, selected: params.get('kind') === d }, d || 'any'),
          ),
        ),
      ),
      el('button', { type: 'submit' }, 'Filter'),
    );
    view.append(
      el('h2', {}, 'Audit'),
      verify,
      form,
      el(
        'div',
        { class: 'split' },
        table(
          ['Seq', 'Time', 'Kind', 'Agent', 'Service', 'Request', 'Intent', 'Decision', 'Status'],
          body,
        ),
        detail,
      ),
    );
    let selected;
    const load = async () => {
      const q = new URLSearchParams(params);
      q.set('limit', '100');
      const { records } = await call('GET', `/v1/audit?${q}`);
      body.replaceChildren(
        ...records.map((r) => {
          const row = el(
            'tr',
            {
              class: r.seq === selected ? 'clickable selected' : 'clickable',
              'data-seq': r.seq,
              'data-decision': r.decision ?? '',
              'data-kind': r.kind,
              onclick: () => {
                selected = r.seq;
                for (const t of body.children) t.classList.remove('selected');
                row.classList.add('selected');
                detail.textContent = JSON.stringify(r, null, 2);
              },
            },
            el('td', {}, r.seq),
            el('td', {}, when(r.time)),
            el('td', {}, r.kind),
            el('td', {}, (r.agent ?? '').replace(/^nexus:\/\/[^/]+\/agent\//, '')),
            el('td', {}, r.service ?? ''),
            el('td', {}, r.method ? `${r.method} ${r.path}` : (r.action ?? '')),
            el('td', {}, r.intent ?? ''),
            el('td', { class: r.decision === 'deny' ? 'bad' : '' }, r.decision ?? ''),
            el('td', {}, r.upstream_status ?? r.error_code ?? ''),
          );
          return row;
        }),
      );
    };
    const check = async () => {
      const v = await call('GET', '/v1/audit/verify');
      verify.replaceChildren(
        v.ok
          ? el('span', { class: 'ok' }, `Chain verified: ${v.count} records intact`)
          : el(
              'span',
              { class: 'bad' },
              // A cluster store has one chain per node: the failure names it.
              `Chain BROKEN at seq ${v.seq}${v.chain ? ` of ${v.chain}` : ''}: ${v.reason}`,
            ),
        v.checkpoints === undefined ? '' : ` (${v.checkpoints} signed checkpoints`,
        v.chains === undefined ? '' : `, ${v.chains} node chains`,
        v.checkpoints === undefined ? '' : ')',
        el('span', { class: 'muted' }, ` at ${when(new Date().toISOString())}`),
      );
    };
    await Promise.all([load(), check()]);
    // Live: new records appear without a reload while this page is open.
    timer = setInterval(() => {
      load().catch((e) => status(String(e.message ?? e)));
    }, 2000);
  },
};

async function show() {
  clearInterval(timer);
  const name = (location.hash.slice(1).split('?')[0] || 'agents').toLowerCase();
  const page = Object.hasOwn(pages, name) ? name : 'agents';
  for (const a of document.querySelectorAll('header nav a'))
    a.classList.toggle('active', a.dataset.page === page);
  const view = el('div', { 'data-page': page });
  try {
    await pages[page](view);
    document.getElementById('view').replaceChildren(view);
  } catch (e) {
    status(String(e.message ?? e));
  }
}

async function start() {
  const res = await fetch('/console/session', { credentials: 'same-origin' });
  if (!res.ok) {
    location.href = '/console/login';
    return;
  }
  const s = await res.json();
  csrf = s.csrf_token;
  csrfHeader = s.csrf_header;
  // Who is logged in and their role; the admin API enforces the role on every call.
  if (s.user !== undefined) {
    role = s.user.role;
    document.getElementById('user').textContent = `${s.user.name} (${s.user.role})`;
  }
  document.getElementById('logout').addEventListener('click', async () => {
    await fetch('/console/logout', {
      method: 'POST',
      headers: { [csrfHeader]: csrf },
      credentials: 'same-origin',
    });
    location.href = '/console/login';
  });
  window.addEventListener('hashchange', () => {
    show().catch((e) => status(String(e.message ?? e)));
  });
  await show();
}

start().catch((e) => status(String(e.message ?? e)));
