// The rolling-restart promise: three nodes on one Redis, 1000 reconnecting clients; restarting the
// nodes one at a time (SIGTERM, wait for the exit, start a new process on the same port with the
// same node id) always brings every client back to exactly 1000.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  useE2E,
  startNode,
  startRedis,
  freePort,
  uniquePrefix,
  eventually,
  holds,
  withDeadline,
  connectMany,
  allReach,
  presenceReaches,
  histogram,
} from './harness.mjs';

useE2E();

const CLIENTS = 1000;
const GRACE_MS = 5000;
const STEP_TIMEOUT_MS = 20000;
// Reconnection on, as a real page has it; short delays so a restart is noticed quickly.
// randomizationFactor stays at socket.io-client's default (0.5).
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 };

/** A node on a fixed port: a restarted node comes back where its clients reconnect. */
function startFixedNode({ port, nodeId, redisUrl, prefix }) {
  return startNode({ port, nodeId, redisUrl, prefix, env: { ROLLCALL_SHUTDOWN_GRACE_MS: String(GRACE_MS) } });
}

/** Records each client's reconnects and disconnect reasons (after its first connect). */
function track(client) {
  client.reconnects = 0;
  client.lastConnectAt = client.connectedAt;
  client.reasons = [];
  client.socket.on('connect', () => {
    client.reconnects += 1;
    client.lastConnectAt = Date.now();
  });
  client.socket.on('disconnect', (reason) => client.reasons.push(reason));
}

const count = (list) => list.reduce((h, k) => ((h[k] = (h[k] || 0) + 1), h), {});

