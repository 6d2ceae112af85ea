// Shared helpers for rollcall's end-to-end tests.
//
// Every helper that starts something (a process, a client, a browser) registers how to undo it in
// the current scope: resources made inside a test are released after that test, resources made in a
// `before` hook after the file. Call `useE2E()` once at the top of each test file to install those
// hooks. Every process spawned here is also killed when the test process exits, however it exits
// (normal end, failure, SIGINT, SIGTERM, SIGHUP), and only those processes: each is killed by its PID.
//
// Nothing here sleeps to synchronise: waits are for a condition, with a deadline.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { after, beforeEach, afterEach } from 'node:test';
import { io } from 'socket.io-client';

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');
export const ROLLCALL_BIN = process.env.ROLLCALL_BIN || path.join(REPO_ROOT, 'target', 'debug', 'rollcall');
export const BUNDLE_DIR = path.join(E2E_DIR, 'node_modules', 'socket.io-client', 'dist');
export const ARTIFACTS_DIR = path.join(E2E_DIR, 'artifacts');
/** Log level handed to every node; set ROLLCALL_E2E_LOG_LEVEL=debug to see more on failure. */
export const NODE_LOG_LEVEL = process.env.ROLLCALL_E2E_LOG_LEVEL || 'warn';

const LOG_LIMIT = 256 * 1024; // bytes of output kept per process (the tail)

// ---------------------------------------------------------------------------------------------
// Scopes and the process registry
// ---------------------------------------------------------------------------------------------

/** @type {Array<{name: string, cleanups: Array<() => any>, procs: Set<Proc>}>} */
const scopes = [{ name: 'file', cleanups: [], procs: new Set() }];
/** Every process spawned by this test process that may still be alive. */
const liveProcs = new Set();

function currentScope() {
  return scopes[scopes.length - 1];
}

/** Registers `fn` to run when the current test (or, outside a test, the file) ends. */
export function defer(fn) {
  currentScope().cleanups.push(fn);
}

async function closeScope(scope, failed, label) {
  if (failed) dumpLogs(scope, label);
  // Undo in reverse order of creation: clients before nodes before Redis.
  const errors = [];
  while (scope.cleanups.length) {
    const fn = scope.cleanups.pop();
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length) process.stderr.write(`[e2e] ${errors.length} cleanup error(s) in ${label}: ${errors.map((e) => e.message).join('; ')}\n`);
}

function dumpLogs(scope, label) {
  const procs = [...scope.procs, ...(scope === scopes[0] ? [] : scopes[0].procs)];
  const out = [`\n===== [e2e] ${label} failed: output of ${procs.length} process(es) =====`];
  for (const p of procs) {
    out.push(`----- ${p.name} (pid ${p.pid}, cmd ${p.cmd}) ${p.exitInfo ? `exited ${JSON.stringify(p.exitInfo)}` : 'running'} -----`);
    out.push(p.logs() || '(no output)');
  }
  out.push(`===== [e2e] end of output for ${label} =====\n`);
  process.stderr.write(out.join('\n') + '\n');
}

/**
 * Installs the per-test and per-file hooks. Call once at the top level of each test file.
 */
export function useE2E() {
  let fileFailed = false;
  beforeEach((t) => {
    scopes.push({ name: t.name, cleanups: [], procs: new Set() });
  });
  afterEach(async (t) => {
    const scope = scopes.length > 1 ? scopes.pop() : null;
    if (!scope) return;
    const failed = t.passed === false;
    if (failed) fileFailed = true;
    await closeScope(scope, failed, `test "${t.name}"`);
  });
  after(async () => {
    // A failing `before` hook never reaches afterEach: the file scope shows its logs then.
    await closeScope(scopes[0], fileFailed && scopes[0].procs.size > 0, 'file');
  });
}

function killAllNow(signal) {
  for (const p of liveProcs) {
    try {
      process.kill(p.pid, signal);
    } catch {
      // already gone
    }
  }
}

process.on('exit', () => killAllNow('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    process.stderr.write(`[e2e] ${sig}: killing ${liveProcs.size} spawned process(es)\n`);
    killAllNow('SIGKILL');
    process.exit(128 + (os.constants.signals[sig] || 1));
  });
}

