// The drop-in widget (`/widget.js`) on pages of ANOTHER origin, in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core): pages that carry only the one tag, real nodes on
// one real Redis, a strict Content-Security-Policy, hostile room names, a node going away.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { useE2E, defer, startNode, startRedis, startCluster, freePort, eventually, holds, httpGet, presenceReaches, artifactPath, CHROMIUM_PATH, CHROMIUM_ARGS } from './harness.mjs';

useE2E();

/** @type {import('playwright-core').Browser} */
let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30000 });
  defer(() => browser.close());
});

const escapeAttr = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** The one line a site adds: `<script src=".../widget.js" data-…>` with `attrs` as data-attributes. */
function widgetTag(nodeUrl, attrs = {}) {
  const data = Object.entries(attrs).map(([k, v]) => ` data-${k}="${escapeAttr(v)}"`).join('');
  return `<script src="${nodeUrl}/widget.js"${data} defer></script>`;
}

/** A plain page of a shared-hosting site: some text, `extra` markup and the widget's tag. */
function sitePage(title, tag, extra = '') {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>${tag}</head>
<body><h1>${title}</h1><p>An article on a site that only links to the socket server.</p>${extra}</body></html>`;
}

/**
 * A static site on its own port (another origin than every node). `route(url)` returns
 * `{ body, headers }` for a path or undefined for 404.
 */
async function startSite(route) {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const page = route(new URL(req.url, `http://127.0.0.1:${port}`));
    if (!page) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...page.headers });
    res.end(page.body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  defer(() => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return `http://127.0.0.1:${port}`;
}

/** A fresh browser context; its pages' console errors, page errors and failed requests are collected. */
async function newContext() {
  const context = await browser.newContext({ viewport: { width: 720, height: 300 } });
  defer(() => context.close());
  const problems = [];
  context.on('page', (page) => {
    page.on('console', (msg) => {
      // "Failed to load resource" repeats a bad response, which the 'response' handler reports with its URL.
      if (['error', 'warning'].includes(msg.type()) && !/^Failed to load resource/.test(msg.text())) problems.push(`console ${msg.type()}: ${msg.text()}`);
    });
    page.on('response', (res) => {
      if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) problems.push(`HTTP ${res.status()}: ${res.url()}`);
    });
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('requestfailed', (req) => {
      if (!page.isClosed()) problems.push(`requestfailed: ${req.url()} ${req.failure()?.errorText}`);
    });
  });
  return { context, problems };
}

/** What the widget shows: its text and state (`data-rollcall`). */
function readWidget(page, selector = '.rollcall-widget') {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    return el ? { text: el.textContent, state: el.getAttribute('data-rollcall') } : null;
  }, selector);
}

/** Waits until the widget on `page` shows exactly `text`. */
async function shows(page, text, problems, selector) {
  await eventually(
    async () => {
      const got = await readWidget(page, selector);
      assert.equal(got?.text, text, `${page.url()} shows ${JSON.stringify(got)}; browser problems: ${JSON.stringify(problems)}`);
    },
    { timeoutMs: 15000, intervalMs: 50, what: `${page.url()} showing "${text}"` },
  );
}

/** Opens `url` in a new tab; resolves once the page has loaded. */
async function open(context, url) {
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'load', timeout: 10000 });
  return page;
}

test('/widget.js and /widget.css are served with CORS, caching, ETag/304 and gzip', async () => {
  const node = await startNode({ nodeId: 'widget-http' });
  for (const [file, type] of [['widget.js', /^application\/javascript/], ['widget.css', /^text\/css/]]) {
    const res = await httpGet(`${node.url}/${file}`, { headers: { origin: 'http://elsewhere.example', 'accept-encoding': 'gzip' } });
    const body = await res.text();
    assert.equal(res.status, 200, file);
    assert.match(res.headers.get('content-type'), type);
    assert.equal(res.headers.get('content-encoding'), 'gzip');
    assert.equal(res.headers.get('cache-control'), 'public, max-age=3600');
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.ok(body.includes('rollcall'), `${file} body`);
    const again = await httpGet(`${node.url}/${file}`, { headers: { 'accept-encoding': 'gzip', 'if-none-match': res.headers.get('etag') } });
    assert.equal(again.status, 304, `${file} revalidated`);
  }
});

