/* rollcall widget: "12 online · 3 on this page" on any site, from one tag:
     <script src="http://socket-host:3000/widget.js" data-room="page" defer></script>
   Options (data-room, data-target, data-format), styling and the one global, window.rollcallWidget:
   README, "Add a live counter to any site in one line". Served by every rollcall node. */
(() => {
  'use strict';
  const script = document.currentScript;
  if (!script || !script.src) {
    console.warn('rollcall widget: load /widget.js with a classic <script src> (not a module or inline copy)');
    return;
  }
  const node = new URL(script.src).origin;
  const DASH = '\u2013';
  const MAX_ROOM_BYTES = 256; // the node refuses longer room names
  const FORMATS = { none: '{online} online', page: '{online} online · {room} on this page', named: '{online} online · {room} in {name}' };
  // Shared by every widget tag on the page: the widgets, and (not enumerable) the bundle loader.
  const existing = window.rollcallWidget;
  const api = Array.isArray(existing?.widgets) ? existing : (window.rollcallWidget = { widgets: [] });
  const LOADER = Symbol.for('rollcall-widget.loader');
  const loader = api[LOADER] || Object.defineProperty(api, LOADER, { value: { last: Promise.resolve(), byNode: new Map() } })[LOADER];

  /** The socket.io-client `io` of `origin`'s bundle: loaded once per page, one bundle at a time. */
  function client(origin) {
    let io = loader.byNode.get(origin);
    if (!io) {
      io = loader.last.catch(() => {}).then(() => loadBundle(`${origin}/socket.io/socket.io.min.js`));
      io.catch(() => loader.byNode.delete(origin)); // retried by the next call
      loader.last = io;
      loader.byNode.set(origin, io);
    }
    return io;
  }

  /**
   * Runs the bundle without leaving its global `io` behind. While it loads, `window.io` is an
   * accessor: the bundle's assignment (made while our tag is `document.currentScript`) is kept for
   * us, any other script's is the page's own `io`, which is put back afterwards.
   */
  function loadBundle(src) {
    return new Promise((resolve, reject) => {
      const tag = document.createElement('script');
      tag.src = src;
      const before = Object.getOwnPropertyDescriptor(window, 'io');
      const trap = !before || (before.configurable && 'value' in before);
      let page = before ? window.io : undefined;
      let ours;
      if (trap) {
        Object.defineProperty(window, 'io', {
          configurable: true,
          get: () => page,
          set: (value) => (document.currentScript === tag ? (ours = value) : (page = value)),
        });
      }
      const restore = () => {
        if (trap) {
          delete window.io;
          if (before) Object.defineProperty(window, 'io', { ...before, value: page });
          else if (page !== undefined) window.io = page;
        } else {
          ours = window.io; // a global `var io` cannot be trapped: take the value, put the page's back
          window.io = page;
        }
        tag.remove();
      };
      tag.onload = () => {
        restore();
        if (typeof ours === 'function') return resolve(ours);
        const error = new Error(`${src} defined no io (is there an AMD loader such as RequireJS on the page?)`);
        reject(Object.assign(error, { final: true })); // loading it again would not help
      };
      tag.onerror = () => {
        restore();
        reject(new Error(`cannot load ${src}`));
      };
      document.head.append(tag);
    });
  }

  /** The stylesheet, once per page and node; resolves when it applies or failed (then a later call retries). */
  function stylesheet() {
    const href = `${node}/widget.css`;
    const found = [...document.querySelectorAll('link[rel="stylesheet"]')].find((link) => link.href === href);
    if (found) return Promise.resolve();
    return new Promise((resolve) => {
      const link = document.createElement('link');
      link.rel = 'stylesheet';
      link.href = href;
      link.onload = resolve;
      link.onerror = () => resolve(link.remove());
      document.head.append(link);
    });
  }

  /** The room to join: `page` = this page's path; names are cut to what the node accepts. */
  function roomName(value) {
    const name = value === 'page' ? location.pathname : value || '';
    const encoder = new TextEncoder();
    if (encoder.encode(name).length <= MAX_ROOM_BYTES) return name;
    let cut = '';
    for (const char of name) {
      if (encoder.encode(cut + char).length > MAX_ROOM_BYTES) break;
      cut += char;
    }
    return cut;
  }

  /** Fills `element` with `format`: numbers go into spans of their own, the rest is text. */
  function render(element, format, room) {
    const numbers = { online: [], room: [] };
    element.replaceChildren();
    for (const part of format.split(/(\{online\}|\{room\}|\{name\})/)) {
      const field = part === '{online}' ? 'online' : part === '{room}' ? 'room' : null;
      if (part === '{name}') {
        element.append(room); // a Text node: a room name is never HTML
      } else if (field) {
        const span = document.createElement('span');
        span.className = 'rollcall-number';
        span.textContent = DASH;
        numbers[field].push(span);
        element.append(span);
      } else if (part) {
        element.append(part);
      }
    }
    return numbers;
  }

  /** Numbers as the page's language writes them (`<html lang>`). */
  function numberFormat() {
    try {
      return new Intl.NumberFormat(document.documentElement.lang || undefined);
    } catch {
      return new Intl.NumberFormat();
    }
  }

  /** Where to render: `data-target`'s element, else a floating badge. */
  function container(selector) {
    if (selector) {
      try {
        const found = document.querySelector(selector);
        if (found) return { element: found, badge: false };
        console.warn(`rollcall widget: no element matches data-target ${JSON.stringify(selector)}; showing a badge`);
      } catch {
        console.warn(`rollcall widget: data-target ${JSON.stringify(selector)} is not a CSS selector; showing a badge`);
      }
    }
    const badge = document.createElement('div');
    badge.className = 'rollcall-badge';
    return { element: badge, badge: true };
  }

  /** Renders this tag's widget and connects it. */
  function mount() {
    const options = script.dataset;
    const room = roomName(options.room);
    const format = options.format || FORMATS[!room ? 'none' : options.room === 'page' ? 'page' : 'named'];
    const { element, badge } = container(options.target);
    element.classList.add('rollcall-widget');
    element.setAttribute('role', 'status');
    element.setAttribute('aria-live', 'polite');
    const numbers = render(element, format, room);
    const digits = numberFormat();
    let socket = null;
    let retry = null;
    let stopped = false;

    const widget = { node, room: room || null, online: null, inRoom: null, state: 'connecting', element, stop };
    api.widgets.push(widget);

    function show(state) {
      widget.state = state;
      element.setAttribute('data-rollcall', state);
      const text = (n) => (n === null ? DASH : digits.format(n));
      for (const span of numbers.online) span.textContent = text(widget.online);
      for (const span of numbers.room) span.textContent = text(widget.inRoom);
    }

    function live() {
      const complete = widget.online !== null && (!room || widget.inRoom !== null);
      show(complete ? 'live' : 'connecting');
    }

    function offline() {
      widget.online = widget.inRoom = null;
      show('offline');
    }

    function connect(io) {
      if (stopped) return;
      stylesheet(); // again, in case the node was unreachable when the page loaded
      socket = io(node, { auth: room ? { rooms: [room] } : {}, withCredentials: false, transports: ['websocket', 'polling'], tryAllTransports: true });
      socket.on('refresh users', (users) => {
        widget.online = users;
        live();
      });
      socket.on('room users', (count) => {
        if (count && count.room === room) {
          widget.inRoom = count.users;
          live();
        }
      });
      socket.on('disconnect', offline);
      socket.on('connect_error', (error) => {
        offline();
        // Only a refusal by the node (a bad room name...) stops the client's own reconnects.
        if (!socket.active) console.warn(`rollcall widget: ${node} refused the connection: ${error.message}`);
      });
    }

    function start(delay) {
      client(node).then(connect, (error) => {
        offline();
        if (error.final) return console.warn(`rollcall widget: ${error.message}`);
        console.warn(`rollcall widget: ${error.message}; retrying in ${delay / 1000} s`);
        retry = setTimeout(() => start(Math.min(delay * 2, 60000)), delay);
      });
    }

    function stop() {
      stopped = true;
      clearTimeout(retry);
      if (socket) socket.disconnect();
      if (badge) element.remove();
      else element.replaceChildren();
      const index = api.widgets.indexOf(widget);
      if (index >= 0) api.widgets.splice(index, 1);
    }

    show('connecting');
    if (badge) stylesheet().then(() => stopped || document.body.append(element));
    else stylesheet();
    start(2000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mount, { once: true });
  else mount();
})();
