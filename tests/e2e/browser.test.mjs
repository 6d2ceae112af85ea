// Real pages in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { useE2E, defer, startNode, freePort, eventually, presenceReaches, artifactPath, withDeadline, CHROMIUM_PATH, CHROMIUM_ARGS } from './harness.mjs';

useE2E();


/** @type {import('playwright-core').Browser} */
let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30000 });
  defer(() => browser.close());
});

/** A fresh browser context whose pages record console errors, page errors and failed requests. */
async function newContext() {
  const context = await browser.newContext({ viewport: { width: 800, height: 400 } });
  defer(() => context.close());
  const problems = [];
  context.on('page', (page) => watch(page, problems));
  return { context, problems };
}

function watch(page, problems) {
  page.on('console', (msg) => {
    // "Failed to load resource" repeats a bad response, which the 'response' handler reports with its URL.
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('requestfailed', (req) => {
    // A long-poll or WebSocket cut short by closing the page is not a failure.
    if (!page.isClosed()) problems.push(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
  });
}

/**
 * Resolves once the page's Socket.IO connection runs over WebSocket: it sent the Engine.IO upgrade
 * packet "5" (after starting on polling) or the Socket.IO CONNECT "40" (WebSocket from the start).
 */
function wsReady(page, timeoutMs = 10000) {
  const ready = new Promise((resolve) => {
    page.on('websocket', (ws) => {
      ws.on('framesent', ({ payload }) => {
        if (payload === '5' || String(payload).startsWith('40')) resolve();
      });
    });
  });
  const done = withDeadline(ready, timeoutMs, `${page.url()}: Socket.IO never ran over WebSocket within ${timeoutMs} ms`);
  done.catch(() => {}); // reported when awaited, not as an unhandled rejection
  return done;
}

/** Waits until `#count` on the page reads `n`; failure shows what the page showed. */
async function countIs(page, n, problems = [], extra = () => '') {
  await eventually(
    async () => {
      const state = await page.evaluate(() => ({
        count: document.querySelector('#count')?.textContent?.trim(),
        transport: document.querySelector('#transport')?.textContent?.trim(),
        status: document.querySelector('#status')?.textContent?.trim(),
      }));
      if (state.count !== String(n)) {
        assert.fail(`${page.url()} shows ${JSON.stringify(state)}, want count ${n}; browser problems: ${JSON.stringify(problems)} ${await extra()}`);
      }
    },
    { timeoutMs: 10000, intervalMs: 50, what: `${page.url()} #count = ${n}` },
  );
}

test("the node's own page shows the live count", { timeout: 60000 }, async (t) => {
  const node = await startNode({ nodeId: 'browser-own' });
  const { context, problems } = await newContext();

  const first = await context.newPage();
  await first.goto(`${node.url}/`, { waitUntil: 'load', timeout: 10000 });
  assert.match(await first.textContent('body'), /Hello world/);
  await countIs(first, 1, problems);
  const shot1 = artifactPath('own-page-1.png');
  await first.screenshot({ path: shot1 });
  t.diagnostic(`screenshot: ${shot1}`);

  const second = await context.newPage();
  const onWebSocket = wsReady(second);
  await second.goto(`${node.url}/`, { waitUntil: 'load', timeout: 10000 });
  await countIs(second, 2, problems);
  await countIs(first, 2, problems);
  await presenceReaches([node], 2, { locals: [2], mode: 'standalone' });
  const shot2 = artifactPath('own-page-2.png');
  await second.screenshot({ path: shot2 });
  t.diagnostic(`screenshot: ${shot2}`);

  // A page closed between two long-polls is only noticed by the Engine.IO heartbeat (~45 s), so
  // close it once it runs on WebSocket, whose close the server sees at once.
  await onWebSocket;
  await second.close();
  await countIs(first, 1, problems, async () => `(the node reports ${JSON.stringify(await node.presence())})`);
  assert.deepEqual(problems, [], 'browser reported problems');
});

/** The tutorial's shared-hosting case: a page on another origin loads the bundle and connects. */
function sharedHostingPage(nodeUrl, name, ioOptions) {
  const opts = ioOptions === undefined ? '' : `, ${JSON.stringify(ioOptions)}`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>shared hosting: ${name}</title>
<style>body{font:20px sans-serif;margin:2em} #count{font-weight:bold}</style></head>
<body>
<h1>Shared hosting page (${name})</h1>
<p>Users online: <span id="count">?</span></p>
<p>Transport: <span id="transport">none</span>, status: <span id="status">loading</span></p>
<script src="${nodeUrl}/socket.io/socket.io.js"></script>
<script>
  const socket = io(${JSON.stringify(nodeUrl)}${opts});
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  socket.on('connect', () => {
    show('status', 'connected');
    show('transport', socket.io.engine.transport.name);
    socket.io.engine.on('upgrade', (tr) => show('transport', tr.name));
  });
  socket.on('connect_error', (err) => show('status', 'connect_error: ' + err.message));
  socket.on('disconnect', (reason) => show('status', 'disconnected: ' + reason));
  socket.on('refresh users', (n) => show('count', n));
</script>
</body></html>`;
}

async function startPageServer(pages) {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const body = pages[req.url];
    if (body === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  defer(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${port}`;
}

test('a page on another origin connects over WebSocket, the default, and long-polling (CORS)', { timeout: 60000 }, async (t) => {
  const node = await startNode({ nodeId: 'browser-cors' });
  const variants = [
    // [name, io() options, transport the page must end on]
    ['websocket', { transports: ['websocket'], reconnection: false }, 'websocket'],
    ['default', { reconnection: false }, 'websocket'], // polling handshake (CORS), then upgrade
    ['polling', { transports: ['polling'], reconnection: false }, 'polling'],
  ];
  const site = await startPageServer(Object.fromEntries(variants.map(([name, opts]) => [`/${name}.html`, sharedHostingPage(node.url, name, opts)])));
  assert.notEqual(new URL(site).origin, new URL(node.url).origin);
  const { context, problems } = await newContext();

  const pages = [];
  for (const [i, [name, , transport]] of variants.entries()) {
    const page = await context.newPage();
    await page.goto(`${site}/${name}.html`, { waitUntil: 'load', timeout: 10000 });
    await countIs(page, i + 1, problems);
    for (const p of pages) await countIs(p, i + 1, problems);
    pages.push(page);
    await eventually(
      async () => {
        const tr = await page.textContent('#transport');
        assert.equal(tr, transport, `${name} page transport (status: ${await page.textContent('#status')}; browser problems: ${JSON.stringify(problems)})`);
      },
      { timeoutMs: 10000, what: `${name} page on ${transport}` },
    );
    const shot = artifactPath(`cross-origin-${name}.png`);
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);
  }
  await presenceReaches([node], variants.length, { locals: [variants.length], mode: 'standalone' });
  assert.deepEqual(problems, [], 'browser reported problems (CORS?)');
});