test('pages on another origin with only the tag show the true global and per-page counts across two nodes', { timeout: 120000 }, async (t) => {
  const redis = await startRedis();
  const { nodes } = await startCluster(redis, 2, { tag: 'widget' });
  // /a.html?node=1 and /a.html?node=2 are the same page (one path, one room) served with a tag for node 1 or 2.
  const site = await startSite((url) => {
    const node = nodes[Number(url.searchParams.get('node')) - 1];
    if (!node || !['/a.html', '/b.html'].includes(url.pathname)) return undefined;
    return { body: sitePage(`Page ${url.pathname}`, widgetTag(node.url, { room: 'page' })) };
  });
  assert.notEqual(new URL(site).origin, new URL(nodes[0].url).origin);
  const { context, problems } = await newContext();
  const requests = [];
  context.on('request', (req) => requests.push(req.url()));
  const sockets = [];
  context.on('page', (page) => page.on('websocket', (ws) => sockets.push(ws.url())));

  const tabs = {};
  const expectAll = async (want) => {
    for (const [name, text] of Object.entries(want)) await shows(tabs[name], text, problems);
  };
  tabs.a1 = await open(context, `${site}/a.html?node=1`);
  await expectAll({ a1: '1 online · 1 on this page' });
  const firstPage = [...requests];
  tabs.a2 = await open(context, `${site}/a.html?node=2`);
  tabs.b1 = await open(context, `${site}/b.html?node=1`);
  await expectAll({ a1: '3 online · 2 on this page', a2: '3 online · 2 on this page', b1: '3 online · 1 on this page' });
  await presenceReaches(nodes, 3, { locals: [2, 1] });
  tabs.b2 = await open(context, `${site}/b.html?node=2`);
  await expectAll({ a1: '4 online · 2 on this page', a2: '4 online · 2 on this page', b1: '4 online · 2 on this page', b2: '4 online · 2 on this page' });
  const shot = artifactPath('widget-badge.png');
  await tabs.b2.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);

  await tabs.a1.close();
  await expectAll({ a2: '3 online · 1 on this page', b1: '3 online · 2 on this page', b2: '3 online · 2 on this page' });
  await tabs.b2.close();
  await expectAll({ a2: '2 online · 1 on this page', b1: '2 online · 1 on this page' });
  await presenceReaches(nodes, 2, { locals: [1, 1] });

  // One tab's whole cost: the page, the script, its stylesheet, the client bundle, one WebSocket.
  const n1 = nodes[0].url;
  assert.deepEqual(firstPage, [`${site}/a.html?node=1`, `${n1}/widget.js`, `${n1}/widget.css`, `${n1}/socket.io/socket.io.min.js`]);
  assert.ok(sockets[0].startsWith(`${n1.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`), sockets[0]);
  t.diagnostic(`requests of one tab: ${firstPage.length} HTTP + 1 WebSocket`);
  assert.deepEqual(await context.cookies(), [], 'no cookies');
  assert.deepEqual(problems, [], 'browser reported problems');
});