/**
 * @typedef {object} Proc
 * @property {string} name
 * @property {string} cmd
 * @property {number} pid
 * @property {import('node:child_process').ChildProcess} child
 * @property {Promise<{code: number|null, signal: string|null}>} exited
 * @property {{code: number|null, signal: string|null}|null} exitInfo
 * @property {() => string} logs
 * @property {(signal?: string) => boolean} kill
 * @property {(timeoutMs?: number) => Promise<{code: number|null, signal: string|null}>} stop
 */

/**
 * Spawns a tracked process: output captured (tail kept), killed on exit, stopped with the scope.
 * @returns {Proc}
 */
export function spawnTracked(name, cmd, args, { env = process.env, cwd = REPO_ROOT, stopTimeoutMs = 5000 } = {}) {
  const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  const append = (chunk) => {
    buf += chunk.toString('utf8');
    if (buf.length > LOG_LIMIT) buf = '...(truncated)...\n' + buf.slice(buf.length - LOG_LIMIT);
  };
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  /** @type {Proc} */
  const proc = {
    name,
    cmd: [cmd, ...args].join(' '),
    pid: child.pid,
    child,
    exitInfo: null,
    logs: () => buf,
    exited: null,
    kill: (signal = 'SIGTERM') => (proc.exitInfo ? false : child.kill(signal)),
    stop: async (timeoutMs = stopTimeoutMs) => {
      if (proc.exitInfo) return proc.exitInfo;
      child.kill('SIGTERM');
      const res = await withDeadline(proc.exited, timeoutMs, () => `${name} did not exit within ${timeoutMs} ms of SIGTERM`).catch(() => null);
      if (res) return res;
      child.kill('SIGKILL');
      return withDeadline(proc.exited, 5000, () => `${name} survived SIGKILL`);
    },
  };
  proc.exited = new Promise((resolve) => {
    child.on('error', (err) => {
      append(`[e2e] spawn error: ${err.message}\n`);
      proc.exitInfo = { code: null, signal: null, error: err.message };
      liveProcs.delete(proc);
      resolve(proc.exitInfo);
    });
    child.on('exit', (code, signal) => {
      proc.exitInfo = { code, signal };
      liveProcs.delete(proc);
      resolve(proc.exitInfo);
    });
  });
  if (child.pid) liveProcs.add(proc);
  const scope = currentScope();
  scope.procs.add(proc);
  scope.cleanups.push(() => proc.stop());
  return proc;
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/** Resolves with `promise`, or rejects with `message()` after `ms`. */
export function withDeadline(promise, ms, message) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(typeof message === 'function' ? message() : message)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const tick = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns without throwing (and does not return `false`); returns its value.
 * `fn` states the condition with asserts, so on timeout the last assertion error, which shows the
 * last observed state, is rethrown with how long was waited.
 */
export async function eventually(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const start = Date.now();
  let lastErr = null;
  let attempts = 0;
  const maxAttempts = Math.ceil(timeoutMs / Math.max(1, intervalMs)) + 100; // bounded in count too
  while (attempts++ < maxAttempts) {
    try {
      const v = await fn();
      if (v !== false) return v;
      lastErr = new Error(`${what} returned false`);
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() - start >= timeoutMs) break;
    await tick(intervalMs);
  }
  const err = new Error(`${what} did not hold within ${timeoutMs} ms (${attempts} checks); last observed: ${lastErr?.message}`);
  err.cause = lastErr;
  throw err;
}

/**
 * Asserts that `fn` keeps holding (does not throw) for a whole observation window. Used to show that
 * something does NOT happen (e.g. client events do not change the count), never to synchronise.
 */
export async function holds(fn, { forMs = 500, intervalMs = 50, what = 'condition' } = {}) {
  const start = Date.now();
  let checks = 0;
  const maxChecks = Math.ceil(forMs / Math.max(1, intervalMs)) + 100;
  while (checks++ < maxChecks) {
    try {
      await fn();
    } catch (err) {
      throw new Error(`${what} stopped holding after ${Date.now() - start} ms: ${err.message}`, { cause: err });
    }
    if (Date.now() - start >= forMs) return;
    await tick(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Ports, HTTP
// ---------------------------------------------------------------------------------------------

/** A TCP port that was free on 127.0.0.1 a moment ago (callers retry if it is taken meanwhile). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** fetch with a deadline; returns the Response. */
export async function httpGet(url, { timeoutMs = 3000, headers = {} } = {}) {
  return fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers, redirect: 'manual' });
}

/** GET a JSON document, asserting a 200. */
export async function getJson(url, opts) {
  const res = await httpGet(url, opts);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url} -> ${res.status}: ${text.slice(0, 200)}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`GET ${url}: not JSON: ${text.slice(0, 200)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/** Sends one command to Redis over RESP2 and returns the parsed reply. For checks, not for load. */
export function redisCommand(port, args, { timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`redis ${args[0]} on port ${port}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (err, val) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(val);
    };
    sock.on('error', (err) => finish(err));
    sock.on('connect', () => {
      const parts = [`*${args.length}\r\n`];
      for (const a of args) parts.push(`$${Buffer.byteLength(String(a))}\r\n${a}\r\n`);
      sock.write(parts.join(''));
    });
    sock.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      try {
        const parsed = parseResp(data, 0);
        if (parsed) finish(null, parsed.value instanceof Error ? parsed.value.message : parsed.value);
      } catch (err) {
        finish(err);
      }
    });
  });
}

