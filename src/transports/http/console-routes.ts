import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, sep } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpApp } from './http-server.ts';
import { Auth } from './route-auth.ts';
import { PACKAGE_ROOT } from '../../core/package-root.ts';

/** Where `npm install` (scripts/build-console.ts) puts the built console. The server reads files, never imports web/. */
export const CONSOLE_DIST = join(PACKAGE_ROOT, 'web', 'dist') + sep;

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** Paths the console never answers with its page: a wrong API or docs URL stays a problem+json 404. */
const NOT_CONSOLE = /^\/(api|docs|mqtt|metrics|healthz|readyz)(\/|$)/;

interface Asset {
  path: string;
  type: string;
  size: number;
  /** The gzip twin written by the build, when there is one. */
  gz?: { path: string; size: number };
}

/**
 * The console (docs/console.md): a single-page app built from web/ into web/dist. `/assets/*`
 * are content-hashed files, cached for a year; every other GET that a browser navigates to (it
 * asks for text/html) gets the app's page, whose router shows the screen. Without a build (a
 * production install without dev dependencies) `/` says how to build it and links the API docs.
 */
export async function consoleRoutes(app: HttpApp, deps: { version: string; dist?: string }): Promise<void> {
  const dist = deps.dist ?? CONSOLE_DIST;
  const indexPath = join(dist, 'index.html');
  const assets = new Map<string, Asset>();
  let index: string | undefined;
  try {
    index = readFileSync(indexPath, 'utf8');
  } catch {
    // not built
  }
  const built = index !== undefined;
  if (built) {
    const dir = join(dist, 'assets');
    const names = existsSync(dir) ? readdirSync(dir) : [];
    for (const name of names) {
      if (name.endsWith('.gz')) continue;
      const path = join(dir, name);
      const gzPath = path + '.gz';
      const size = sizeOf(path);
      if (size === undefined) continue; // a build replacing this one meanwhile
      const gzSize = names.includes(name + '.gz') ? sizeOf(gzPath) : undefined;
      assets.set(name, {
        path,
        type: TYPES[extname(name)] ?? 'application/octet-stream',
        size,
        gz: gzSize === undefined ? undefined : { path: gzPath, size: gzSize },
      });
    }
    // Top-level files of public/ (the icon), served the same way but not cached for long.
    for (const name of existsSync(dist) ? readdirSync(dist) : []) {
      const path = join(dist, name);
      const size = sizeOf(path);
      if (name === 'index.html' || name.startsWith('.') || size === undefined || !statSync(path).isFile()) continue;
      const file: Asset = { path, type: TYPES[extname(name)] ?? 'application/octet-stream', size };
      app.get(`/${name}`, { schema: { hide: true }, config: { auth: Auth.public } }, async (req, reply) => sendFile(req, reply, file, 'public, max-age=3600'));
    }
  }
  const html = index ?? fallbackPage(deps.version);

  const page = async (_req: FastifyRequest, reply: FastifyReply) =>
    reply
      .type('text/html; charset=utf-8')
      // The page names the hashed assets of this build: always ask again, so a new build is seen at once.
      .header('cache-control', 'no-cache')
      .header('referrer-policy', 'no-referrer')
      .send(html);

  app.get('/', { schema: { hide: true }, config: { auth: Auth.public } }, page);

  app.get('/assets/:file', { schema: { hide: true }, config: { auth: Auth.public } }, async (req, reply) => {
    const file = assets.get((req.params as { file: string }).file);
    if (!file) return reply.callNotFound();
    return sendFile(req, reply, file, 'public, max-age=31536000, immutable');
  });

  // The console's own routes (/devices/d_…, /sign-in, …): any other GET a browser navigates to.
  // Find-my-way tries this wildcard last, so every API route and page keeps its own answer.
  app.get('/*', { schema: { hide: true }, config: { auth: Auth.public } }, async (req, reply) => {
    const path = req.url.split('?')[0];
    if (!built || NOT_CONSOLE.test(path) || !(req.headers.accept ?? '').includes('text/html')) return reply.callNotFound();
    return page(req, reply);
  });
}

function sizeOf(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}

function sendFile(req: FastifyRequest, reply: FastifyReply, file: Asset, cache: string) {
  const gzip = file.gz && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  reply.type(file.type).header('cache-control', cache).header('vary', 'accept-encoding');
  if (gzip && file.gz) {
    reply.header('content-encoding', 'gzip').header('content-length', String(file.gz.size));
    return reply.send(createReadStream(file.gz.path));
  }
  reply.header('content-length', String(file.size));
  return reply.send(createReadStream(file.path));
}

/** What `/` shows when the console was not built: the way to build it, and the links the API needs. */
function fallbackPage(version: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hearth</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}code{background:#f3f3f3;padding:0 .2rem}</style></head>
<body><h1>Hearth</h1>
<p>An open-source device cloud, version ${version}. The console is not built in this installation: run <code>npm install</code> (with the dev dependencies) or <code>npm run build:console</code>, then restart.</p>
<ul>
<li>the REST API under <code>/api/v1</code>, documented at <a href="/docs">/docs</a> (OpenAPI: <a href="/docs/json">/docs/json</a>);</li>
<li>MQTT for devices (see docs/protocol.md), also over WebSocket at <code>/mqtt</code>;</li>
<li>probes at <a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a>, metrics at <a href="/metrics">/metrics</a>.</li>
</ul>
</body></html>
`;
}
