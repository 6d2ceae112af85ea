// Three rollcall nodes sharing one real redis-server: one exact count across the cluster.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useE2E,
  startRedis,
  startCluster,
  connect,
  connectMany,
  allReach,
  assertMonotonic,
  presenceReaches,
  closeAll,
} from './harness.mjs';

useE2E();

/** @type {Awaited<ReturnType<typeof startRedis>>} */
let redis;
before(async () => {
  redis = await startRedis();
});

/** How many of `clients` sit on each node, in node order. */
function localsOf(nodes, clients) {
  return nodes.map((n) => clients.filter((c) => c.url === n.url).length);
}

/**
 * Joins `count` clients one after another, round-robin over the nodes, checking each newcomer's
 * first value; then every client must end at the total and every node report it. Then `leave`
 * clients disconnect and everyone must end at the rest. Within each phase no client may see the
 * count move backwards.
 */
async function joinThenLeave({ tag, count, leave, transportFor }) {
  const { nodes, prefix } = await startCluster(redis, 3, { tag });
  const urls = nodes.map((n) => n.url);

  const clients = [];
  for (let i = 0; i < count; i++) {
    const c = await connect(urls[i % 3], { transports: transportFor(i), label: `${tag}-c${i}@n${(i % 3) + 1}` });
    clients.push(c);
    // The newcomer hears a count promptly; it includes itself and nobody who has not joined yet.
    const first = await c.firstValue(1000);
    assert.ok(first >= 1 && first <= i + 1, `newcomer ${i + 1}: first refresh users ${first} not in [1, ${i + 1}]; ${c.describe()}`);
  }
  await allReach(clients, count, { timeoutMs: 10000 });
  await presenceReaches(nodes, count, { locals: localsOf(nodes, clients), mode: 'redis' });
  for (const c of clients) assertMonotonic(c, 0, 'up');

  const leaving = clients.slice(0, leave);
  const staying = clients.slice(leave);
  const marks = staying.map((c) => c.mark());
  await closeAll(leaving);
  await allReach(staying, count - leave, { timeoutMs: 10000 });
  await presenceReaches(nodes, count - leave, { locals: localsOf(nodes, staying), mode: 'redis' });
  staying.forEach((c, i) => assertMonotonic(c, marks[i], 'down'));
  for (const c of staying) assert.ok(c.socket.connected, `${c.label} lost its connection`);
  return { nodes, prefix, clients: staying };
}

test('60 WebSocket clients over 3 nodes reach 60, then 40 after 20 leave', { timeout: 60000 }, async () => {
  await joinThenLeave({ tag: 'ws', count: 60, leave: 20, transportFor: () => ['websocket'] });
});

test('60 long-polling clients over 3 nodes reach 60, then 40 after 20 leave', { timeout: 60000 }, async () => {
  const { clients } = await joinThenLeave({ tag: 'poll', count: 60, leave: 20, transportFor: () => ['polling'] });
  for (const c of clients) assert.equal(c.transport, 'polling', c.label);
});

test('60 mixed clients (WebSocket, polling, polling upgraded to WebSocket) reach 60, then 40', { timeout: 60000 }, async () => {
  const kinds = [['websocket'], ['polling'], ['polling', 'websocket']];
  // i % 3 picks the node, so shift the kind by i / 3 to give every node every kind.
  await joinThenLeave({ tag: 'mix', count: 60, leave: 20, transportFor: (i) => kinds[(i + Math.floor(i / 3)) % 3] });
});

test('90 concurrent joins on all nodes at once reach 90; 90 concurrent leaves reach 0', { timeout: 60000 }, async () => {
  const { nodes } = await startCluster(redis, 3, { tag: 'burst' });
  const clients = await connectMany(
    nodes.map((n) => n.url),
    90,
    { concurrency: Infinity, label: 'burst-c', transportFor: (i) => (i % 9 === 4 ? ['polling'] : ['websocket']) },
  );
  await allReach(clients, 90, { timeoutMs: 15000 });
  await presenceReaches(nodes, 90, { locals: [30, 30, 30], mode: 'redis' });
  for (const c of clients) {
    assert.ok(c.first >= 1 && c.first <= 90, `${c.describe()}`);
    assert.ok(c.firstDelayMs <= 1000, `${c.label}: first value ${c.firstDelayMs} ms after connect`);
    assertMonotonic(c, 0, 'up');
  }

  // Everyone but one watcher per node leaves at once.
  const watchers = [clients[0], clients[1], clients[2]];
  const marks = watchers.map((c) => c.mark());
  await closeAll(clients.slice(3));
  await allReach(watchers, 3, { timeoutMs: 15000 });
  watchers.forEach((c, i) => assertMonotonic(c, marks[i], 'down'));
  await presenceReaches(nodes, 3, { locals: [1, 1, 1], mode: 'redis' });
  await closeAll(watchers);
  await presenceReaches(nodes, 0, { locals: [0, 0, 0], mode: 'redis' });
});

test('a newcomer is told the count at once, even when the total does not change', { timeout: 60000 }, async () => {
  const { nodes } = await startCluster(redis, 3, { tag: 'newcomer' });
  const urls = nodes.map((n) => n.url);
  const clients = await connectMany(urls, 10, { label: 'nc-c' });
  await allReach(clients, 10);

  // A settled cluster: the newcomer's first value is exact and quick.
  const eleventh = await connect(urls[2], { transports: ['websocket'], label: 'nc-eleventh' });
  assert.equal(await eleventh.firstValue(1000), 11, eleventh.describe());
  assert.ok(eleventh.firstDelayMs <= 1000, `first value after ${eleventh.firstDelayMs} ms`);
  const all = [...clients, eleventh];
  await allReach(all, 11);

  // One leaves on node 1 while one joins on node 2: the total stays 11, yet the newcomer must hear it.
  const leaver = clients[0];
  const othersMarks = all.slice(1).map((c) => c.mark());
  const [, joiner] = await Promise.all([leaver.close(), connect(urls[1], { transports: ['websocket'], label: 'nc-joiner' })]);
  const first = await joiner.firstValue(1000);
  assert.ok(first === 11 || first === 12, `joiner's first value ${first}, want 11 (or 12 before the leave lands); ${joiner.describe()}`);
  assert.ok(joiner.firstDelayMs <= 1000, `joiner's first value after ${joiner.firstDelayMs} ms`);
  const now = [...all.slice(1), joiner];
  await allReach(now, 11);
  await presenceReaches(nodes, 11, { locals: localsOf(nodes, now), mode: 'redis' });
  // The others saw at most a blip to 12 and back, never anything else.
  all.slice(1).forEach((c, i) => {
    const seen = c.valuesSince(othersMarks[i]).filter((v) => v !== 11 && v !== 12 && v !== 10);
    assert.deepEqual(seen, [], `${c.describe()}`);
  });
});

test('every Redis key the cluster writes lives under its prefix', { timeout: 30000 }, async () => {
  const { nodes, prefix } = await startCluster(redis, 3, { tag: 'keys' });
  const clients = await connectMany(nodes.map((n) => n.url), 6, { label: 'keys-c' });
  await allReach(clients, 6);
  const keys = await redis.command(['KEYS', '*']);
  const ours = keys.filter((k) => k.includes(prefix));
  assert.ok(ours.length > 0, `no Redis key contains the prefix ${prefix}; keys: ${JSON.stringify(keys)}`);
  const foreign = keys.filter((k) => !k.includes('rc-e2e-'));
  assert.deepEqual(foreign, [], `keys outside any test prefix (default prefix used?)`);
});
