// Benchmark reference: the Socket.IO tutorial's live user count, scaled the way Node users
// usually do it — socket.io + @socket.io/redis-adapter, a Redis counter INCR'd / DECR'd on
// every connect / disconnect, then `io.emit('refresh users', total)` to everybody.
//
// Env: PORT (3000), HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6379),
//      PRESENCE_KEY (reference:users).
// HTTP: GET /api/presence -> {"users": N} (the Redis counter), GET /healthz -> ok.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const KEY = process.env.PRESENCE_KEY || 'reference:users';

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) client.on('error', (err) => console.error('redis:', err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/api/presence') {
      pub.get(KEY)
        .then((value) => sendJson(res, 200, { users: Number(value) || 0 }))
        .catch((err) => sendJson(res, 503, { error: String(err) }));
    } else if (req.method === 'GET' && req.url === '/healthz') {
      sendJson(res, 200, { ok: true });
    } else {
      res.writeHead(404).end();
    }
  });

  const io = new Server(httpServer, { adapter: createAdapter(pub, sub), serveClient: false });

  io.on('connection', (socket) => {
    // The disconnect handler is attached synchronously and waits for this socket's INCR, so a
    // client that leaves at once is still counted out exactly once.
    const joined = pub.incr(KEY).then((total) => { io.emit('refresh users', total); });
    socket.on('disconnect', () => {
      joined
        .then(() => pub.decr(KEY))
        .then((total) => { io.emit('refresh users', total); })
        .catch((err) => console.error('disconnect:', err.message));
    });
    joined.catch((err) => console.error('connect:', err.message));
  });

  httpServer.listen(PORT, HOST, () => console.log(`reference listening on http://${HOST}:${PORT}`));

  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
