/*
 * hub.js: the browser client of the notification hub.
 *
 * A classic script (no modules, no build step) that defines one global, Hub.
 * It speaks the device protocol of docs/protocol.md ("## Devices") over a
 * WebSocket, or over long-polling when WebSockets do not get through, or
 * over Server-Sent Events when asked to. docs/client.md is the user's guide.
 *
 *   const hub = new Hub({ticket: async () => (await fetch('/my/ticket')).text()});
 *   hub.onMessage(async (msg) => { show(msg.data); });
 *   hub.on('state', (s) => console.log(s.state, s.transport));
 *   hub.connect();
 *
 * Guarantees, in short: messages reach the handler in seq order, one at a
 * time, each seq at most once per Hub (duplicates that a reconnect brings are
 * dropped), and a message is acknowledged only after the handler's promise
 * resolved. The last processed seq is kept in localStorage, so a reload
 * resumes where the page left off.
 */
(function (global) {
  'use strict';

  // The script's own origin, read while the script runs: the default hub URL.
  var scriptOrigin = (function () {
    try {
      var s = document.currentScript;
      if (s && s.src) return new URL(s.src, location.href).origin;
    } catch (e) { /* not in a document */ }
    try { return location.origin; } catch (e) { return ''; }
  })();

  var TRANSPORTS = ['websocket', 'poll', 'sse'];

  // Close codes (WebSocket) and error codes (poll, SSE) after which
  // reconnecting cannot help: the user or the device is gone, or the client
  // is broken. Everything else reconnects with backoff.
  var FATAL_CODES = { 4400: 'protocol_error', 4403: 'user_revoked', 4404: 'device_deleted', 4413: 'quota_exceeded', 1009: 'frame_too_large' };
  var FATAL_REASONS = { protocol_error: 1, user_revoked: 1, device_deleted: 1, quota_exceeded: 1, frame_too_large: 1, bad_request: 1 };

  var DEFAULTS = {
    url: '',                         // the hub's base URL; '' means the origin hub.js came from
    device: '',                      // '' means one generated once and kept in localStorage
    ticket: null,                    // async () => string: REQUIRED, called before every connect
    transports: ['websocket', 'poll'], // tried in this order; 'sse' may be added
    storageKey: 'hub',               // prefix of the localStorage keys
    fallbackAfter: 2,                // failures in a row before a welcome that move to the next transport
    retryFirstAfter: 10 * 60 * 1000, // ms on a fallback transport before the first one is tried again
    backoffBase: 500,                // ms: first reconnect delay bound; doubles per failure...
    backoffMax: 30000,               // ...up to this; the delay is random in [0, bound) (full jitter)
    pollWait: 25,                    // seconds the hub may hold a long-poll
    ackEvery: 64                     // send an ack at least every this many messages of a burst
  };

  function Hub(options) {
    if (!(this instanceof Hub)) throw new TypeError('use new Hub(options)');
    var o = Object.assign({}, DEFAULTS);
    // An option given as undefined or null keeps its default.
    Object.keys(options || {}).forEach(function (k) { if (options[k] != null) o[k] = options[k]; });
    if (typeof o.ticket !== 'function') throw new TypeError('Hub: options.ticket must be a function returning a ticket');
    o.transports = (o.transports || []).filter(function (t) { return TRANSPORTS.indexOf(t) >= 0; });
    if (!o.transports.length) throw new TypeError('Hub: options.transports names no known transport');
    this.url = String(o.url || scriptOrigin).replace(/\/+$/, '');
    this.options = o;
    this.device = o.device || loadDevice(o.storageKey);
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(this.device)) throw new TypeError('Hub: bad device id ' + JSON.stringify(this.device));
    this._seqKey = o.storageKey + ':seq:' + this.device;
    this.lastSeq = loadNumber(this._seqKey); // highest seq the handler finished
    this.state = 'closed';
    this.transport = null;
    this.duplicates = 0; // messages dropped because their seq was handled already

    this._listeners = {};
    this._handler = null;
    this._running = false;   // connect() was called and close() was not
    this._conn = null;       // the current connection attempt or session
    this._gen = 0;           // bumps on every new connection: stale callbacks check it
    this._failures = 0;      // failures in a row since the last welcome (for backoff)
    this._transportIndex = 0;
    this._transportFailures = 0; // failures of the current transport before a welcome
    this._fellBackAt = 0;
    this._timer = null;
    this._queue = [];        // messages received, not yet handled
    this._busy = false;      // a handler runs
    this._idle = [];         // callbacks for when the queue is handled
    this._helloAck = 0;      // the ack the current session's hello carried
  }

  // ---- public API ----

  // onMessage sets the handler. It gets each message object ({seq, id, data,
  // mailbox, topic, urgency, ts, expires_at}) once, in seq order, and the
  // next one only after its promise resolved. If it throws or rejects, the
  // message is not acknowledged: the connection is dropped and the message
  // comes again after the reconnect.
  Hub.prototype.onMessage = function (fn) {
    this._handler = fn;
    this._pump();
    return this;
  };

  // on subscribes to an event: 'state' ({state, transport, code, reason}),
  // 'welcome' ({transport, from, last_seq}), 'error' ({code, message}),
  // 'restored' ({}: the hub's state was restored from a backup; it reconnects).
  // It returns a function that unsubscribes.
  Hub.prototype.on = function (event, fn) {
    var l = this._listeners[event] || (this._listeners[event] = []);
    l.push(fn);
    var self = this;
    return function () { self._listeners[event] = (self._listeners[event] || []).filter(function (f) { return f !== fn; }); };
  };

  // connect starts connecting (and keeps reconnecting) until close().
  Hub.prototype.connect = function () {
    if (this._running) return this;
    this._running = true;
    this._failures = 0;
    this._setState('connecting');
    this._open();
    return this;
  };

  // close ends the session and stops reconnecting. Messages not yet handled
  // are dropped here and come again on the next connect.
  Hub.prototype.close = function () {
    this._running = false;
    clearTimeout(this._timer);
    this._queue = [];
    this._drop(1000, 'closed');
    this._setState('closed');
    return this;
  };

  // reset forgets the stored cursor (and with it the device's place in the
  // stream as far as this browser knows). Use it when another user signs in
  // with the same storageKey; the hub's own cursor still decides what comes.
  Hub.prototype.reset = function () {
    this.lastSeq = 0;
    try { localStorage.removeItem(this._seqKey); } catch (e) { /* no storage */ }
  };

  // ---- events ----

  Hub.prototype._emit = function (event, arg) {
    (this._listeners[event] || []).slice().forEach(function (fn) {
      try { fn(arg); } catch (e) { setTimeout(function () { throw e; }); }
    });
  };

  Hub.prototype._setState = function (state, extra) {
    this.state = state;
    this._emit('state', Object.assign({ state: state, transport: this.transport }, extra || {}));
  };

  // ---- connecting and reconnecting ----

  // _open gets a ticket and opens a session over the current transport.
  Hub.prototype._open = function () {
    var self = this;
    var gen = ++this._gen;
    var o = this.options;
    // Back on a fallback transport long enough: try the first one again.
    if (this._transportIndex > 0 && Date.now() - this._fellBackAt > o.retryFirstAfter) {
      this._transportIndex = 0;
      this._transportFailures = 0;
    }
    // A browser without the API cannot use the transport at all: move on
    // at once, without spending a ticket on it.
    while (this._transportIndex < o.transports.length - 1 && !supported(o.transports[this._transportIndex])) {
      this._transportIndex++;
      this._fellBackAt = Date.now();
    }
    this.transport = o.transports[this._transportIndex];
    Promise.resolve().then(function () { return o.ticket(); }).then(function (ticket) {
      if (gen !== self._gen || !self._running) return;
      if (typeof ticket !== 'string' || !ticket) throw new Error('options.ticket gave no ticket');
      var hello = { ticket: ticket, device: self.device };
      if (self.lastSeq > 0) hello.ack = self.lastSeq;
      self._helloAck = self.lastSeq;
      var open = { websocket: openWebSocket, poll: openPoll, sse: openSSE }[self.transport];
      self._conn = open(self, gen, hello);
    }).catch(function (err) {
      if (gen !== self._gen || !self._running) return;
      // The ticket could not be had (the backend or the hub is down): not
      // the transport's fault, so no fallback, just backoff.
      self._emit('error', { code: 'ticket_failed', message: String(err && err.message || err) });
      self._retry(false, 'ticket_failed');
    });
  };

  // _ended is called by a transport when its session or attempt is over.
  // welcomed says whether a welcome came (the transport works); code is a
  // WebSocket close code or 0, reason the protocol's reason name if known.
  Hub.prototype._ended = function (gen, welcomed, code, reason) {
    if (gen !== this._gen) return;
    this._conn = null;
    this._queue = []; // unhandled messages come again in the next session
    if (!this._running) return;
    reason = reason || FATAL_CODES[code] || '';
    if (code === 4409 || reason === 'restored') {
      // The hub's state was restored from a backup. A restore never issues
      // a seq again, so our cursor stays good: reconnect and resume as
      // after any other end (a welcome below our cursor is handled there).
      reason = 'restored';
      this._emit('restored', {});
    }
    if (FATAL_CODES[code] || FATAL_REASONS[reason]) {
      this._running = false;
      this._setState('closed', { code: code, reason: reason });
      return;
    }
    // A transport that cannot even get to a welcome is blocked (a proxy, a
    // firewall, no WebSocket in this browser). A refused ticket or a busy
    // node says the transport itself works.
    var transportFault = !welcomed && !reason && !(code >= 4000 && code < 5000);
    this._retry(transportFault, reason, code);
  };

  Hub.prototype._retry = function (transportFault, reason, code) {
    var self = this, o = this.options;
    if (transportFault) {
      this._transportFailures++;
      if (this._transportFailures >= o.fallbackAfter && this._transportIndex < o.transports.length - 1) {
        this._transportIndex++;
        this._transportFailures = 0;
        this._fellBackAt = Date.now();
        this._failures = 0; // the next transport starts fresh, at once
        this.transport = o.transports[this._transportIndex];
        this._setState('reconnecting', { reason: 'fallback' });
        this._open();
        return;
      }
    }
    // Full jitter: a delay random in [0, min(max, base * 2^failures)).
    var bound = Math.min(o.backoffMax, o.backoffBase * Math.pow(2, this._failures));
    this._failures++;
    var delay = Math.floor(Math.random() * bound);
    this._setState('reconnecting', { code: code || 0, reason: reason || '', delay: delay });
    clearTimeout(this._timer);
    this._timer = setTimeout(function () { if (self._running) self._open(); }, delay);
  };

  // _welcome is called by a transport when its session opened.
  Hub.prototype._welcome = function (gen, w) {
    if (gen !== this._gen) return;
    this._failures = 0;
    this._transportFailures = 0;
    // The session starts after w.from. Below the ack our hello carried means
    // the hub does not know our cursor's seqs (a backup restored into a new
    // cluster, which cannot know what the lost one issued; a restore into a
    // running cluster never issues a seq again) and the seqs after `from`
    // are new messages to it: trust the hub. Above our cursor means another
    // client with this device id got further: the hub holds nothing before
    // it. (Between the two, a handler finished while the hello was on its
    // way: keep our own cursor.)
    if (typeof w.from === 'number' && (w.from < this._helloAck || w.from > this.lastSeq)) this._saveSeq(w.from);
    this._sessionMax = this.lastSeq;   // highest seq this session delivered
    this._sessionAcked = this.lastSeq; // highest seq acked in this session
    this._sinceAck = 0;
    this._setState('open');
    this._emit('welcome', { transport: this.transport, from: w.from, last_seq: w.last_seq });
  };

  // _receive is called by a transport with each message, in the order sent.
  Hub.prototype._receive = function (gen, m) {
    if (gen !== this._gen || !m || typeof m.seq !== 'number') return;
    if (m.seq > this._sessionMax) this._sessionMax = m.seq;
    var tail = this._queue.length ? this._queue[this._queue.length - 1].seq : this.lastSeq;
    if (m.seq <= tail) { // a duplicate, or one we already queued
      this.duplicates++;
      if (!this._busy && !this._queue.length) this._ack(); // it may be handled but not acked here
      return;
    }
    this._queue.push(m);
    this._pump();
  };

  // _drop closes the current connection, if any, without reconnecting from
  // its callbacks.
  Hub.prototype._drop = function (code, reason) {
    var c = this._conn;
    this._conn = null;
    this._gen++;
    if (c) c.close(code, reason);
  };

  // ---- handling and acking ----

  // _pump runs the handler over the queue, one message at a time.
  Hub.prototype._pump = function () {
    if (this._busy || !this._handler) return;
    var self = this;
    var m = this._queue.shift();
    if (!m) {
      var idle = this._idle;
      this._idle = [];
      idle.forEach(function (fn) { fn(); });
      return;
    }
    if (m.seq <= this.lastSeq) { this.duplicates++; this._pump(); return; } // handled meanwhile
    var gen = this._gen;
    this._busy = true;
    Promise.resolve().then(function () { return self._handler(m); }).then(function () {
      self._busy = false;
      if (m.seq > self.lastSeq) self._saveSeq(m.seq);
      if (gen === self._gen) {
        self._sinceAck++;
        // Ack when the burst is handled, or every ackEvery messages of a
        // long one: cumulative, so one ack covers the burst.
        if (!self._queue.length || self._sinceAck >= self.options.ackEvery) self._ack();
      }
      self._pump();
    }, function (err) {
      self._busy = false;
      self._emit('error', { code: 'handler_failed', message: String(err && err.message || err), seq: m.seq });
      if (gen === self._gen && self._running) {
        // Not acked: reconnect, and the hub sends it again.
        self._drop(1000, 'handler_failed');
        self._ended(self._gen, true, 0, 'handler_failed');
      }
    });
  };

  // _ack tells the current session what was handled: never above what this
  // session delivered (the hub refuses that), never the same twice.
  Hub.prototype._ack = function () {
    var seq = Math.min(this.lastSeq, this._sessionMax);
    if (!this._conn || seq <= this._sessionAcked) return;
    this._sessionAcked = seq;
    this._sinceAck = 0;
    this._conn.ack(seq);
  };

  // _whenIdle calls fn once every queued message is handled.
  Hub.prototype._whenIdle = function (fn) {
    if (!this._handler || (!this._busy && !this._queue.length)) { fn(); return; }
    this._idle.push(fn);
  };

  Hub.prototype._saveSeq = function (seq) {
    this.lastSeq = seq;
    try { localStorage.setItem(this._seqKey, String(seq)); } catch (e) { /* private mode: memory only */ }
  };

  // ---- WebSocket ----

  function openWebSocket(hub, gen, hello) {
    var ws, welcomed = false, ended = false, watchdog = null, pingMs = 0;
    var end = function (code, reason) {
      if (ended) return;
      ended = true;
      clearTimeout(watchdog);
      hub._ended(gen, welcomed, code, reason);
    };
    // Nothing heard for two ping intervals (and a bit): the connection is
    // dead without having said so; drop it and reconnect.
    var heard = function () {
      if (!pingMs) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(function () {
        try { ws.close(4000, 'ping_timeout'); } catch (e) { /* closing anyway */ }
        end(0, '');
      }, 2 * pingMs + 5000);
    };
    try {
      if (typeof WebSocket !== 'function') throw new Error('no WebSocket in this browser');
      ws = new WebSocket(hub.url.replace(/^http/, 'ws') + '/v1/ws');
    } catch (err) {
      // Counts as a failure before a welcome: after fallbackAfter of them
      // the next transport is used.
      setTimeout(function () { end(0, ''); });
      return { ack: function () {}, close: function () { ended = true; } };
    }
    ws.onopen = function () {
      ws.send(JSON.stringify(Object.assign({ type: 'hello' }, hello)));
    };
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      heard();
      switch (f.type) {
        case 'welcome':
          welcomed = true;
          pingMs = (f.ping_interval || 25) * 1000;
          heard();
          hub._welcome(gen, f);
          break;
        case 'msg':
          hub._receive(gen, f);
          break;
        case 'ping':
          ws.send('{"type":"pong"}');
          break;
        case 'error': // a refused ack: the session goes on
          hub._emit('error', { code: f.code, message: f.message });
          break;
      }
    };
    ws.onclose = function (ev) {
      // 1006 (no close frame: the network, or the socket never opened) has
      // no reason; the hub's own codes carry the reason's name.
      end(ev.code, ev.code === 1006 ? '' : ev.reason);
    };
    ws.onerror = function () { /* onclose follows */ };
    return {
      ack: function (seq) {
        if (ws.readyState === 1) ws.send(JSON.stringify({ type: 'ack', seq: seq }));
      },
      close: function (code, reason) {
        ended = true;
        clearTimeout(watchdog);
        try { ws.close(code || 1000, reason || ''); } catch (e) { ws.close(); }
      }
    };
  }

  // ---- long-polling ----

  // A long-poll session is a chain of requests with rids going up by one.
  // A request that fails on the network is sent again unchanged (same rid):
  // the hub answers it from its copy, so a lost answer is recovered.
  function openPoll(hub, gen, hello) {
    var closed = false, welcomed = false, sid = null, abort = null, retryTimer = null, failures = 0, pendingAck = 0;
    var rid = 1 + Math.floor(Math.random() * 1e9);
    var url = hub.url + '/v1/poll';
    var end = function (code, reason) {
      if (closed) return;
      closed = true;
      hub._ended(gen, welcomed, code, reason);
    };
    var send = function (body) {
      if (closed) return;
      var ctl = typeof AbortController === 'function' ? new AbortController() : null;
      abort = ctl;
      // Failsafe for a connection that died silently: the hub answers a held
      // request within `wait` seconds.
      var timer = setTimeout(function () { if (ctl) ctl.abort(); }, ((body.wait || 0) + 15) * 1000);
      fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        cache: 'no-store',
        signal: ctl ? ctl.signal : undefined
      }).then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (j) { return { status: resp.status, body: j }; });
      }).then(function (r) {
        clearTimeout(timer);
        if (closed) return;
        failures = 0;
        if (welcomed && hub.state !== 'open') hub._setState('open');
        answer(body, r.status, r.body);
      }, function () {
        clearTimeout(timer);
        if (closed) return;
        if (!welcomed) { end(0, ''); return; } // the hello never got through
        // Network error: the same request again, after a backoff.
        if (hub.state === 'open') hub._setState('reconnecting', { reason: 'network' });
        var bound = Math.min(hub.options.backoffMax, hub.options.backoffBase * Math.pow(2, failures++));
        retryTimer = setTimeout(function () { send(body); }, Math.floor(Math.random() * bound));
      });
    };
    var next = function () {
      rid++;
      var body = { sid: sid, rid: rid, wait: hub.options.pollWait };
      if (pendingAck) { body.ack = pendingAck; pendingAck = 0; }
      send(body);
    };
    var deliver = function (msgs) {
      (msgs || []).forEach(function (m) { hub._receive(gen, m); });
      // The next request goes out once the handler caught up, so that it
      // carries the ack; the hub holds messages meanwhile.
      hub._whenIdle(function () { if (!closed) next(); });
    };
    var answer = function (body, status, j) {
      if (status === 200 && j.welcome) {
        sid = j.sid;
        welcomed = true;
        hub._welcome(gen, j.welcome);
        deliver(j.messages);
      } else if (status === 200) {
        deliver(j.messages);
      } else if (status === 503) {
        // The node is busy or going down: the same request again.
        var bound = Math.min(hub.options.backoffMax, hub.options.backoffBase * Math.pow(2, failures++));
        retryTimer = setTimeout(function () { send(body); }, Math.floor(Math.random() * bound));
      } else {
        var code = j && j.error && j.error.code || '';
        // 404 session_unknown and 410 too_slow/going_away: a new hello
        // (new session) after backoff; 401 ticket_invalid likewise, with a
        // new ticket. 410 user_revoked/device_deleted and 400s are fatal.
        if (status === 401) end(4401, code || 'ticket_invalid');
        else if (status === 404 || status === 410) end(0, FATAL_REASONS[code] ? code : (code || 'session_unknown'));
        else if (status === 400 && code === 'rid_out_of_window') end(0, code);
        else end(0, status >= 400 && status < 500 ? (code || 'protocol_error') : (code || 'http_' + status));
      }
    };
    send({ hello: hello, rid: rid });
    return {
      ack: function (seq) { pendingAck = seq; }, // rides on the next request
      close: function () {
        closed = true;
        clearTimeout(retryTimer);
        if (abort) abort.abort();
        if (sid) {
          // Tell the hub, best effort, so the session ends now rather than
          // at its inactivity timeout.
          fetch(url, {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, keepalive: true,
            body: JSON.stringify({ sid: sid, rid: rid + 1, terminate: true })
          }).catch(function () {});
        }
      }
    };
  }

  // ---- Server-Sent Events ----

  // An EventSource with its automatic reconnect turned off: each reconnect
  // needs a new ticket, which the browser's own reconnect would not have.
  // Acks go to POST /v1/ack with the session id.
  function openSSE(hub, gen, hello) {
    var closed = false, welcomed = false, session = null;
    var end = function (code, reason) {
      if (closed) return;
      closed = true;
      es.close();
      hub._ended(gen, welcomed, code, reason);
    };
    var q = '?ticket=' + encodeURIComponent(hello.ticket) + '&device=' + encodeURIComponent(hello.device) +
      (hello.ack ? '&ack=' + hello.ack : '');
    var es;
    try {
      if (typeof EventSource !== 'function') throw new Error('no EventSource');
      es = new EventSource(hub.url + '/v1/sse' + q);
    } catch (e) {
      setTimeout(function () { hub._ended(gen, false, 0, ''); });
      return { ack: function () {}, close: function () { closed = true; } };
    }
    es.addEventListener('welcome', function (ev) {
      var w;
      try { w = JSON.parse(ev.data); } catch (e) { return; }
      session = w.session;
      welcomed = true;
      hub._welcome(gen, w);
    });
    es.addEventListener('msg', function (ev) {
      try { hub._receive(gen, JSON.parse(ev.data)); } catch (e) { /* not JSON: ignore */ }
    });
    es.addEventListener('error', function (ev) {
      // A named 'error' event from the hub carries the reason; a plain
      // error event (no data) is the connection's.
      var reason = '';
      if (ev && ev.data) { try { reason = JSON.parse(ev.data).code || ''; } catch (e) { /* none */ } }
      end(0, reason);
    });
    return {
      ack: function (seq) {
        if (!session) return;
        fetch(hub.url + '/v1/ack', {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ sid: session, ack: seq })
        }).catch(function () { /* the next ack, or the next hello, carries it */ });
      },
      close: function () { closed = true; es.close(); }
    };
  }

  function supported(transport) {
    if (transport === 'websocket') return typeof WebSocket === 'function';
    if (transport === 'sse') return typeof EventSource === 'function';
    return typeof fetch === 'function';
  }

  // ---- storage ----

  function loadNumber(key) {
    try {
      var n = Number(localStorage.getItem(key));
      return Number.isSafeInteger(n) && n > 0 ? n : 0;
    } catch (e) { return 0; }
  }

  function loadDevice(prefix) {
    var key = prefix + ':device';
    try {
      var d = localStorage.getItem(key);
      if (d) return d;
    } catch (e) { /* no storage: a new device per page load */ }
    var d2 = 'web:' + randomId(16);
    try { localStorage.setItem(key, d2); } catch (e) { /* memory only */ }
    return d2;
  }

  function randomId(n) {
    var abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    var b = new Uint8Array(n);
    crypto.getRandomValues(b);
    var s = '';
    for (var i = 0; i < n; i++) s += abc[b[i] & 63];
    return s;
  }

  Hub.version = '1';
  global.Hub = Hub;
})(typeof window !== 'undefined' ? window : this);
