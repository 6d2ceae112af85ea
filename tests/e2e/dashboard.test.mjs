// The live cluster dashboard (`GET /dashboard`) in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is downloaded), fed by three nodes on one real Redis.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { useE2E, defer, startRedis, startCluster, connectMany, allReach, presenceReaches, eventually, holds, artifactPath, CHROMIUM_PATH, CHROMIUM_ARGS } from './harness.mjs';

useE2E();


/** @type {import('playwright-core').Browser} */
let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30000 });
  defer(() => browser.close());
});

/** What the dashboard shows right now. */
function readDashboard(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent?.trim();
    return {
      total: text('total'),
      node: text('node'),
      local: text('local'),
      nodecount: text('nodecount'),
      state: text('state'),
      mode: text('mode'),
      bars: [...document.querySelectorAll('svg#bars rect.bar')].map((r) => ({
        node: r.getAttribute('data-node'),
        users: r.getAttribute('data-users'),
        width: Number(r.getAttribute('width')),
      })),
      line: document.getElementById('line')?.getAttribute('points') ?? null,
    };
  });
}

/** Waits until the dashboard shows `want` (total, local, nodecount, state, bars' users by node). */
async function dashboardShows(page, want, problems) {
  return eventually(
    async () => {
      const got = await readDashboard(page);
      const view = {
        total: got.total,
        node: got.node,
        local: got.local,
        nodecount: got.nodecount,
        state: got.state,
        mode: got.mode,
        bars: Object.fromEntries(got.bars.map((b) => [b.node, b.users])),
      };
      assert.deepStrictEqual(view, want, `dashboard shows ${JSON.stringify(got)}; browser problems: ${JSON.stringify(problems)}`);
      return got;
    },
    { timeoutMs: 10000, intervalMs: 50, what: `dashboard showing total ${want.total}` },
  );
}

test('the dashboard shows the cluster total, per-node bars and health, and is not counted', { timeout: 90000 }, async (t) => {
  const redis = await startRedis();
  const { nodes } = await startCluster(redis, 3, { tag: 'dash' });
  const [n1, n2, n3] = nodes;
  const ids = nodes.map((n) => n.nodeId);
  await presenceReaches(nodes, 0, { locals: [0, 0, 0], mode: 'redis' });

  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  defer(() => context.close());
  const problems = [];
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('response', (res) => {
    if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
  page.on('requestfailed', (req) => {
    if (!page.isClosed()) problems.push(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
  });

  const res = await page.goto(`${n1.url}/dashboard`, { waitUntil: 'load', timeout: 10000 });
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'] || '', /text\/html/);

  // Empty cluster: total 0, three bars (all at 0), healthy, seen from node 1.
  const base = { node: n1.nodeId, local: '0', nodecount: '3', state: 'healthy', mode: 'redis' };
  await dashboardShows(page, { ...base, total: '0', bars: Object.fromEntries(ids.map((id) => [id, '0'])) }, problems);

  // The page's own Socket.IO connection (namespace /dashboard) is not a user: every node still
  // reports 0, and keeps doing so across a few of the page's one-second snapshots.
  await holds(
    async () => {
      for (const n of nodes) {
        const p = await n.presence();
        assert.deepStrictEqual({ users: p.users, local: p.local }, { users: 0, local: 0 }, `${n.nodeId} /api/presence ${JSON.stringify(p)} with the dashboard open`);
      }
    },
    { forMs: 1500, intervalMs: 100, what: 'no users while only the dashboard is connected' },
  );

  // 5 clients on node 2 and 3 on node 3.
  const onN2 = await connectMany([n2.url], 5, { concurrency: 5, label: 'n2-' });
  const onN3 = await connectMany([n3.url], 3, { concurrency: 3, label: 'n3-' });
  await allReach([...onN2, ...onN3], 8);

  const shown = await dashboardShows(page, { ...base, total: '8', bars: { [ids[0]]: '0', [ids[1]]: '5', [ids[2]]: '3' } }, problems);
  // Bars are drawn to scale: node 2's (5) is wider than node 3's (3), which is wider than node 1's (0).
  const width = Object.fromEntries(shown.bars.map((b) => [b.node, b.width]));
  assert.ok(width[ids[1]] > width[ids[2]] && width[ids[2]] > width[ids[0]], `bar widths ${JSON.stringify(width)}`);
  // The history line has points (one per snapshot received).
  assert.ok(shown.line && shown.line.trim().split(/\s+/).length >= 2, `history polyline points: ${JSON.stringify(shown.line)}`);

  // With the dashboard still connected the cluster counts exactly the 8 clients.
  await presenceReaches(nodes, 8, { locals: [0, 5, 3], mode: 'redis' });
  assert.ok(onN2.every((c) => c.last === 8) && onN3.every((c) => c.last === 8), 'clients still at 8');

  const shot = artifactPath('dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  assert.deepEqual(problems, [], 'browser reported problems');
});
