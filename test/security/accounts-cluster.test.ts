/**
 * The sign-in throttle in cluster mode (PostgreSQL, NATS, two nodes as processes): failures on one
 * node count on the other, so an attacker gains nothing by spreading guesses over the nodes, and
 * the owner from another address still gets in through either.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startCluster, type Cluster } from '../helpers/cluster.ts';
import { ADMIN } from '../helpers/platform.ts';

/** POST `body` to `baseUrl + path` from the local address `from`; the status and Retry-After. */
function post(baseUrl: string, from: string, path: string, body: unknown): Promise<{ status: number; retryAfter: string | undefined }> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method: 'POST', path, localAddress: from, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('sign-in throttle across a cluster', {
  timeout: 120_000,
  skip: process.env.HEARTH_TEST_STORE === 'postgres' ? 'the cluster runs on PostgreSQL in both passes' : false,
}, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 2, env: { HEARTH_NODE_TIMEOUT_MS: '3000' } });
  });
  after(async () => {
    await cluster?.stop();
  });

  test('failures through one node hold the pair up on the other; the owner elsewhere gets in through both', async () => {
    const [a, b] = cluster.nodes;
    const attacker = '127.0.0.80';
    const login = (node: { httpUrl: string }, from: string, password: string) =>
      post(node.httpUrl, from, '/api/v1/auth/login', { email: ADMIN.email, password });
    // Wrong guesses through node A until the pair (operator, attacker) waits 4 s: 4 free-ish, then 1 s, 2 s.
    for (let i = 0; i < 4; i++) assert.equal((await login(a, attacker, `guess-${i}`)).status, 401);
    for (const wait of [1, 2]) {
      const held = await login(a, attacker, 'too-soon');
      assert.equal(held.status, 429);
      assert.equal(held.retryAfter, String(wait));
      await new Promise((r) => setTimeout(r, wait * 1000 + 50));
      assert.equal((await login(a, attacker, `guess-after-${wait}`)).status, 401);
    }
    // Node B heard of them over the bus (give it a moment): the next guess there is held up too,
    // without being checked. One try only: a checked guess on B would count there by itself.
    await new Promise((r) => setTimeout(r, 1000));
    const onB = await login(b, attacker, 'guess-5');
    assert.equal(onB.status, 429, 'node B knows the failures made through node A');
    assert.ok(Number(onB.retryAfter) >= 2 && Number(onB.retryAfter) <= 4, `Retry-After ${onB.retryAfter}`);
    // The operator, from their own address, signs in through either node at once.
    assert.equal((await login(b, '127.0.0.81', ADMIN.password)).status, 200);
    assert.equal((await login(a, '127.0.0.81', ADMIN.password)).status, 200);
  });
});
