import { request } from 'node:http';

/** An answer to a raw request. */
export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

/**
 * Sends a request with the path exactly as given (no URL normalisation: `%61`, `//`, `%2F` and
 * dot segments reach the server as written, which fetch() would not guarantee).
 */
export function raw(base: string, method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawAnswer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: { ...opts.headers, ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            /* keep the text */
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
        res.on('error', reject);
      },
    );
    // A server refusing an oversize body may close before all of it is written: the answer still counts.
    req.on('error', reject);
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

/** One operation of the OpenAPI document with what the tests need of it. */
export interface Operation {
  method: string;
  path: string;
  op: any;
  /** The route's declaration as documented (`x-hearth-auth`). */
  auth: { who: 'public' | 'self' | 'caller' | 'password' | 'operator'; scopes?: string[]; how?: string };
}

/** Every operation under /api of the OpenAPI document. */
export function operations(doc: any): Operation[] {
  const out: Operation[] = [];
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    if (!path.startsWith('/api/')) continue;
    for (const [method, op] of Object.entries<any>(ops)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      out.push({ method: method.toUpperCase(), path, op, auth: op['x-hearth-auth'] });
    }
  }
  return out;
}

/** True when the route wants a principal from the Authorization / X-Api-Key header. */
export const needsPrincipal = (o: Operation) => ['caller', 'password', 'operator'].includes(o.auth?.who);

/** The path with every parameter filled (`x_unknown` by default). */
export const fillAll = (path: string, value = 'x_unknown') => path.replace(/\{[^}]+\}/g, value);

/** A JSON body whose objects and arrays nest `depth` levels. */
export const deepJson = (depth: number) => `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