// Returns {value, end} or null when more bytes are needed.
function parseResp(buf, pos) {
  const nl = buf.indexOf('\r\n', pos);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, nl);
  const next = nl + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, p);
        if (!item) return null;
        items.push(item.value);
        p = item.end;
      }
      return { value: items, end: p };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

/**
 * Starts a process on a free port (or on `fixedPort`) and waits until `ready(proc, port)` resolves
 * with the handle to return. A port taken by someone else between freePort() and bind shows up as
 * an early exit saying "in use": only that is retried, on a fresh port, at most `attempts` times.
 */
async function onFreePort(spawn, ready, { fixedPort, attempts = 3 } = {}) {
  let lastErr;
  for (let attempt = 1; attempt <= (fixedPort ? 1 : attempts); attempt++) {
    let port = fixedPort || (await freePort());
    while (!fixedPort && port === 6379) port = await freePort();
    const proc = spawn(port);
    try {
      return await ready(proc, port);
    } catch (err) {
      lastErr = err;
      const diedEarly = !!proc.exitInfo;
      await proc.stop();
      if (!diedEarly || !/in use/i.test(proc.logs())) break;
    }
  }
  throw lastErr;
}

/**
 * Starts a throwaway redis-server on a free port on 127.0.0.1 (never 6379), without persistence.
 * @returns {Promise<{url: string, port: number, pid: number, proc: Proc, command: (args: string[]) => Promise<any>, stop: () => Promise<any>}>}
 */
export async function startRedis({ readyTimeoutMs = 10000 } = {}) {
  const spawn = (port) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rollcall-e2e-redis-'));
    defer(() => rmSync(dir, { recursive: true, force: true }));
    return spawnTracked(`redis-server:${port}`, 'redis-server', [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--daemonize', 'no',
      '--dir', dir,
      '--loglevel', 'warning',
    ]);
  };
  const ready = async (proc, port) => {
    await eventually(
      async () => {
        if (proc.exitInfo) return true; // stop polling: it died
        const pong = await redisCommand(port, ['PING'], { timeoutMs: 500 });
        if (pong !== 'PONG') throw new Error(`PING -> ${pong}`);
        return true;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 50, what: `redis-server on port ${port} answering PING` },
    );
    if (proc.exitInfo) throw new Error(`redis-server exited ${JSON.stringify(proc.exitInfo)}: ${proc.logs()}`);
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid: proc.pid,
      proc,
      command: (args) => redisCommand(port, args),
      stop: () => proc.stop(),
    };
  };
  return onFreePort(spawn, ready);
}

// ---------------------------------------------------------------------------------------------
// rollcall nodes
// ---------------------------------------------------------------------------------------------

let prefixCounter = 0;
/** A Redis key prefix no other test (or run) uses. */
export function uniquePrefix(tag = 't') {
  prefixCounter += 1;
  return `rc-e2e-${tag}-${process.pid}-${Date.now().toString(36)}-${prefixCounter}`;
}

function assertBinary() {
  if (!existsSync(ROLLCALL_BIN)) {
    throw new Error(`rollcall binary not found at ${ROLLCALL_BIN}: build it (cargo build) or set ROLLCALL_BIN`);
  }
}

/**
 * Spawns `rollcall serve` on a free port and waits until GET /readyz is 200.
 * `port` pins the port (a restarted node comes back where its clients reconnect); without it a
 * free port is picked, retried if another process takes it first.
 * @param {{redisUrl?: string, nodeId?: string, prefix?: string, port?: number, env?: Record<string,string>, readyTimeoutMs?: number}} opts
 */
