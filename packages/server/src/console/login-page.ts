/**
 * The console's login page: a plain form (no script) that posts an operator token to
 * `/console/login`. Its only variable text is a fixed message chosen by Nexus.
 */

/**
 * The login page, with an optional error message (fixed text, never request input) and,
 * when OIDC login is configured, a single sign-on link.
 */
export function loginPage(error?: string, oidc = false): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nexus console: log in</title>
<link rel="icon" href="/console/static/favicon.svg">
<link rel="stylesheet" href="/console/static/app.css">
</head>
<body class="login">
<main>
<h1>Nexus console</h1>
${oidc ? '<p><a class="sso" href="/console/oidc/login">Log in with single sign-on</a></p>\n<p class="hint">Or with an operator token:</p>' : ''}
<form method="post" action="/console/login" autocomplete="off">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" required autofocus placeholder="nxo_...">
<button type="submit">Log in</button>
</form>
${error === undefined ? '' : `<p class="error" role="alert">${error}</p>`}
<p class="hint">The token <code>nexus init</code> wrote to <code>.nexus/operator.token</code>
(the one the CLI uses).</p>
</main>
</body>
</html>
`;
}

/** A page that moves the browser on to `to` (a fixed console path), without script. */
export function redirectPage(to: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="0;url=${to}">
<title>Nexus console</title>
<link rel="stylesheet" href="/console/static/app.css">
</head>
<body class="login">
<main><p>Logged in. <a href="${to}">Open the console</a>.</p></main>
</body>
</html>
`;
}