test('data-target renders into the page, data-format changes the wording, named rooms, accessibility', { timeout: 60000 }, async (t) => {
  const node = await startNode({ nodeId: 'widget-target' });
  const format = '{online} pessoas online, {room} nesta página';
  const site = await startSite((url) => {
    if (url.pathname === '/pt.html') {
      const extra = '<p>Agora: <strong id="contador">carregando</strong>. Obrigado pela visita.</p>';
      return { body: sitePage('Página', widgetTag(node.url, { room: 'page', target: '#contador', format }), extra) };
    }
    if (url.pathname === '/lobby.html') return { body: sitePage('Lobby', widgetTag(node.url, { room: 'lobby' })) };
    if (url.pathname === '/global.html') return { body: sitePage('Global', widgetTag(node.url)) };
    return undefined;
  });
  const { context, problems } = await newContext();
  const pt = await open(context, `${site}/pt.html`);
  await shows(pt, '1 pessoas online, 1 nesta página', problems, '#contador');
  assert.equal(await pt.locator('.rollcall-badge').count(), 0, 'no badge when data-target is given');
  const width = () => pt.evaluate(() => document.querySelector('#contador .rollcall-number').getBoundingClientRect().width);
  const widthAtOne = await width();

  const lobby = await open(context, `${site}/lobby.html`);
  await shows(lobby, '2 online · 1 in lobby', problems);
  const global = await open(context, `${site}/global.html`);
  await shows(global, '3 online', problems);
  await shows(pt, '3 pessoas online, 1 nesta página', problems, '#contador');
  assert.equal(await width(), widthAtOne, 'a changing number keeps its width (no layout shift)');

  const target = await pt.evaluate(() => {
    const el = document.querySelector('#contador');
    const number = getComputedStyle(el.querySelector('.rollcall-number'));
    return { role: el.getAttribute('role'), live: el.getAttribute('aria-live'), numeric: number.fontVariantNumeric, minWidth: number.minWidth };
  });
  assert.deepEqual({ ...target, minWidth: parseFloat(target.minWidth) > 0 }, { role: 'status', live: 'polite', numeric: 'tabular-nums', minWidth: true });
  const shot = artifactPath('widget-target.png');
  await pt.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);

  // Styles come from custom properties the page sets.
  await lobby.addStyleTag({ content: ':root { --rollcall-background: rgb(1, 2, 3); --rollcall-color: rgb(250, 251, 252); }' });
  const colours = await lobby.evaluate(() => {
    const style = getComputedStyle(document.querySelector('.rollcall-badge'));
    return [style.backgroundColor, style.color, style.position];
  });
  assert.deepEqual(colours, ['rgb(1, 2, 3)', 'rgb(250, 251, 252)', 'fixed']);
  assert.deepEqual(problems, [], 'browser reported problems');
});

test('a page with a strict CSP (only the node allowed, no unsafe-inline or unsafe-eval) shows the counts', { timeout: 60000 }, async (t) => {
  const node = await startNode({ nodeId: 'widget-csp' });
  const { port } = node;
  const csp = `default-src 'none'; script-src ${node.url}; style-src ${node.url}; connect-src ${node.url} ws://127.0.0.1:${port}`;
  const site = await startSite((url) =>
    url.pathname === '/strict.html'
      ? { body: sitePage('Strict page', widgetTag(node.url, { room: 'page' })), headers: { 'content-security-policy': csp } }
      : undefined,
  );
  const { context, problems } = await newContext();
  // Violations are recorded from outside the page's world (CDP init scripts are not subject to CSP).
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      document.documentElement.dataset.violations = `${document.documentElement.dataset.violations || ''}${e.violatedDirective} ${e.blockedURI};`;
    });
  });
  const page = await open(context, `${site}/strict.html`);
  await shows(page, '1 online · 1 on this page', problems);
  const second = await open(context, `${site}/strict.html`);
  await shows(second, '2 online · 2 on this page', problems);
  await shows(page, '2 online · 2 on this page', problems);
  const styled = await page.evaluate(() => getComputedStyle(document.querySelector('.rollcall-badge')).position);
  assert.equal(styled, 'fixed', 'the stylesheet applies under the CSP');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.violations ?? ''), '', 'CSP violations');
  const shot = artifactPath('widget-csp.png');
  await page.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);
  assert.deepEqual(problems, [], 'browser reported problems');
});

