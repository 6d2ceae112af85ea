// Rooms with the official socket.io-client, three nodes on one real redis-server: rooms at the
// handshake (`query.room`, `auth.rooms`) and by `join` / `leave` events with acks, over WebSocket,
// long-polling and the default polling-then-upgrade. `room users` reaches members only, is exact
// once changes stop and never shows an older count after a newer one; refusals say why and
// count nobody; the global `refresh users` stays exact beside the rooms.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useE2E,
  startRedis,
  startCluster,
  connect,
  connectRefused,
  allReach,
  presenceReaches,
  assertRoomMonotonic,
  getJson,
  eventually,
  holds,
  closeAll,
} from './harness.mjs';

useE2E();

/** @type {Awaited<ReturnType<typeof startRedis>>} */
let redis;
before(async () => {
  redis = await startRedis();
});

const MAX_ROOMS = 4;
const ENV = { ROLLCALL_MAX_ROOMS_PER_CLIENT: String(MAX_ROOMS) };
/** WebSocket only, long-polling only, and the default: polling, then the upgrade. */
const KINDS = [{ transports: ['websocket'] }, { transports: ['polling'] }, {}];
/** The transport each of KINDS ends on. */
const ENDS_ON = ['websocket', 'polling', 'websocket'];
const PAGE = '/page/x';

/** Every node's `GET /api/rooms/{room}` says `n` (anonymous clients: users = connections). */
async function apiShows(nodes, room, n) {
  const want = { room, users: n, connections: n };
  await eventually(
    async () => {
      for (const node of nodes) {
        const got = await getJson(`${node.url}/api/rooms/${encodeURIComponent(room)}`);
        assert.deepStrictEqual(got, want, `${node.nodeId}: GET /api/rooms/${room}`);
      }
    },
    { what: `GET /api/rooms/${room} = ${n} on every node` },
  );
}

async function membersShow(members, room, n) {
  await Promise.all(members.map((c) => c.waitRoom(room, n, 10000)));
}

function expectAck(ack, room, n, what) {
  assert.deepStrictEqual(ack, { ok: true, room, users: n, connections: n }, what);
}

