// Users with the official socket.io-client: every refusal of a token is a `connect_error` whose
// `message` is exactly the server's reason, and counts nobody; RS256 / HS256 confusion fails
// either way round; one person with tabs on two nodes (real redis-server) is one user until the
// last tab, also when a node is SIGKILLed; `member joined` / `member left` reach a watcher on
// another node at a user's first tab in and last tab out, and stop above `max_members_listed`.
// Tokens are signed here with node:crypto (HS256 is HMAC-SHA256; RS256 and ES256 are
// crypto.sign), so a mistake in a JWT library cannot hide one in the server.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  useE2E,
  defer,
  startRedis,
  startNode,
  startCluster,
  connect,
  connectRefused,
  getJson,
  httpGet,
  eventually,
  holds,
} from './harness.mjs';

useE2E();

/** @type {Awaited<ReturnType<typeof startRedis>>} */
let redis;
before(async () => {
  redis = await startRedis();
});

const SECRET = 'an-e2e-secret-that-is-long-enough-for-hs256';
const AUDIENCE = 'rollcall-e2e';

const b64url = (data) => Buffer.from(data).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/**
 * A JWT over `claims` with header `alg`: HS256 with `key` as the HMAC secret, RS256 / ES256 with
 * `key` a private KeyObject, `none` unsigned.
 */
function jwt(claims, { alg = 'HS256', key = SECRET } = {}) {
  const input = `${b64url(JSON.stringify({ alg, typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  let signature = '';
  if (alg === 'HS256') signature = createHmac('sha256', key).update(input).digest('base64url');
  if (alg === 'RS256') signature = cryptoSign('sha256', Buffer.from(input), key).toString('base64url');
  if (alg === 'ES256') {
    signature = cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  }
  return `${input}.${signature}`;
}

/** A valid token of `sub` for ten minutes, with `extra` claims (which may override). */
function token(sub, extra = {}, opts = {}) {
  return jwt({ sub, exp: now() + 600, aud: AUDIENCE, ...extra }, opts);
}

const REQUIRED = {
  ROLLCALL_AUTH: 'required',
  ROLLCALL_JWT_SECRET: SECRET,
  ROLLCALL_JWT_AUDIENCE: AUDIENCE,
  ROLLCALL_JWT_LEEWAY_MS: '0',
};

/** The handshake is refused with exactly `message`. */
async function refused(url, auth, message, what) {
  const error = await connectRefused(url, { auth, transports: ['websocket'] });
  assert.equal(error.message, message, what);
}

async function metricsText(url) {
  const res = await httpGet(`${url}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

test('every refusal of a token is a connect_error with its reason and counts nobody', async () => {
  const node = await startNode({ env: REQUIRED });
  const long = 'x'.repeat(9000);
  const cases = [
    ['missing', {}, 'a token is required (auth.token)'],
    ['malformed', { token: 'not.a.jwt' }, 'the token is malformed'],
    ['malformed', { token: 42 }, 'the token is malformed'],
    ['malformed', { token: '' }, 'the token is malformed'],
    ['expired', { token: token('alice', { exp: now() - 60 }) }, 'the token has expired'],
    ['not_yet_valid', { token: token('alice', { nbf: now() + 600 }) }, 'the token is not valid yet'],
    [
      'bad_signature',
      { token: token('alice', {}, { key: 'another-secret-just-as-long-as-the-right-one' }) },
      "the token's signature is invalid",
    ],
    ['wrong_audience', { token: token('alice', { aud: 'someone-else' }) }, 'the token is for another audience'],
    ['algorithm', { token: token('alice', {}, { alg: 'none' }) }, "the token's algorithm is not allowed"],
    ['too_large', { token: long }, 'the token is larger than 8 KiB'],
    ['bad_subject', { token: token('') }, "the token's sub must be a non-empty string"],
    ['bad_subject', { token: token(7) }, "the token's sub must be a non-empty string"],
    ['bad_subject', { token: token('alice', { sub: undefined }) }, "the token's sub must be a non-empty string"],
  ];
  for (const [reason, auth, message] of cases) {
    await refused(node.url, auth, message, `${reason}: ${JSON.stringify(auth).slice(0, 80)}`);
  }
  // A room the token does not allow, asked for at connect: refused at the handshake too.
  const docsOnly = token('alice', { rooms: ['docs/*', 'lobby'] });
  await refused(node.url, { token: docsOnly, rooms: ['secret'] }, 'room "secret" is not allowed by the token', 'auth.rooms');
  const viaQuery = await connectRefused(node.url, { auth: { token: docsOnly }, query: { room: 'other' }, transports: ['websocket'] });
  assert.equal(viaQuery.message, 'room "other" is not allowed by the token', 'query room');

  const metrics = await metricsText(node.url);
  for (const reason of new Set(cases.map(([r]) => r))) {
    const line = metrics.split('\n').find((l) => l.startsWith(`rollcall_auth_refused_total{reason="${reason}"}`));
    assert.ok(line && Number(line.split(' ').pop()) >= 1, `rollcall_auth_refused_total{reason="${reason}"}: ${line}`);
  }
  const presence = await node.presence();
  assert.equal(presence.connections, 0, 'nobody refused was counted');
  assert.equal(presence.unique_users, 0);

  // The same token within the rules connects, over WebSocket and long-polling, and is counted.
  const ws = await connect(node.url, { auth: { token: docsOnly, rooms: ['docs/1'] }, transports: ['websocket'] });
  const polling = await connect(node.url, { auth: { token: docsOnly, rooms: ['lobby'] }, transports: ['polling'] });
  await eventually(async () => {
    const p = await node.presence();
    assert.deepStrictEqual([p.connections, p.unique_users], [2, 1]);
  }, { what: 'two tabs of alice: 2 connections, 1 user' });
  const joinRefused = await ws.ack('join', 'private');
  assert.deepStrictEqual(joinRefused, { ok: false, error: 'room "private" is not allowed by the token' });
  await polling.close();
  await ws.close();
});

test('RS256 and HS256 are never confused, whichever the node is configured with', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollcall-e2e-keys-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
  const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' });
  writeFileSync(path.join(dir, 'rsa.pem'), rsaPem);
  writeFileSync(path.join(dir, 'ec.pem'), ecPem);
  const withKey = (file) => ({ ...REQUIRED, ROLLCALL_JWT_SECRET: '', ROLLCALL_JWT_PUBLIC_KEY_FILE: path.join(dir, file) });
  const [rsaNode, ecNode, hmacNode] = await Promise.all([
    startNode({ env: withKey('rsa.pem') }),
    startNode({ env: withKey('ec.pem') }),
    startNode({ env: REQUIRED }),
  ]);
  const notAllowed = "the token's algorithm is not allowed";

  const rs256 = token('rita', {}, { alg: 'RS256', key: rsa.privateKey });
  const es256 = token('eli', {}, { alg: 'ES256', key: ec.privateKey });
  // The classic confusion: HS256 "signed" with the public key a server publishes.
  await refused(rsaNode.url, { token: token('mallory', {}, { key: rsaPem }) }, notAllowed, 'HS256 on an RS256 node');
  await refused(ecNode.url, { token: token('mallory', {}, { key: ecPem }) }, notAllowed, 'HS256 on an ES256 node');
  await refused(rsaNode.url, { token: es256 }, notAllowed, 'ES256 on an RS256 node');
  await refused(hmacNode.url, { token: rs256 }, notAllowed, 'RS256 on an HS256 node');
  await refused(rsaNode.url, { token: token('rita', {}, { alg: 'none' }) }, notAllowed, 'none on an RS256 node');
  const forged = `${rs256.split('.').slice(0, 2).join('.')}.${b64url('not the signature')}`;
  await refused(rsaNode.url, { token: forged }, "the token's signature is invalid", 'RS256 with a wrong signature');

  const rita = await connect(rsaNode.url, { auth: { token: rs256 }, transports: ['websocket'] });
  const eli = await connect(ecNode.url, { auth: { token: es256 }, transports: ['websocket'] });
  for (const node of [rsaNode, ecNode]) {
    await eventually(async () => assert.equal((await node.presence()).unique_users, 1), { what: `${node.nodeId}: 1 user` });
  }
  await rita.close();
  await eli.close();
});