test('the widget adds only window.rollcallWidget, keeps the page\'s own io and renders room names as text', { timeout: 60000 }, async () => {
  const node = await startNode({ nodeId: 'widget-globals' });
  const hostile = '<img src=x onerror="window.pwned=1">';
  const tutorial = `<script src="${node.url}/socket.io/socket.io.js"></script><script>window.pageIo = io;</script>`;
  const site = await startSite((url) => {
    const pages = {
      '/plain.html': () => sitePage('Plain', ''),
      '/widget.html': () => sitePage('Plain', widgetTag(node.url, { room: 'page' })),
      '/own-io.html': () => sitePage('Tutorial', tutorial + widgetTag(node.url)),
      '/hostile.html': () => sitePage('Hostile', widgetTag(node.url, { room: hostile })),
    };
    return pages[url.pathname] && { body: pages[url.pathname]() };
  });
  const { context, problems } = await newContext();
  const globals = (page) => page.evaluate(() => Object.getOwnPropertyNames(window));

  const plain = await open(context, `${site}/plain.html`);
  const withWidget = await open(context, `${site}/widget.html`);
  await shows(withWidget, '1 online · 1 on this page', problems);
  const before = new Set(await globals(plain));
  const added = (await globals(withWidget)).filter((name) => !before.has(name));
  assert.deepEqual(added, ['rollcallWidget'], 'globals the widget leaves');
  const api = await withWidget.evaluate(() => rollcallWidget.widgets.map(({ room, online, inRoom, state }) => ({ room, online, inRoom, state })));
  assert.deepEqual(api, [{ room: '/widget.html', online: 1, inRoom: 1, state: 'live' }]);

  // The tutorial's page has its own `io` (loaded before the widget): it stays the page's.
  const ownIo = await open(context, `${site}/own-io.html`);
  await shows(ownIo, '2 online', problems);
  assert.equal(await ownIo.evaluate(() => typeof io === 'function' && io === window.pageIo), true, "the page's io");

  const evil = await open(context, `${site}/hostile.html`);
  await shows(evil, `3 online · 1 in ${hostile}`, problems);
  const injected = await evil.evaluate(() => ({ images: document.images.length, pwned: 'pwned' in window }));
  assert.deepEqual(injected, { images: 0, pwned: false });

  // stop() disconnects and removes the badge.
  await withWidget.evaluate(() => rollcallWidget.widgets[0].stop());
  assert.deepEqual(await withWidget.evaluate(() => [rollcallWidget.widgets.length, document.querySelectorAll('.rollcall-widget').length]), [0, 0]);
  await shows(evil, `2 online · 1 in ${hostile}`, problems);
  assert.deepEqual(problems, [], 'browser reported problems');
});

test('a node that goes away shows "–" and the counts come back with it', { timeout: 90000 }, async () => {
  const node = await startNode({ nodeId: 'widget-down' });
  const site = await startSite((url) => (url.pathname === '/p.html' ? { body: sitePage('P', widgetTag(node.url, { room: 'page' })) } : undefined));
  const { context, problems } = await newContext();
  const page = await open(context, `${site}/p.html`);
  await shows(page, '1 online · 1 on this page', problems);
  const badgeWidth = () => page.evaluate(() => document.querySelector('.rollcall-badge').getBoundingClientRect().width);
  const liveWidth = await badgeWidth();

  node.kill('SIGKILL');
  await node.proc.exited;
  await shows(page, '– online · – on this page', problems);
  assert.equal((await readWidget(page)).state, 'offline');
  const offlineWidth = await badgeWidth();
  assert.ok(Math.abs(offlineWidth - liveWidth) < 0.5, `"–" takes the room of a digit: badge ${liveWidth}px live, ${offlineWidth}px offline`);

  await startNode({ nodeId: 'widget-down', port: node.port });
  await shows(page, '1 online · 1 on this page', problems);
  assert.equal((await readWidget(page)).state, 'live');
  // Failed reconnects while the node was down are expected; nothing else may have gone wrong.
  const unexpected = problems.filter((p) => !/WebSocket connection|ERR_CONNECTION_REFUSED|socket\.io\/\?EIO=4/.test(p));
  assert.deepEqual(unexpected, []);
});

test('a page with an AMD loader is told why it gets no count, once', { timeout: 60000 }, async () => {
  const node = await startNode({ nodeId: 'widget-amd' });
  // The shape of RequireJS's global `define`: the bundle registers with it instead of defining `io`.
  const amd = '<script>window.defined = 0; window.define = () => { window.defined += 1; }; define.amd = {};</script>';
  const site = await startSite((url) => (url.pathname === '/amd.html' ? { body: sitePage('AMD', amd + widgetTag(node.url)) } : undefined));
  const { context, problems } = await newContext();
  const page = await open(context, `${site}/amd.html`);
  await eventually(() => assert.match(problems.join('\n'), /defined no io \(is there an AMD loader/), { what: 'the console warning' });
  assert.deepEqual(await readWidget(page), { text: '– online', state: 'offline' });
  // A failed bundle is retried after 2 s; this one must not be.
  await holds(async () => assert.equal(await page.evaluate(() => window.defined), 1, 'the bundle ran once'), { forMs: 3000, what: 'no retry' });
  assert.equal(problems.length, 1, JSON.stringify(problems));
});
