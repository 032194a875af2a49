// The demo page: register, make a mailbox, connect with hub.js, send to the
// mailbox and watch each message go from pending to delivered.
//
// The user secret and the mailbox token stay in sessionStorage (this tab),
// so a reload reconnects and resumes; "Start over" forgets them.
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var saved = {};   // {user_id, secret, token, push_url}
  var hub = null;

  try { saved = JSON.parse(sessionStorage.getItem('hubdemo') || '{}'); } catch (e) { saved = {}; }
  var save = function () { sessionStorage.setItem('hubdemo', JSON.stringify(saved)); };

  // api calls the hub and returns the decoded body; an error body throws.
  async function api(method, path, bearer, body) {
    var headers = {};
    if (bearer) headers.Authorization = 'Bearer ' + bearer;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    var resp = await fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) });
    var j = resp.status === 204 ? {} : await resp.json().catch(function () { return {}; });
    if (!resp.ok) throw new Error(method + ' ' + path.replace(/[A-Za-z0-9_-]{43}/g, '…') + ': ' + resp.status + ' ' + (j.error ? j.error.code : ''));
    return j;
  }

  function showError(err) {
    $('error').textContent = err ? String(err.message || err) : '';
  }

  function render() {
    $('user-id').textContent = saved.user_id || '–';
    $('token').textContent = saved.token || '–';
    $('register').disabled = !!saved.secret;
    $('create-mailbox').disabled = !saved.secret || !!saved.token;
    $('send').disabled = !saved.token;
  }

  function setState(s) {
    var el = $('state');
    el.className = 'badge state-' + s.state;
    el.dataset.state = s.state;
    el.dataset.transport = s.transport || '';
    el.textContent = s.state + (s.transport && s.state !== 'closed' ? ' · ' + s.transport : '');
  }

  function item(list, empty) {
    var li = document.createElement('li');
    $(empty).classList.add('hidden');
    $(list).prepend(li);
    return li;
  }

  function span(cls, text) {
    var s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    return s;
  }

  // connect opens the hub.js session for the registered user. The cursor is
  // kept per user (storageKey), so another user in this browser starts at 0.
  function connect() {
    if (hub || !saved.secret) return;
    hub = new Hub({
      url: location.origin,
      storageKey: 'hubdemo:' + saved.user_id,
      // A real app asks its own backend for the ticket; see the note.
      ticket: async function () { return (await api('POST', '/v1/tickets', saved.secret)).ticket; }
    });
    hub.on('state', setState);
    hub.on('error', function (e) { if (e.code !== 'ticket_failed') showError(e.code + ': ' + e.message); });
    hub.onMessage(async function (m) {
      var li = item('received', 'received-empty');
      li.dataset.seq = m.seq;
      li.append(span('seq', '#' + m.seq), span('data', m.data), span('time', new Date(m.ts).toLocaleTimeString()));
    });
    hub.connect();
  }

  $('register').addEventListener('click', async function () {
    showError();
    try {
      var u = await api('POST', '/v1/users');
      saved = { user_id: u.user_id, secret: u.secret };
      save();
      render();
      connect();
    } catch (e) { showError(e); }
  });

  $('create-mailbox').addEventListener('click', async function () {
    showError();
    try {
      var mb = await api('POST', '/v1/mailboxes', saved.secret, { label: 'demo page' });
      saved.token = mb.token;
      saved.push_url = mb.push_url;
      save();
      render();
    } catch (e) { showError(e); }
  });

  $('send').addEventListener('click', async function () {
    showError();
    try {
      var resp = await fetch(saved.push_url, {
        method: 'POST', headers: { 'Content-Type': 'text/plain; charset=utf-8', TTL: '3600' }, body: $('message').value
      });
      var j = await resp.json();
      if (resp.status !== 201) throw new Error('publish: ' + resp.status + ' ' + (j.error ? j.error.code : ''));
      $('last-id').textContent = j.id;
      var li = item('sent', 'sent-empty');
      li.dataset.id = j.id;
      var st = span('status status-pending', 'pending');
      li.append(span('data', $('message').value), span('time', j.id), st);
      watch(j.id, st);
    } catch (e) { showError(e); }
  });

  // watch reads a message's status every second until it is final.
  function watch(id, el) {
    var token = saved.token;
    var tick = async function () {
      var state = 'pending';
      try {
        state = (await api('GET', '/v1/messages/' + id, token)).state;
      } catch (e) { /* try again next second */ }
      el.textContent = state;
      el.className = 'status status-' + state;
      el.parentNode.dataset.state = state;
      if (state === 'pending' && saved.token === token) setTimeout(tick, 1000);
    };
    tick();
  }

  $('reset').addEventListener('click', function () {
    if (hub) hub.close();
    hub = null;
    saved = {};
    sessionStorage.removeItem('hubdemo');
    ['received', 'sent'].forEach(function (id) { $(id).textContent = ''; $(id + '-empty').classList.remove('hidden'); });
    $('last-id').textContent = '–';
    setState({ state: 'closed' });
    showError();
    render();
  });

  render();
  connect();
})();
