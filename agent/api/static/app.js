// edgeway status page. Plain JavaScript, no build. Every string that can
// come from a device goes through textContent, never innerHTML.
'use strict';
(function () {
  const API = '/api/v5';
  const admin = document.body.dataset.admin === 'true';
  const windowMs = Number(document.body.dataset.window) || 300000;
  const $ = (id) => document.getElementById(id);
  let gatewayNames = [];
  let query = '';

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.dataset[k.slice(5)] = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }

  function showError(msg) {
    const p = $('error');
    if (!msg) { p.hidden = true; return; }
    p.textContent = msg;
    p.hidden = false;
  }

  async function api(method, path) {
    const r = await fetch(API + path, { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (r.status === 204) return null;
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error((body && body.message) || (method + ' ' + path + ': ' + r.status));
    return body;
  }

  const enc = encodeURIComponent;
  const fmt = (v) => (v >= 100 ? Math.round(v) : Math.round(v * 10) / 10).toString();
  const hhmmss = (t) => (t ? new Date(t).toLocaleTimeString() : '');

  // Charts: x is time (now at the right edge), y is scaled to the largest value.
  function path(ts, vs, max) {
    let d = '';
    let pen = false;
    for (let i = 0; i < ts.length; i++) {
      const v = vs[i];
      if (v === null || v === undefined) { pen = false; continue; }
      const x = 300 - (ts[i] / windowMs) * 300;
      const y = 100 - (v / max) * 95;
      d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
      pen = true;
    }
    return d;
  }

  function drawCharts(c) {
    const max = Math.max(1, ...c.in, ...c.out);
    document.querySelector('#chart-msgs path.in').setAttribute('d', path(c.t, c.in, max));
    document.querySelector('#chart-msgs path.out').setAttribute('d', path(c.t, c.out, max));
    $('rate-in').textContent = fmt(c.in.length ? c.in[c.in.length - 1] : 0);
    $('rate-out').textContent = fmt(c.out.length ? c.out[c.out.length - 1] : 0);
    $('msgs-max').textContent = 'max ' + fmt(max) + '/s';
    const q = c.queue.filter((v) => v !== null);
    const qmax = Math.max(1, ...q);
    document.querySelector('#chart-queue path.queue').setAttribute('d', path(c.qt, c.queue, qmax));
    $('queue-now').textContent = q.length ? String(q[q.length - 1]) : 'no uplink';
    $('queue-max').textContent = 'max ' + qmax;
  }

  function renderUplink(u) {
    if (!u || !$('uplink-state')) return;
    const st = $('uplink-state');
    st.textContent = u.state;
    st.className = 'state-' + u.state;
    $('uplink-queue').textContent = (u.queue_messages ?? 0) + ' msgs, ' + (u.queue_bytes ?? 0) + ' B';
    $('uplink-oldest').textContent = u.oldest_age || '0s';
    $('uplink-drain').textContent = fmt(u.drain_rate || 0) + '/s';
    $('uplink-error').textContent = u.last_error || '–';
  }

  function toggleButton(name, running) {
    const b = el('button', { class: 'toggle', 'data-gateway': name, 'data-enable': String(!running) }, running ? 'Disable' : 'Enable');
    bindToggle(b);
    return b;
  }

  function renderGateways(gws) {
    gatewayNames = gws.map((g) => g.name);
    const tb = document.querySelector('#gateways tbody');
    const rows = gws.map((g) => {
      const ls = el('ul', { class: 'listeners' }, ...g.listeners.map((l) =>
        el('li', null, el('span', { class: 'badge ' + (l.running ? 'running' : 'stopped') }, l.id),
          ' ' + (l.address || l.bind) + ' · ' + l.current_connections + (l.error ? ' · ' + l.error : ''))));
      return el('tr', { 'data-gateway': g.name },
        el('td', null, g.name),
        el('td', null, el('span', { class: 'badge ' + g.status }, g.status)),
        el('td', null, g.current_connections + ' / ' + g.max_connections),
        el('td', null, ls),
        admin ? el('td', null, toggleButton(g.name, g.status === 'running')) : null);
    });
    tb.replaceChildren(...rows);
  }

  function renderEvents(evs) {
    $('events').replaceChildren(...evs.map((e) => el('li', null,
      el('time', null, hhmmss(e.time)), ' ', el('b', null, e.name), ' ',
      [e.gateway, e.clientid, e.topic, e.reason].filter(Boolean).join(' '))));
  }

  async function refreshStatus() {
    try {
      const s = await api('GET', '/status');
      $('uptime').textContent = s.agent.uptime;
      renderUplink(s.uplink);
      renderGateways(s.gateways);
      drawCharts(s.charts);
      renderEvents(s.events);
      showError('');
    } catch (e) {
      showError('status: ' + e.message);
    }
  }

  // Two taps: the first arms the button, the second acts. No dialogs, so
  // a stray tap on a phone does nothing.
  function twoStep(b, label, act) {
    let timer = null;
    b.addEventListener('click', async () => {
      if (!b.classList.contains('armed')) {
        b.classList.add('armed');
        b.textContent = 'Sure? ' + label;
        timer = setTimeout(() => { b.classList.remove('armed'); b.textContent = label; }, 4000);
        return;
      }
      clearTimeout(timer);
      b.disabled = true;
      try { await act(); showError(''); } catch (e) { showError(e.message); }
      refreshClients();
      refreshStatus();
    });
  }

  function bindKick(b) {
    const gw = b.dataset.gateway, id = b.dataset.clientid;
    twoStep(b, 'Kick', () => api('DELETE', '/gateways/' + enc(gw) + '/clients/' + enc(id)));
  }

  function bindToggle(b) {
    const gw = b.dataset.gateway, on = b.dataset.enable;
    const label = on === 'true' ? 'Enable' : 'Disable';
    twoStep(b, label, () => api('PUT', '/gateways/' + enc(gw) + '/enable/' + on));
  }

  async function refreshClients() {
    const q = query ? '&like_clientid=' + enc(query) : '';
    try {
      const pages = await Promise.all(gatewayNames.map((g) => api('GET', '/gateways/' + enc(g) + '/clients?limit=50' + q)));
      let total = 0;
      const all = [];
      pages.forEach((p) => { total += p.meta.count; all.push(...p.data); });
      all.sort((a, b) => (a.clientid < b.clientid ? -1 : a.clientid > b.clientid ? 1 : 0));
      const rows = all.slice(0, 100).map((c) => {
        let kick = null;
        if (admin) {
          kick = el('button', { class: 'kick', 'data-gateway': c.gateway, 'data-clientid': c.clientid }, 'Kick');
          bindKick(kick);
        }
        return el('tr', { 'data-clientid': c.clientid, 'data-gateway': c.gateway },
          el('td', null, c.clientid), el('td', null, c.gateway), el('td', { class: 'opt' }, c.username || ''),
          el('td', { class: 'opt' }, c.ip_address || ''), el('td', { class: 'opt' }, hhmmss(c.connected_at)),
          kick ? el('td', null, kick) : null);
      });
      document.querySelector('#clients tbody').replaceChildren(...rows);
      $('clients-count').textContent = total + (total > rows.length ? ' (showing ' + rows.length + ')' : '');
    } catch (e) {
      showError('clients: ' + e.message);
    }
  }

  document.querySelectorAll('button.kick').forEach(bindKick);
  document.querySelectorAll('button.toggle').forEach(bindToggle);
  gatewayNames = Array.from(document.querySelectorAll('#gateways tbody tr')).map((r) => r.dataset.gateway);
  let debounce = null;
  $('client-search').addEventListener('input', (e) => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { query = e.target.value.trim(); refreshClients(); }, 250);
  });
  refreshStatus().then(refreshClients);
  setInterval(refreshStatus, 2000);
  setInterval(refreshClients, 5000);
})();
