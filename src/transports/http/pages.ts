import type { HttpApp } from './http-server.ts';
import { Auth } from './route-auth.ts';

/**
 * The few HTML pages Hearth serves besides the console (console-routes.ts serves `/`): the pages
 * that e-mailed links open (`/reset-password`, `/verify-email`,
 * `/invitations/accept`), each a form that posts the token from its link to the REST API (signed
 * in first where the token acts for an account). No dependencies, no inline script (a
 * strict Content-Security-Policy allows them): the one script is served from `/pages.js`.
 */
export async function pageRoutes(app: HttpApp, _deps: { version: string }): Promise<void> {
  const html = (title: string, body: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${title} · Hearth</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}
input,button{font:inherit;padding:.4rem .6rem;margin:.3rem 0;width:100%;box-sizing:border-box}code{background:#f3f3f3;padding:0 .2rem}
#status{min-height:1.5rem}</style></head>
<body><h1>${title}</h1>
${body}
</body></html>
`;
  const send = (title: string, body: string) => ({ title, body });
  const page = (path: string, make: () => { title: string; body: string }) => {
    app.get(path, { schema: { hide: true }, config: { auth: Auth.public } }, async (_req, reply) => {
      const p = make();
      return (
        reply
          .type('text/html; charset=utf-8')
          // the token in the address must not leave in a Referer header or stay in a cache
          .header('referrer-policy', 'no-referrer')
          .header('cache-control', 'no-store')
          .send(html(p.title, p.body))
      );
    });
  };

  page('/reset-password', () =>
    send(
      'Choose a new password',
      `<form id="form" data-endpoint="/api/v1/auth/password-reset/confirm" data-done="Your password is changed; every session of the account has ended. Sign in with the new one.">
<label>New password (at least 8 characters)<input type="password" name="newPassword" minlength="8" required autocomplete="new-password"></label>
<label>Once more<input type="password" name="again" minlength="8" required autocomplete="new-password"></label>
<button type="submit">Set the password</button>
</form>
<p id="status" role="status"></p>
<noscript><p>Without JavaScript: <code>curl -X POST /api/v1/auth/password-reset/confirm -H 'content-type: application/json' -d '{"token":"…","newPassword":"…"}'</code> with the token from the link.</p></noscript>
<script src="/pages.js"></script>`,
    ),
  );

  // These two links act for an account: the page signs in first (the token proves the mailbox, the
  // password proves the account), then sends the token with the session.
  page('/verify-email', () =>
    send(
      'Confirm your e-mail address',
      `<p>Sign in to the account that should hold this address.</p>
<form id="form" data-endpoint="/api/v1/auth/verify-email" data-signin="1" data-done="Your e-mail address is confirmed.">
<label>Your e-mail<input type="email" name="signin-email" required autocomplete="username"></label>
<label>Your password<input type="password" name="signin-password" required autocomplete="current-password"></label>
<button type="submit">Confirm</button>
</form>
<p id="status" role="status"></p>
<noscript><p>Without JavaScript: sign in with <code>POST /api/v1/auth/login</code>, then <code>curl -X POST /api/v1/auth/verify-email -H 'authorization: Bearer …' -H 'content-type: application/json' -d '{"token":"…"}'</code> with the token from the link.</p></noscript>
<script src="/pages.js"></script>`,
    ),
  );

  page('/invitations/accept', () =>
    send(
      'Join a home',
      `<p>Sign in to the account the invitation was sent to (its address must be confirmed).</p>
<form id="form" data-endpoint="/api/v1/invitations/accept" data-signin="1" data-done="You are a member of the home now: it is in your app.">
<label>Your e-mail<input type="email" name="signin-email" required autocomplete="username"></label>
<label>Your password<input type="password" name="signin-password" required autocomplete="current-password"></label>
<button type="submit">Accept the invitation</button>
</form>
<p id="status" role="status"></p>
<noscript><p>Without JavaScript: sign in with <code>POST /api/v1/auth/login</code>, then <code>curl -X POST /api/v1/invitations/accept -H 'authorization: Bearer …' -H 'content-type: application/json' -d '{"token":"…"}'</code> with the token from the link.</p></noscript>
<script src="/pages.js"></script>`,
    ),
  );

  app.get('/pages.js', { schema: { hide: true }, config: { auth: Auth.public } }, async (_req, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(PAGES_JS),
  );
}

/** Posts the token of the page's link (and the form's fields) as JSON to the form's endpoint. */
const PAGES_JS = `'use strict';
(function () {
  var form = document.getElementById('form');
  var status = document.getElementById('status');
  var token = new URLSearchParams(location.search).get('token');
  // The token stays in memory only: out of the address bar, the history and later Referer headers.
  history.replaceState(null, '', location.pathname);
  if (!token) { status.textContent = 'This link has no token. Open the link from the e-mail again.'; form.hidden = true; return; }
  function submit(event) {
    if (event) event.preventDefault();
    var body = { token: token };
    var signin = {};
    var fields = form.querySelectorAll('input[name]');
    for (var i = 0; i < fields.length; i++) {
      var name = fields[i].name;
      if (name.indexOf('signin-') === 0) signin[name.slice(7)] = fields[i].value;
      else if (name !== 'again') body[name] = fields[i].value;
    }
    var again = form.querySelector('input[name="again"]');
    if (again && again.value !== body.newPassword) { status.textContent = 'The two passwords differ.'; return; }
    status.textContent = 'Sending…';
    function problem(res) {
      return res.json().then(function (p) { status.textContent = (p && (p.detail || p.title)) || ('Failed (' + res.status + ')'); }, function () { status.textContent = 'Failed (' + res.status + ')'; });
    }
    function post(bearer) {
      var headers = { 'content-type': 'application/json' };
      if (bearer) headers.authorization = 'Bearer ' + bearer;
      return fetch(form.dataset.endpoint, { method: 'POST', headers: headers, body: JSON.stringify(body) }).then(function (res) {
        if (res.ok) { form.hidden = true; status.textContent = form.dataset.done; return; }
        return problem(res);
      });
    }
    var done = !form.dataset.signin ? post() : fetch('/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(signin) })
      .then(function (res) {
        if (!res.ok) return problem(res);
        return res.json().then(function (s) { return post(s.token); });
      });
    done.catch(function () { status.textContent = 'Hearth could not be reached; try again.'; });
  }
  form.addEventListener('submit', submit);
})();
`;