export async function startNode({ redisUrl, nodeId, prefix, port: fixedPort, env = {}, readyTimeoutMs = 20000 } = {}) {
  assertBinary();
  // Start from a clean slate: no ROLLCALL_* setting leaks in from the developer's shell.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROLLCALL_')));
  const idFor = (port) => nodeId || `node-${port}`;
  const spawn = (port) => {
    const childEnv = {
      ...base,
      ROLLCALL_PORT: String(port),
      ROLLCALL_BIND: '127.0.0.1',
      ROLLCALL_NODE_ID: idFor(port),
      ROLLCALL_LOG_LEVEL: NODE_LOG_LEVEL,
      ROLLCALL_SHUTDOWN_GRACE_MS: '2000',
      ...(redisUrl ? { ROLLCALL_REDIS_URL: redisUrl, ROLLCALL_REDIS_PREFIX: prefix || uniquePrefix('node') } : {}),
      ...env,
    };
    return spawnTracked(`rollcall:${idFor(port)}`, ROLLCALL_BIN, ['serve'], { env: childEnv, stopTimeoutMs: 8000 });
  };
  const ready = async (proc, port) => {
    const id = idFor(port);
    const url = `http://127.0.0.1:${port}`;
    await eventually(
      async () => {
        if (proc.exitInfo) return true;
        const res = await httpGet(`${url}/readyz`, { timeoutMs: 1000 });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`/readyz -> ${res.status}`);
        return true;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 50, what: `node ${id} ready at ${url}/readyz` },
    );
    if (proc.exitInfo) {
      throw new Error(`node ${id} exited before ready ${JSON.stringify(proc.exitInfo)}:\n${proc.logs().slice(-4000)}`);
    }
    return {
      url,
      port,
      pid: proc.pid,
      nodeId: id,
      proc,
      presence: () => getJson(`${url}/api/presence`),
      stop: () => proc.stop(),
      kill: (signal = 'SIGKILL') => proc.kill(signal),
    };
  };
  return onFreePort(spawn, ready, { fixedPort });
}

/** Starts `n` nodes sharing one Redis and one fresh prefix. */
export async function startCluster(redis, n = 3, { tag = 'cluster', env = {} } = {}) {
  const prefix = uniquePrefix(tag);
  const nodes = await Promise.all(
    Array.from({ length: n }, (_, i) => startNode({ redisUrl: redis.url, prefix, nodeId: `${tag}-n${i + 1}`, env })),
  );
  return { prefix, nodes };
}

// ---------------------------------------------------------------------------------------------
// Socket.IO clients
// ---------------------------------------------------------------------------------------------

let clientCounter = 0;

/**
 * Wraps a socket.io-client socket and records every `refresh users` value it receives, and every
 * `room users` payload (`{room, users, connections}`) in arrival order.
 */