test('one person with tabs on two nodes is one user until the last tab, also when a node dies', async () => {
  const env = { ...REQUIRED, ROLLCALL_AUTH: 'optional' };
  const { nodes } = await startCluster(redis, 2, { tag: 'tabs', env });
  const [a, b] = nodes;
  const alice = token('alice', { info: { name: 'Alice' } });
  const tab1 = await connect(a.url, { auth: { token: alice, rooms: ['doc'] }, transports: ['websocket'] });
  const tab2 = await connect(b.url, { auth: { token: alice, rooms: ['doc'] }, transports: ['polling'] });
  const tab3 = await connect(b.url, { auth: { token: alice, rooms: ['doc'] } });
  const anonymous = await connect(a.url, { auth: { rooms: ['doc'] }, transports: ['websocket'] });
  const want = (users, connections) => ({ room: 'doc', users, connections });
  const roomIs = async (clients, users, connections) => {
    await eventually(
      () => {
        for (const c of clients) assert.deepStrictEqual(c.roomLast('doc'), want(users, connections), c.label);
      },
      { what: `doc: ${users} users, ${connections} connections`, timeoutMs: 15000 },
    );
  };
  await roomIs([tab1, tab2, tab3, anonymous], 2, 4);
  for (const node of nodes) {
    const p = await node.presence();
    assert.deepStrictEqual([p.connections, p.unique_users, p.users], [4, 2, 4], `${node.nodeId}: presence`);
    assert.deepStrictEqual(await getJson(`${node.url}/api/rooms/doc`), want(2, 4), `${node.nodeId}: rooms API`);
  }
  await tab1.close();
  await roomIs([tab2, tab3, anonymous], 2, 3);
  await holds(() => assert.deepStrictEqual(anonymous.roomLast('doc'), want(2, 3)), { what: 'alice stays while tabs live' });
  // Node b is about to die with two of alice's tabs: a tab on node a keeps her a user.
  const tab4 = await connect(a.url, { auth: { token: alice, rooms: ['doc'] }, transports: ['websocket'] });
  await roomIs([tab4, anonymous], 2, 4);
  b.kill('SIGKILL');
  await roomIs([tab4, anonymous], 2, 2);
  await tab4.close();
  await roomIs([anonymous], 1, 1);
  const p = await a.presence();
  assert.deepStrictEqual([p.connections, p.unique_users], [1, 1], 'presence after the last tab');
  await anonymous.close();
});

