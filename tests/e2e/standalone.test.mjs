// One rollcall node without Redis (standalone, in-memory count).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  useE2E,
  startNode,
  connect,
  allReach,
  presenceReaches,
  holds,
  httpGet,
  withDeadline,
  BUNDLE_DIR,
} from './harness.mjs';

useE2E();

test('counts 1..20 up as clients join and back down as they leave', { timeout: 60000 }, async () => {
  const node = await startNode({ nodeId: 'solo' });
  const clients = [];
  for (let i = 1; i <= 20; i++) {
    const c = await connect(node.url, { label: `solo-c${i}` });
    clients.push(c);
    // The newcomer is told the count including itself, right after connecting.
    assert.equal(await c.firstValue(1000), i, `client ${i}'s first refresh users; ${c.describe()}`);
    await allReach(clients, i, { timeoutMs: 3000 });
  }
  await presenceReaches([node], 20, { locals: [20], mode: 'standalone', timeoutMs: 3000 });

  for (let i = 20; i >= 1; i--) {
    const gone = clients.pop();
    await gone.close();
    await allReach(clients, i - 1, { timeoutMs: 3000 });
  }
  await presenceReaches([node], 0, { locals: [0], mode: 'standalone', timeoutMs: 3000 });
});

test('client events never change the count', { timeout: 60000 }, async () => {
  const node = await startNode({ nodeId: 'solo-events' });
  const clients = [];
  for (let i = 0; i < 3; i++) clients.push(await connect(node.url, { transports: i === 1 ? ['polling'] : ['websocket'], label: `ev${i}` }));
  await allReach(clients, 3, { timeoutMs: 3000 });
  const marks = clients.map((c) => c.mark());

  // A client posing as the server, and assorted noise, on every transport.
  for (const c of clients) {
    c.socket.emit('refresh users', 999);
    c.socket.emit('refresh users', -5);
    c.socket.emit('refresh users', 'lots');
    c.socket.emit('refresh users');
    c.socket.emit('connection');
    c.socket.emit('join', { room: 'x' });
    c.socket.emit('random event', 1, 'two', { three: [3] });
    c.socket.emit('users', 0);
    c.socket.emit('x'.repeat(200), Buffer.from([1, 2, 3]));
  }
  await holds(
    async () => {
      for (const [i, c] of clients.entries()) {
        assert.ok(c.socket.connected, `${c.label} was disconnected by its own events`);
        assert.deepEqual(c.valuesSince(marks[i]).filter((v) => v !== 3), [], `${c.describe()}`);
      }
      const p = await node.presence();
      assert.equal(p.users, 3, `/api/presence ${JSON.stringify(p)}`);
    },
    { forMs: 600, what: 'count stays 3 after client events' },
  );

  // The count is still exact: a newcomer is the 4th.
  const late = await connect(node.url, { transports: ['websocket'], label: 'late' });
  assert.equal(await late.firstValue(1000), 4, late.describe());
  await allReach([...clients, late], 4, { timeoutMs: 3000 });
});

test('serves the page, the client bundle, health, readiness, presence and metrics', { timeout: 30000 }, async () => {
  const node = await startNode({ nodeId: 'solo-http' });

  const page = await httpGet(`${node.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') || '', /text\/html/);
  const html = await page.text();
  assert.match(html, /Hello world/);
  assert.match(html, /id=["']?count\b/);
  assert.match(html, /\/socket\.io\/socket\.io(\.min)?\.js/);

  for (const [file, type] of [
    ['socket.io.js', /javascript/],
    ['socket.io.min.js', /javascript/],
    ['socket.io.min.js.map', /json|javascript|octet-stream|text\/plain/],
  ]) {
    const res = await httpGet(`${node.url}/socket.io/${file}`, { headers: { Origin: 'http://127.0.0.1:1' } });
    assert.equal(res.status, 200, `/socket.io/${file}`);
    assert.match(res.headers.get('content-type') || '', type, `/socket.io/${file} content-type`);
    const acao = res.headers.get('access-control-allow-origin');
    assert.ok(acao === '*' || acao === 'http://127.0.0.1:1', `/socket.io/${file} access-control-allow-origin: ${acao}`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.ok(body.equals(readFileSync(path.join(BUNDLE_DIR, file))), `/socket.io/${file} is not the official bundle (${body.length} bytes)`);
  }

  const health = await httpGet(`${node.url}/healthz`);
  assert.equal(health.status, 200);
  await health.arrayBuffer();
  const ready = await httpGet(`${node.url}/readyz`);
  assert.equal(ready.status, 200);
  await ready.arrayBuffer();

  const c = await connect(node.url, { label: 'http-c' });
  await c.waitFor(1, 2000);
  const p = await node.presence();
  const { users, node: id, local, mode, degraded } = p; // the contract's fields; extra fields are allowed
  assert.deepEqual({ users, node: id, local, mode, degraded }, { users: 1, node: 'solo-http', local: 1, mode: 'standalone', degraded: false }, JSON.stringify(p));

  const metrics = await httpGet(`${node.url}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get('content-type') || '', /text\/plain|openmetrics/);
  const text = await metrics.text();
  assert.match(text, /^# (TYPE|HELP) /m, 'Prometheus text format');
});

test('SIGTERM drains: not ready, clients disconnected, exits in time', { timeout: 30000 }, async () => {
  const node = await startNode({ nodeId: 'solo-drain', env: { ROLLCALL_SHUTDOWN_GRACE_MS: '2000' } });
  const c = await connect(node.url, { transports: ['websocket'], label: 'drain-c' });
  await c.waitFor(1, 2000);
  const disconnected = new Promise((r) => c.socket.once('disconnect', r));
  node.kill('SIGTERM');
  await withDeadline(disconnected, 5000, 'client not disconnected within 5 s of SIGTERM');
  const exit = await withDeadline(node.proc.exited, 6000, 'node did not exit within 6 s of SIGTERM (grace 2 s)');
  assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}`);
});