function expectRefusal(ack, what) {
  assert.deepStrictEqual(Object.keys(ack ?? {}).sort(), ['error', 'ok'], `${what}: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, false, what);
  assert.ok(typeof ack.error === 'string' && ack.error.length > 0, `${what}: ${JSON.stringify(ack)}`);
}

function neverHeard(clients, room) {
  for (const c of clients) assert.deepStrictEqual(c.roomValues(room), [], `${c.label} is not in ${room}`);
}

test('rooms at connect (query, auth) and by join/leave over all transports on three nodes: exact acks, counts only to members, monotonic', { timeout: 90000 }, async () => {
  const { nodes } = await startCluster(redis, 3, { tag: 'rooms', env: ENV });
  const watchers = [];
  for (const [i, node] of nodes.entries()) {
    watchers.push(await connect(node.url, { ...KINDS[i], label: `watcher@n${i + 1}` }));
  }
  // Nine members of PAGE, one at a time: three by `query.room`, three by `auth.rooms` (also in
  // "lobby"), three by a `join` event; each group spans every node and every transport.
  const members = [];
  const byQuery = [];
  const byAuth = [];
  const byEvent = [];
  for (let i = 0; i < 9; i++) {
    const node = nodes[i % 3];
    const how = Math.floor(i / 3);
    const kind = (i + how) % 3;
    const opts = { ...KINDS[kind], label: `m${i}-${['query', 'auth', 'event'][how]}@n${(i % 3) + 1}` };
    if (how === 0) opts.query = { room: PAGE };
    if (how === 1) opts.auth = { rooms: [PAGE, 'lobby'] };
    const c = await connect(node.url, opts);
    c.endsOn = ENDS_ON[kind];
    [byQuery, byAuth, byEvent][how].push(c);
    if (how === 2) expectAck(await c.ack('join', PAGE), PAGE, i + 1, `${c.label}: join ack`);
    members.push(c);
    await membersShow(members, PAGE, i + 1);
    // A newcomer's first count includes itself and everyone before it.
    assert.deepStrictEqual(c.roomValues(PAGE)[0], { room: PAGE, users: i + 1, connections: i + 1 }, c.label);
  }
  await membersShow(byAuth, 'lobby', 3);
  await apiShows(nodes, PAGE, 9);
  await apiShows(nodes, 'lobby', 3);
  const everyone = [...watchers, ...members];
  await allReach(everyone, 12);
  await presenceReaches(nodes, 12);
  for (const c of members) assertRoomMonotonic(c, PAGE, 0, 'up');
  await eventually(() => members.forEach((c) => assert.equal(c.transport, c.endsOn, c.label)), { what: 'transports (upgrades done)' });
  neverHeard(watchers, PAGE);
  neverHeard([...watchers, ...byQuery, ...byEvent], 'lobby');

  // Leaves: the event members one at a time (exact acks), then the query members all at once.
  const marks = new Map(members.map((c) => [c, c.roomMark()]));
  let inRoom = 9;
  for (const c of byEvent) {
    inRoom -= 1;
    expectAck(await c.ack('leave', PAGE), PAGE, inRoom, `${c.label}: leave ack`);
    c.leftAt = c.roomMark();
    await membersShow([...byQuery, ...byAuth, ...byEvent.filter((o) => !o.leftAt)], PAGE, inRoom);
  }
  // Leaving a room one is not in changes nothing and answers with its count.
  expectAck(await byEvent[0].ack('leave', 'lobby'), 'lobby', 3, 'leave of a room one is not in');
  await closeAll(byQuery);
  await membersShow(byAuth, PAGE, 3);
  await apiShows(nodes, PAGE, 3);
  await apiShows(nodes, 'lobby', 3);
  for (const c of byAuth) assertRoomMonotonic(c, PAGE, marks.get(c), 'down');
  for (const c of byEvent) assert.deepStrictEqual(c.roomValues(PAGE, c.leftAt), [], `${c.label}: room users after its leave ack`);
  const staying = [...watchers, ...byAuth, ...byEvent];
  await allReach(staying, 9);
  await presenceReaches(nodes, 9);
  neverHeard(watchers, PAGE);
});

test('36 clients join one room at once on three nodes (handshake and event, all transports): monotonic, exact; 24 leave at once', { timeout: 90000 }, async () => {
  const { nodes } = await startCluster(redis, 3, { tag: 'roomburst', env: ENV });
  const room = 'burst/é';
  const connecting = [];
  for (let i = 0; i < 36; i++) {
    const atConnect = i % 2 === 0;
    const opts = { ...KINDS[Math.floor(i / 3) % 3], label: `b${i}-${atConnect ? 'auth' : 'event'}@n${(i % 3) + 1}` };
    if (atConnect) opts.auth = { rooms: [room] };
    connecting.push(
      connect(nodes[i % 3].url, opts).then(async (c) => {
        c.byEvent = !atConnect;
        if (c.byEvent) {
          const ack = await c.ack('join', room);
          assert.equal(ack.ok, true, `${c.label}: ${JSON.stringify(ack)}`);
          assert.ok(ack.connections >= 1 && ack.connections <= 36 && ack.users === ack.connections, `${c.label}: ${JSON.stringify(ack)}`);
        }
        return c;
      }),
    );
  }
  const clients = await Promise.all(connecting);
  await membersShow(clients, room, 36);
  await apiShows(nodes, room, 36);
  for (const c of clients) assertRoomMonotonic(c, room, 0, 'up');
  await allReach(clients, 36);

  const leaving = clients.slice(0, 24);
  const staying = clients.slice(24);
  const marks = staying.map((c) => c.roomMark());
  await Promise.all(leaving.map((c) => (c.byEvent ? c.ack('leave', room) : c.close())));
  await membersShow(staying, room, 12);
  await apiShows(nodes, room, 12);
  staying.forEach((c, i) => assertRoomMonotonic(c, room, marks[i], 'down'));
  const stillConnected = clients.filter((c) => c.socket.connected);
  await allReach(stillConnected, stillConnected.length);
  await presenceReaches(nodes, stillConnected.length);
});

test('an invalid room at connect is refused with the reason and counts nobody; joins beyond max_rooms_per_client are refused', { timeout: 60000 }, async () => {
  const { nodes } = await startCluster(redis, 3, { tag: 'roomrefuse', env: ENV });
  const present = await connect(nodes[0].url, { transports: ['websocket'], label: 'present' });
  await present.waitFor(1);
  const refusals = [
    [{ auth: { rooms: [''] } }, /^invalid room "": a room name must not be empty$/],
    [{ auth: { rooms: [7] } }, /^invalid room 7: a room name must be a string$/],
    [{ auth: { rooms: 'lobby' } }, /^auth\.rooms must be an array of room names$/],
    [{ query: { room: 'a\u0001b' } }, /^invalid room .*: a room name must not contain control characters$/],
    [{ query: { room: 'é'.repeat(129) } }, /^invalid room .*: a room name must be at most 256 bytes of UTF-8 \(got 258\)$/],
    [{ auth: { rooms: ['a', 'b', 'c', 'd', 'e'] } }, /^too many rooms: 5 asked, at most 4 per connection$/],
  ];
  for (const [i, [opts, reason]] of refusals.entries()) {
    for (const [k, kind] of KINDS.entries()) {
      const err = await connectRefused(nodes[(i + k) % 3].url, { ...kind, ...opts });
      assert.match(err.message, reason, `${JSON.stringify(opts)} over ${JSON.stringify(kind)}`);
    }
  }
  // Nobody refused was counted, anywhere, at any moment.
  await holds(
    async () => {
      assert.equal(present.last, 1, present.describe());
      for (const node of nodes) assert.equal((await node.presence()).users, 1, node.nodeId);
    },
    { forMs: 600, what: 'the count stays at the one client present' },
  );

  const full = await connect(nodes[1].url, { transports: ['polling'], auth: { rooms: ['r1', 'r2', 'r3'] }, label: 'full' });
  expectAck(await full.ack('join', 'r4'), 'r4', 1, 'the fourth room');
  const beyond = await full.ack('join', 'r5');
  expectRefusal(beyond, `a join beyond ${MAX_ROOMS} rooms`);
  assert.equal(beyond.error, `this connection is already in ${MAX_ROOMS} rooms, the most allowed`);
  expectAck(await full.ack('join', 'r1'), 'r1', 1, 'a room it is already in');
  for (const [name, why] of [
    ['', 'a room name must not be empty'],
    [42, 'a room name must be a string'],
    [{ members: true }, 'a room name must be a string'],
    ['a\nb', 'a room name must not contain control characters'],
  ]) {
    const refused = await full.ack('join', name);
    expectRefusal(refused, `join ${JSON.stringify(name)}`);
    assert.equal(refused.error, why, `join ${JSON.stringify(name)}`);
  }
  await apiShows(nodes, 'r5', 0);
  expectAck(await full.ack('leave', 'r4'), 'r4', 0, 'leave to make space');
  expectAck(await full.ack('join', 'r5'), 'r5', 1, 'the fifth room, now the fourth');
  await apiShows(nodes, 'r5', 1);
  await allReach([present, full], 2);
});