test('member joined / left cross three nodes at the first tab in and last tab out, up to the cap', async () => {
  const env = { ...REQUIRED, ROLLCALL_MAX_MEMBERS_LISTED: '3' };
  const { nodes } = await startCluster(redis, 3, { tag: 'members', env });
  const [n1, n2, n3] = nodes;
  const watcher = await connect(n1.url, { auth: { token: token('walt') }, transports: ['websocket'] });
  const changes = [];
  watcher.socket.on('member joined', (m) => changes.push(['joined', m]));
  watcher.socket.on('member left', (m) => changes.push(['left', m]));
  const ack = await watcher.ack('join', { room: 'team', members: true });
  assert.deepStrictEqual(ack, {
    ok: true, room: 'team', users: 1, connections: 1, truncated: false,
    members: [{ user: 'walt', info: null, connections: 1 }],
  });
  // The watcher's own arrival is a member change like any other.
  const walt = ['joined', { room: 'team', user: 'walt', info: null }];
  await eventually(() => assert.deepStrictEqual(changes, [walt]), { what: 'member joined walt' });
  const dana = token('dana', { info: { name: 'Dana' } });
  const danaEvent = { room: 'team', user: 'dana', info: { name: 'Dana' } };
  const tab1 = await connect(n2.url, { auth: { token: dana, rooms: ['team'] }, transports: ['websocket'] });
  await eventually(() => assert.deepStrictEqual(changes, [walt, ['joined', danaEvent]]), { what: 'member joined dana' });
  const tab2 = await connect(n3.url, { auth: { token: dana }, transports: ['polling'] });
  const joined = await tab2.ack('join', { room: 'team', members: true });
  assert.deepStrictEqual(joined.members, [
    { user: 'dana', info: { name: 'Dana' }, connections: 2 },
    { user: 'walt', info: null, connections: 1 },
  ]);
  await tab1.close();
  await eventually(() => assert.deepStrictEqual(watcher.roomLast('team'), { room: 'team', users: 2, connections: 2 }), {
    what: "dana's first tab left",
  });
  assert.deepStrictEqual(changes, [walt, ['joined', danaEvent]], 'no member left while dana has a tab');
  await tab2.close();
  await eventually(() => assert.deepStrictEqual(changes, [walt, ['joined', danaEvent], ['left', danaEvent]]), {
    what: 'member left dana',
  });
  // Up to the cap (3 members) changes flow; above it, only counts.
  const erin = await connect(n2.url, { auth: { token: token('erin'), rooms: ['team'] }, transports: ['websocket'] });
  const fay = await connect(n3.url, { auth: { token: token('fay'), rooms: ['team'] }, transports: ['websocket'] });
  await eventually(() => assert.equal(changes.filter(([k]) => k === 'joined').length, 4), { what: 'erin and fay joined' });
  const gus = await connect(n3.url, { auth: { token: token('gus'), rooms: ['team'] }, transports: ['websocket'] });
  await eventually(() => assert.deepStrictEqual(watcher.roomLast('team'), { room: 'team', users: 4, connections: 4 }), {
    what: '4 users in team',
  });
  await holds(() => assert.equal(changes.length, 5, JSON.stringify(changes)), { what: 'no member joined above the cap' });
  const late = await connect(n2.url, { auth: { token: token('hal') }, transports: ['websocket'] });
  const truncated = await late.ack('join', { room: 'team', members: true });
  assert.equal(truncated.truncated, true, JSON.stringify(truncated));
  assert.equal(truncated.members.length, 3);
  const page = await getJson(`${n3.url}/api/rooms/team/members?limit=10`);
  assert.deepStrictEqual(page.members.map((m) => m.user), ['erin', 'fay', 'gus', 'hal', 'walt'], 'the API lists all');
  for (const c of [erin, fay, gus, late]) await c.close();
  await watcher.close();
});
