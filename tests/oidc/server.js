// A real OpenID Connect provider (the `oidc-provider` package) on loopback, for Parley's login
// tests. Its login and consent pages are plain HTML forms, so a test signs in with an HTTP client
// alone. Configured from the environment:
//   OIDC_PORT            port on 127.0.0.1 (the issuer is http://127.0.0.1:<port>)
//   OIDC_LISTEN_FD       optional: an already bound socket of that port to listen on
//   OIDC_CLIENT_ID       the one static client (client_secret_basic, authorization code + PKCE)
//   OIDC_CLIENT_SECRET
//   OIDC_REDIRECT_URIS   comma-separated, exact
//   OIDC_ACCOUNTS        JSON list of accounts: {sub, password, email, email_verified, name}
//   OIDC_CONTROL_TOKEN   bearer token of POST /_test/accounts, which adds an account (tests make
//                        a fresh identity each, so they don't depend on one another)

import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const controlToken = process.env.OIDC_CONTROL_TOKEN || '';

const accounts = new Map();
function addAccount(account) {
  if (!account || typeof account.sub !== 'string' || !account.sub) {
    throw new Error('an account needs a sub');
  }
  accounts.set(account.sub, {
    sub: account.sub,
    password: String(account.password ?? ''),
    email: account.email,
    email_verified: Boolean(account.email_verified),
    name: account.name ?? account.sub,
    preferred_username: account.preferred_username ?? account.sub,
  });
}
for (const account of JSON.parse(process.env.OIDC_ACCOUNTS || '[]')) {
  addAccount(account);
}

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const jwk = { ...signingKey.export({ format: 'jwk' }), kid: 'test-key', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID,
      client_secret: process.env.OIDC_CLIENT_SECRET,
      redirect_uris: (process.env.OIDC_REDIRECT_URIS || '').split(',').filter(Boolean),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  // Parley must send PKCE: a login without it fails here.
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const account = accounts.get(sub);
    if (!account) {
      return undefined;
    }
    return {
      accountId: sub,
      async claims() {
        const { password, ...claims } = account;
        return claims;
      },
    };
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, message = '') {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><title>Sign in</title>
<p>${escape(message)}</p>
<form method="post" action="/interaction/${escape(uid)}/login">
  <input name="login" autofocus> <input name="password" type="password">
  <button type="submit">Sign in</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

async function consent(req, res, interaction) {
  // First-party client: consent is given without asking.
  const { prompt: { details }, params, session: { accountId } } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (details.missingOIDCScope) {
    grant.addOIDCScope(details.missingOIDCScope.join(' '));
  }
  if (details.missingOIDCClaims) {
    grant.addOIDCClaims(details.missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const result = { consent: interaction.grantId ? {} : { grantId } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function interactionRoute(req, res, path) {
  const interaction = await provider.interactionDetails(req, res);
  const [, , uid, action] = path.split('/');
  if (uid !== interaction.uid) {
    res.writeHead(400).end('interaction mismatch');
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const account = accounts.get(form.get('login') || '');
    if (!account || account.password !== form.get('password')) {
      loginPage(res, uid, 'Invalid login or password.');
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: account.sub } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  if (interaction.prompt.name === 'login') {
    loginPage(res, uid);
    return;
  }
  if (interaction.prompt.name === 'consent') {
    await consent(req, res, interaction);
    return;
  }
  res.writeHead(400).end(`unsupported prompt ${interaction.prompt.name}`);
}

async function controlRoute(req, res) {
  const expected = Buffer.from(`Bearer ${controlToken}`);
  const given = Buffer.from(req.headers.authorization || '');
  if (!controlToken || given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    res.writeHead(401).end();
    return;
  }
  addAccount(await readJson(req));
  res.writeHead(204).end();
}

const handleProtocol = provider.callback();
const server = http.createServer((req, res) => {
  const path = new URL(req.url, issuer).pathname;
  let handled;
  if (path.startsWith('/interaction/')) {
    handled = interactionRoute(req, res, path);
  } else if (req.method === 'POST' && path === '/_test/accounts') {
    handled = controlRoute(req, res);
  } else {
    handleProtocol(req, res);
    return;
  }
  handled.catch((error) => {
    console.error(error);
    if (!res.headersSent) {
      res.writeHead(error.statusCode || 500, { 'Content-Type': 'text/plain' });
    }
    res.end(String(error.error_description || error.message || error));
  });
});

// The test fixture binds the port and hands the socket over (OIDC_LISTEN_FD), so that nothing
// else can take the port between choosing it and listening on it.
const listenFd = process.env.OIDC_LISTEN_FD;
const ready = () => console.log(`oidc-provider listening on ${issuer}`);
if (listenFd) {
  server.listen({ fd: Number(listenFd) }, ready);
} else {
  server.listen(port, '127.0.0.1', ready);
}
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
