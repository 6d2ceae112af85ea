// HAProxy (config from scripts/lb-config.sh, sticky cookie ROLLCALL_NODE) in front of three nodes
// on one Redis: clients that only know the load balancer's address all see one exact count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  useE2E,
  defer,
  REPO_ROOT,
  startRedis,
  startCluster,
  spawnTracked,
  freePort,
  eventually,
  getJson,
  connect,
  allReach,
  presenceReaches,
  closeAll,
} from './harness.mjs';

useE2E();

// ROLLCALL_LB_SCRIPT overrides the script (e.g. to try a draft); the default is the repo's own.
const LB_SCRIPT = process.env.ROLLCALL_LB_SCRIPT || path.join(REPO_ROOT, 'scripts', 'lb-config.sh');


/** Writes the script's HAProxy config for the given ports, checks it, and runs haproxy -db. */
async function startHaproxy(lbPort, nodePorts) {
  const gen = spawnSync('bash', [LB_SCRIPT, String(lbPort), ...nodePorts.map(String)], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 10000 });
  assert.equal(gen.status, 0, `lb-config.sh failed (${gen.status} ${gen.signal}): ${gen.stderr}`);
  assert.match(gen.stdout, /ROLLCALL_NODE/, 'the config sets the sticky cookie ROLLCALL_NODE');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rollcall-e2e-lb-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfg, gen.stdout);
  const check = spawnSync('haproxy', ['-c', '-f', cfg], { encoding: 'utf8', timeout: 10000 });
  assert.equal(check.status, 0, `haproxy -c rejected the config:\n${check.stdout}${check.stderr}\n--- config ---\n${gen.stdout}`);
  const proc = spawnTracked(`haproxy:${lbPort}`, 'haproxy', ['-f', cfg, '-db']);
  const url = `http://127.0.0.1:${lbPort}`;
  return { url, proc };
}

test('60 clients through HAProxy (30 WebSocket, 30 long-polling) see one count', { timeout: 60000 }, async () => {
  const redis = await startRedis();
  const { nodes } = await startCluster(redis, 3, { tag: 'lb' });
  const lbPort = await freePort();
  const lb = await startHaproxy(lbPort, nodes.map((n) => n.port));

  // Ready when plain requests (no cookie) through the LB have reached every node.
  const reached = new Set();
  await eventually(
    async () => {
      assert.equal(lb.proc.exitInfo, null, `haproxy exited: ${lb.proc.logs()}`);
      const p = await getJson(`${lb.url}/api/presence`, { timeoutMs: 1000 });
      reached.add(p.node);
      assert.equal(reached.size, nodes.length, `LB reached only ${JSON.stringify([...reached])}`);
    },
    { timeoutMs: 15000, intervalMs: 50, what: 'the LB forwarding to all three nodes' },
  );

  // Interleaved WebSocket and polling clients. Polling needs the sticky cookie on every request,
  // which socket.io-client keeps in Node only with withCredentials.
  const clients = [];
  for (let i = 0; i < 60; i++) {
    const polling = i % 2 === 1;
    clients.push(
      await connect(lb.url, {
        transports: polling ? ['polling'] : ['websocket'],
        withCredentials: polling,
        label: `lb-${polling ? 'poll' : 'ws'}${i}`,
      }),
    );
  }
  await allReach(clients, 60, { timeoutMs: 15000 });
  for (const c of clients) {
    assert.ok(c.socket.connected, `${c.label} was disconnected (sticky session broken?)`);
    assert.ok(c.firstDelayMs <= 1000, `${c.label}: first value ${c.firstDelayMs} ms after connect`);
  }
  const seen = await presenceReaches(nodes, 60, { mode: 'redis', timeoutMs: 10000 });
  const locals = seen.map((p) => p.local);
  assert.equal(locals.reduce((a, b) => a + b, 0), 60, `locals ${JSON.stringify(locals)} add up to 60`);
  assert.ok(locals.filter((n) => n > 0).length > 1, `all clients on one node: locals ${JSON.stringify(locals)}`);

  // Half leave: 15 of each kind.
  const leaving = clients.filter((_, i) => i < 30);
  const staying = clients.filter((_, i) => i >= 30);
  await closeAll(leaving);
  await allReach(staying, 30, { timeoutMs: 15000 });
  await presenceReaches(nodes, 30, { mode: 'redis', timeoutMs: 10000 });
  for (const c of staying) assert.ok(c.socket.connected, `${c.label} lost its connection`);
  const viaLb = await getJson(`${lb.url}/api/presence`);
  assert.equal(viaLb.users, 30, `/api/presence through the LB: ${JSON.stringify(viaLb)}`);
});