export class Client {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    /** @type {number[]} */ this.values = [];
    /** @type {number[]} */ this.times = [];
    /** @type {Array<{room: string, users: number, connections: number}>} */ this.roomEvents = [];
    this.createdAt = Date.now();
    this.connectedAt = null;
    this.closed = false;
    this._waiters = new Set();
    socket.on('connect', () => {
      this.connectedAt = Date.now();
    });
    socket.on('refresh users', (n) => {
      this.values.push(n);
      this.times.push(Date.now());
      for (const w of this._waiters) w();
    });
    socket.on('room users', (payload) => {
      this.roomEvents.push(payload);
      for (const w of this._waiters) w();
    });
  }

  /** The `room users` payloads of `room` received since `mark` (a `roomMark()`), oldest first. */
  roomValues(room, mark = 0) {
    return this.roomEvents.slice(mark).filter((p) => p?.room === room);
  }

  /** The latest `room users` payload of `room`, or undefined before the first. */
  roomLast(room) {
    const seen = this.roomValues(room);
    return seen[seen.length - 1];
  }

  /** A mark for `roomValues`: the number of `room users` payloads seen so far. */
  roomMark() {
    return this.roomEvents.length;
  }

  /** Resolves when the latest `room users` of `room` is exactly `{room, users: n, connections: n}`. */
  waitRoom(room, n, timeoutMs = 5000) {
    const exact = () => {
      const last = this.roomLast(room);
      return last !== undefined && isDeepStrictEqual(last, { room, users: n, connections: n });
    };
    return this._until(exact, timeoutMs, `${this.label}: expected room users ${room} = ${n} (last ${JSON.stringify(this.roomLast(room))})`);
  }

  /** Emits `event` with `data` and the ack callback; resolves with the ack's one argument. */
  ack(event, data, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      this.socket.timeout(timeoutMs).emit(event, data, (err, reply) => {
        if (err) reject(new Error(`${this.label}: no ack to ${event} ${JSON.stringify(data)} within ${timeoutMs} ms`));
        else resolve(reply);
      });
    });
  }

  /** The latest `refresh users` value, or undefined before the first. */
  get last() {
    return this.values.length ? this.values[this.values.length - 1] : undefined;
  }

  get first() {
    return this.values[0];
  }

  /** ms from the `connect` event to the first `refresh users` (negative: it came first). */
  get firstDelayMs() {
    if (!this.times.length || this.connectedAt == null) return undefined;
    return this.times[0] - this.connectedAt;
  }

  get transport() {
    return this.socket.io?.engine?.transport?.name;
  }

  describe() {
    const v = this.values.length > 12 ? [...this.values.slice(0, 4), '...', ...this.values.slice(-8)] : this.values;
    return `${this.label}: last=${this.last} (${this.values.length} values: ${v.join(',')})`;
  }

  /** A mark for `valuesSince`: the number of values seen so far. */
  mark() {
    return this.values.length;
  }

  valuesSince(mark) {
    return this.values.slice(mark);
  }

  _until(pred, timeoutMs, what) {
    if (pred()) return Promise.resolve(this.last);
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        done();
        resolve(this.last);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what} within ${timeoutMs} ms; ${this.describe()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this._waiters.delete(check);
      };
      this._waiters.add(check);
    });
  }

  /** Resolves when the latest value is `n`. */
  waitFor(n, timeoutMs = 5000) {
    return this._until(() => this.last === n, timeoutMs, `${this.label}: expected refresh users = ${n}`);
  }

  /** Resolves with the first value received. */
  async firstValue(timeoutMs = 1000) {
    await this._until(() => this.values.length > 0, timeoutMs, `${this.label}: no refresh users`);
    return this.values[0];
  }

  /** Disconnects; resolves once the client has closed its side. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    const s = this.socket;
    if (s.connected) {
      const gone = new Promise((r) => s.once('disconnect', r));
      s.disconnect();
      await withDeadline(gone, 2000, `${this.label}: disconnect`).catch(() => {});
    } else {
      s.disconnect();
    }
    s.io?.engine?.close?.();
  }
}

/**
 * Connects a Socket.IO client (reconnection off, own Manager) and resolves once connected.
 * Options other than `timeoutMs` and `label` go to socket.io-client's `io()`.
 * @returns {Promise<Client>}
 */
export async function connect(url, opts = {}) {
  const { timeoutMs = 5000, label, ...ioOpts } = opts;
  clientCounter += 1;
  const socket = io(url, { reconnection: false, forceNew: true, timeout: timeoutMs, ...ioOpts });
  const client = new Client(socket, label || `client#${clientCounter}@${url.replace(/^https?:\/\//, '')}`);
  client.url = url;
  defer(() => client.close());
  const ok = new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (err) => reject(new Error(`${client.label}: connect_error: ${err.message}${err.description ? ` (${err.description})` : ''}`)));
  });
  await withDeadline(ok, timeoutMs + 1000, `${client.label}: not connected within ${timeoutMs + 1000} ms`);
  return client;
}

/**
 * Opens a Socket.IO client that the server must refuse at the handshake; resolves with the
 * `connect_error` (its `message` is the server's reason). Options go to socket.io-client's `io()`.
 */
export async function connectRefused(url, opts = {}) {
  const { timeoutMs = 5000, ...ioOpts } = opts;
  const socket = io(url, { reconnection: false, forceNew: true, timeout: timeoutMs, ...ioOpts });
  defer(() => socket.disconnect());
  const refused = new Promise((resolve, reject) => {
    socket.once('connect_error', resolve);
    socket.once('connect', () => reject(new Error(`${url}: connected with ${JSON.stringify(ioOpts)}, expected a refusal`)));
  });
  return withDeadline(refused, timeoutMs + 1000, `${url}: neither connected nor refused within ${timeoutMs + 1000} ms`);
}

/**
 * Connects `count` clients spread round-robin over `urls`; `transportFor(i)` picks each client's
 * transports. Runs at most `concurrency` connects at once (Infinity: all at once).
 */