test('a rolling restart of three nodes brings 1000 reconnecting clients back to exactly 1000', { timeout: 120000 }, async (t) => {
  const tStart = Date.now();
  const redis = await startRedis();
  const prefix = uniquePrefix('rolling');
  const ports = [];
  while (ports.length < 3) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const ids = ports.map((_, i) => `roll-n${i + 1}`);
  const nodes = await Promise.all(ports.map((port, i) => startFixedNode({ port, nodeId: ids[i], redisUrl: redis.url, prefix })));
  const urls = nodes.map((n) => n.url);

  // 1000 clients round-robin: client i on node i % 3.
  const tConnect = Date.now();
  const clients = await connectMany(urls, CLIENTS, { concurrency: 50, extra: RECONNECT, label: 'r' });
  clients.forEach(track);
  const onNode = ids.map((_, i) => clients.filter((c) => c.index % 3 === i));
  const shares = onNode.map((cs) => cs.length);
  assert.deepStrictEqual(shares.slice().sort(), [333, 333, 334]);
  await allReach(clients, CLIENTS, { timeoutMs: 20000 });
  await presenceReaches(nodes, CLIENTS, { locals: shares, mode: 'redis' });
  t.diagnostic(`MEASURED connect ${CLIENTS} clients (${shares.join('/')}) until all show ${CLIENTS}: ${Date.now() - tConnect} ms`);

  const tRolling = Date.now();
  for (let i = 0; i < nodes.length; i++) {
    const old = nodes[i];
    const mine = onNode[i];
    const others = clients.filter((c) => c.index % 3 !== i);
    const marks = new Map(clients.map((c) => [c, { values: c.mark(), reconnects: c.reconnects, reasons: c.reasons.length }]));

    // 1. SIGTERM; the old process drains and exits 0 within the grace.
    const t0 = Date.now();
    assert.ok(old.proc.kill('SIGTERM'), `could not signal ${old.nodeId} (pid ${old.pid})`);
    const exit = await withDeadline(old.proc.exited, GRACE_MS + 3000, `${old.nodeId} (pid ${old.pid}) did not exit within ${GRACE_MS + 3000} ms of SIGTERM`);
    const tExit = Date.now();
    assert.deepStrictEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, `${old.nodeId} exit: ${old.proc.logs().slice(-2000)}`);

    // 2. A new process on the same port with the same id.
    const fresh = await startFixedNode({ port: old.port, nodeId: old.nodeId, redisUrl: redis.url, prefix });
    nodes[i] = fresh;
    const tReady = Date.now();

    // 3. Converged: the new node holds its share again, every node reports 1000, every client
    //    shows 1000, and the restarted node's clients reconnected and were told a value since.
    await eventually(
      async () => {
        const seen = await Promise.all(nodes.map((n) => n.presence()));
        seen.forEach((p, k) => {
          const got = { users: p.users, local: p.local, node: p.node, degraded: p.degraded };
          assert.deepStrictEqual(got, { users: CLIENTS, local: shares[k], node: ids[k], degraded: false }, `${ids[k]}: /api/presence ${JSON.stringify(p)}`);
        });
        const notBack = mine.filter((c) => !(c.reconnects > marks.get(c).reconnects && c.lastConnectAt >= t0));
        assert.equal(notBack.length, 0, `${notBack.length}/${mine.length} clients of ${ids[i]} not reconnected; e.g. ${notBack.slice(0, 3).map((c) => `${c.describe()} connected=${c.socket.connected}`).join(' | ')}`);
        const stale = mine.filter((c) => !c.times.some((at) => at >= c.lastConnectAt));
        assert.equal(stale.length, 0, `${stale.length}/${mine.length} clients of ${ids[i]} have no value since reconnecting; e.g. ${stale.slice(0, 3).map((c) => c.describe()).join(' | ')}`);
        const behind = clients.filter((c) => c.last !== CLIENTS);
        assert.equal(behind.length, 0, `${behind.length} clients not at ${CLIENTS}; latest values ${JSON.stringify(histogram(clients))}; e.g. ${behind.slice(0, 3).map((c) => c.describe()).join(' | ')}`);
      },
      { timeoutMs: STEP_TIMEOUT_MS, intervalMs: 25, what: `cluster back to ${CLIENTS} after restarting ${old.nodeId}` },
    );
    const tDone = Date.now();

    // Per-client before/after: the restarted node's clients reconnected exactly once (to the new
    // process) and got fresh values; the other nodes' clients never lost their connection and were
    // told the dip and the recovery.
    const reconnectsMine = count(mine.map((c) => c.reconnects - marks.get(c).reconnects));
    const reasonsMine = count(mine.flatMap((c) => c.reasons.slice(marks.get(c).reasons)));
    const freshMine = mine.map((c) => c.times.filter((at) => at >= c.lastConnectAt).length);
    const othersDisturbed = others.filter((c) => c.reconnects !== marks.get(c).reconnects || c.reasons.length !== marks.get(c).reasons);
    const othersNew = others.map((c) => c.valuesSince(marks.get(c).values));
    const othersMin = Math.min(...othersNew.map((v) => Math.min(...v)));
    t.diagnostic(
      `MEASURED step ${i + 1} (${old.nodeId}, ${mine.length} clients): SIGTERM->exit ${tExit - t0} ms, exit->ready ${tReady - tExit} ms, ` +
        `ready->converged ${tDone - tReady} ms, total ${tDone - t0} ms; its clients: reconnects ${JSON.stringify(reconnectsMine)}, ` +
        `disconnect reasons ${JSON.stringify(reasonsMine)}, values since reconnect min ${Math.min(...freshMine)} max ${Math.max(...freshMine)}; ` +
        `other clients: lowest value seen ${othersMin}, values received min ${Math.min(...othersNew.map((v) => v.length))} max ${Math.max(...othersNew.map((v) => v.length))}`,
    );
    assert.ok(!('io server disconnect' in reasonsMine), `a server-side disconnect stops socket.io-client from reconnecting: ${JSON.stringify(reasonsMine)}`);
    assert.deepStrictEqual(reconnectsMine, { 1: mine.length }, `clients of ${old.nodeId}: reconnect counts`);
    assert.equal(othersDisturbed.length, 0, `clients of other nodes lost their connection: ${othersDisturbed.slice(0, 3).map((c) => `${c.label} ${c.reasons.join(',')}`).join(' | ')}`);
    const silent = others.filter((_, k) => othersNew[k].length === 0);
    assert.equal(silent.length, 0, `${silent.length} clients of other nodes were never told of the restart`);
    assert.ok(othersMin < CLIENTS, `the other nodes' clients never saw ${old.nodeId}'s share leave the count (lowest ${othersMin})`);
  }
  const tRolled = Date.now();

  // The end state: exactly 1000 everywhere, and it stays so.
  assert.deepStrictEqual(histogram(clients), { [CLIENTS]: CLIENTS });
  await presenceReaches(nodes, CLIENTS, { locals: shares, mode: 'redis', timeoutMs: 2000 });
  await holds(
    async () => {
      assert.deepStrictEqual(histogram(clients), { [CLIENTS]: CLIENTS });
      for (const n of nodes) assert.equal((await n.presence()).users, CLIENTS, `${n.nodeId} /api/presence.users`);
    },
    { forMs: 1000, intervalMs: 100, what: `all clients and nodes at ${CLIENTS}` },
  );
  await allReach(clients, CLIENTS, { timeoutMs: 1000 });
  // No client was ever told more than there are: a restarted node's share is never counted twice.
  const over = clients.filter((c) => c.values.some((v) => v > CLIENTS));
  assert.equal(over.length, 0, `clients shown more than ${CLIENTS}: ${over.slice(0, 3).map((c) => c.describe()).join(' | ')}`);
  t.diagnostic(`MEASURED rolling restart of 3 nodes: ${tRolled - tRolling} ms; whole test ${Date.now() - tStart} ms`);
});