export async function connectMany(urls, count, { transportFor = () => ['websocket'], concurrency = 1, extra = {}, label = 'c' } = {}) {
  const clients = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const url = urls[i % urls.length];
      clients[i] = await connect(url, { transports: transportFor(i), label: `${label}${i}@${url.split(':').pop()}`, ...extra });
      clients[i].index = i;
    }
  };
  const workers = Math.min(count, Number.isFinite(concurrency) ? concurrency : count);
  await Promise.all(Array.from({ length: workers }, worker));
  return clients;
}

/** Histogram of clients' latest values, e.g. {"60": 58, "59": 2}: a compact picture for assertions. */
export function histogram(clients) {
  const h = {};
  for (const c of clients) {
    const k = String(c.last);
    h[k] = (h[k] || 0) + 1;
  }
  return h;
}

/** Waits until every client's latest value is `n`; the failure shows who is where. */
export async function allReach(clients, n, { timeoutMs = 10000 } = {}) {
  await eventually(
    () => {
      const behind = clients.filter((c) => c.last !== n);
      if (behind.length) {
        throw new Error(
          `${behind.length}/${clients.length} clients not at ${n}; latest values ${JSON.stringify(histogram(clients))}; e.g. ${behind
            .slice(0, 3)
            .map((c) => c.describe())
            .join(' | ')}`,
        );
      }
    },
    { timeoutMs, intervalMs: 25, what: `all ${clients.length} clients at ${n}` },
  );
}

/**
 * Asserts a client's values since `mark` move only in `direction` ('up' or 'down'): during a phase
 * with only joins (or only leaves) a client must never be shown a count it has already passed.
 */
export function assertMonotonic(client, mark, direction) {
  const seq = client.valuesSince(mark);
  for (let i = 1; i < seq.length; i++) {
    const bad = direction === 'up' ? seq[i] < seq[i - 1] : seq[i] > seq[i - 1];
    if (bad) {
      throw new Error(`${client.label}: count went ${direction === 'up' ? 'down' : 'up'} (${seq[i - 1]} -> ${seq[i]}) during a ${direction === 'up' ? 'joins' : 'leaves'}-only phase: ${seq.join(',')}`);
    }
  }
}

/**
 * Asserts a client's `room users` of `room` since `mark` (a `roomMark()`) move only in `direction`
 * ('up' or 'down'), connections and users alike: in a joins-only (or leaves-only) window a member
 * must never be shown an older count after a newer one.
 */
export function assertRoomMonotonic(client, room, mark, direction) {
  const seq = client.roomValues(room, mark);
  for (let i = 1; i < seq.length; i++) {
    for (const key of ['connections', 'users']) {
      const bad = direction === 'up' ? seq[i][key] < seq[i - 1][key] : seq[i][key] > seq[i - 1][key];
      if (bad) {
        throw new Error(`${client.label}: room ${room} ${key} went ${direction === 'up' ? 'down' : 'up'} (${seq[i - 1][key]} -> ${seq[i][key]}) in a ${direction === 'up' ? 'joins' : 'leaves'}-only window: ${seq.map((p) => p[key]).join(',')}`);
      }
    }
  }
}

/** Waits until every node's /api/presence reports `users` and, if given, each node's `local`. */
export async function presenceReaches(nodes, users, { locals, mode, timeoutMs = 10000 } = {}) {
  return eventually(
    async () => {
      const seen = await Promise.all(nodes.map((n) => n.presence()));
      seen.forEach((p, i) => {
        const want = { users, node: nodes[i].nodeId, degraded: false };
        if (locals) want.local = locals[i];
        if (mode) want.mode = mode;
        const got = Object.fromEntries(Object.keys(want).map((k) => [k, p[k]]));
        assert.deepStrictEqual(got, want, `node ${nodes[i].nodeId}: /api/presence ${JSON.stringify(p)}, want ${JSON.stringify(want)}`);
      });
      return seen;
    },
    { timeoutMs, what: `/api/presence users=${users} on ${nodes.length} node(s)` },
  );
}

/** Closes clients (all at once) and resolves when each has closed its side. */
export async function closeAll(clients) {
  await Promise.all(clients.map((c) => c.close()));
}

/** Makes tests/e2e/artifacts and returns the path of `name` inside it. */
export function artifactPath(name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return path.join(ARTIFACTS_DIR, name);
}

/** Debian's Chromium (never a downloaded browser) with the flags this closed network needs. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
