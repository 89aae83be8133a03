// tokenbuddy dashboard. Plain JavaScript, no framework, no build step.
//
// Safety rule: every value that comes from the API is rendered with
// textContent or as an attribute value through setAttribute; HTML is never
// built from strings (the page's CSP also forbids inline scripts).
'use strict';

(() => {
  // Live: every 2 s while the tab is visible (a hidden tab fetches nothing).
  const REFRESH_MS = 2000;
  // The doctor probes ports, the registry and client configs: every 15th
  // refresh (30 s) is enough; sellers, the audit and the clients every 5th.
  const DOCTOR_EVERY = 15;
  const SLOW_EVERY = 5;
  // Upstream colours (each at least 4.5:1 on white), by first appearance.
  const PALETTE = ['#1f5fbf', '#1b7a3a', '#7a4d00', '#6b2fa0', '#00687a', '#a40000', '#8a3b12', '#3d4f00'];
  const TOKEN_KEY = 'tokenbuddy.accessToken';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  // The only links made from API data: a pending payment's pay URL, when
  // it is a web link (never javascript: or data:).
  const PAY_LINK = /^https?:\/\//i;

  const byId = (id) => document.getElementById(id);

  // ---------- helpers ----------

  // Creates an element. `attrs` are set with setAttribute (data-testid,
  // title, …); `text` becomes textContent.
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
  }

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  // Integer micros as `$0.000300` (6 decimals, like the CLI); `$?` when unknown.
  function usd(micros) {
    if (!isNum(micros)) return '$?';
    const a = amount(micros);
    return a.startsWith('-') ? `-$${a.slice(1)}` : `$${a}`;
  }

  // Integer micros as `0.000300` (no currency: seller credit).
  function amount(micros) {
    if (!isNum(micros)) return '?';
    const abs = Math.abs(Math.trunc(micros));
    const whole = Math.floor(abs / 1e6);
    const frac = String(abs % 1e6).padStart(6, '0');
    return (micros < 0 ? '-' : '') + whole + '.' + frac;
  }

  function fixed(value, digits) {
    return isNum(value) ? (Number.isInteger(value) ? String(value) : value.toFixed(digits)) : '–';
  }

  function duration(seconds) {
    if (!isNum(seconds)) return '?';
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  const pad2 = (n) => String(n).padStart(2, '0');

  // Local `MM-DD HH:MM:SS`.
  function clock(ms) {
    if (!isNum(ms)) return '?';
    const d = new Date(ms);
    return `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  const yesNo = (b) => (b ? 'yes' : 'no');

  // `1 warning`, `2 warnings`.
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

  function errorMessage(body, res) {
    if (body && body.error && typeof body.error.message === 'string') {
      return body.error.message + (body.error.code ? ` (${body.error.code})` : '');
    }
    return `HTTP ${res.status}`;
  }

  async function getJson(path) {
    const res = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) throw new Error(`${path}: ${errorMessage(body, res)}`);
    return body;
  }

  // ---------- access token ----------

  const tokenInput = byId('access-token');

  function loadToken() {
    try {
      tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      // Storage disabled: the field still works for this page view.
    }
  }

  function saveToken() {
    try {
      if (tokenInput.value) sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage disabled.
    }
  }

  // ---------- sections ----------

  function renderStatus(s) {
    const parts = [];
    if (s && typeof s === 'object') {
      if (s.version) parts.push(`v${s.version}`);
      if (s.mode) parts.push(`mode ${s.mode}`);
      parts.push(`up ${duration(s.uptime_s)}`);
      const u = s.upstreams || {};
      if (isNum(u.total)) parts.push(`${plural(u.total, 'upstream')}, ${plural(u.open_circuits || 0, 'open circuit')}`);
      if (s.registry) parts.push(s.registry.stale ? 'registry stale' : 'registry fresh');
      if (s.budget) parts.push(`budget left ${usd(s.budget.left_usd_micros)}`);
      if (s.ledger && s.ledger.dropped) parts.push(`${plural(s.ledger.dropped, 'record')} dropped`);
      for (const x of Array.isArray(s.export) ? s.export : []) parts.push(`export ${x.sink} ${x.state}`);
    }
    byId('status-line').textContent = parts.join(' · ') || 'no status';
  }

  function renderUsage(u) {
    const t = (u && u.totals) || {};
    byId('summary-calls').textContent = isNum(t.calls) ? String(t.calls) : '–';
    byId('summary-spend').textContent = usd(t.cost_usd_micros);
    byId('summary-saved').textContent = usd(t.saved_usd_micros);
    byId('summary-unpriced').textContent = isNum(t.unpriced_calls) ? String(t.unpriced_calls) : '–';
    drawChart(Array.isArray(u && u.rows) ? u.rows : []);
  }

  // Grouped bars (spend, saved) per day, drawn as inline SVG.
  function drawChart(rows) {
    const days = rows
      .filter((r) => r && r.key !== undefined)
      .slice()
      .sort((a, b) => String(a.key).localeCompare(String(b.key)));
    const W = 640, H = 220, left = 80, right = 10, top = 12, bottom = 30;
    const plotW = W - left - right, plotH = H - top - bottom;
    const val = (v) => (isNum(v) && v > 0 ? v : 0);
    const peak = Math.max(0, ...days.map((r) => Math.max(val(r.cost_usd_micros), val(r.saved_usd_micros))));
    const max = Math.max(1, peak);
    const spend = days.reduce((a, r) => a + val(r.cost_usd_micros), 0);
    const saved = days.reduce((a, r) => a + val(r.saved_usd_micros), 0);

    const root = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', 'data-testid': 'chart-svg',
    });
    root.appendChild(svg('title', { id: 'chart-title' }, 'Spend and saved per day'));
    root.appendChild(svg('desc', { id: 'chart-desc' },
      days.length === 0 ? 'No data yet.' : `${days.length} days: spend ${usd(spend)}, saved ${usd(saved)}.`));
    root.appendChild(svg('line', { class: 'axis', x1: left, y1: top + plotH, x2: W - right, y2: top + plotH }));
    root.appendChild(svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + plotH }));
    root.appendChild(svg('text', { class: 'label', x: left - 6, y: top + 4, 'text-anchor': 'end' }, usd(peak)));
    root.appendChild(svg('text', { class: 'label', x: left - 6, y: top + plotH, 'text-anchor': 'end' }, '$0'));
    if (days.length === 0) {
      root.appendChild(svg('text', { class: 'label', x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle' }, 'No data yet'));
    }
    const group = plotW / Math.max(1, days.length);
    const bar = Math.max(2, Math.min(28, group * 0.35));
    const labelEvery = Math.ceil(days.length / 10);
    days.forEach((r, i) => {
      const x0 = left + i * group + (group - 2 * bar - 2) / 2;
      const day = String(r.key);
      [['spend', r.cost_usd_micros, 0], ['saved', r.saved_usd_micros, bar + 2]].forEach(([kind, v, dx]) => {
        const h = (val(v) / max) * plotH;
        const rect = svg('rect', {
          class: `bar ${kind}`, x: (x0 + dx).toFixed(1), y: (top + plotH - h).toFixed(1),
          width: bar.toFixed(1), height: h.toFixed(1), 'data-testid': `chart-bar-${kind}`, 'data-day': day,
        });
        rect.appendChild(svg('title', null, `${day}: ${kind} ${usd(v)}`));
        root.appendChild(rect);
      });
      if (i % labelEvery === 0) {
        const short = /^\d{4}-\d{2}-\d{2}$/.test(day) ? day.slice(5) : day;
        root.appendChild(svg('text', {
          class: 'label', x: (left + i * group + group / 2).toFixed(1), y: H - 10, 'text-anchor': 'middle',
        }, short));
      }
    });
    byId('chart').replaceChildren(root);
  }

  function callRow(c) {
    const attempts = Array.isArray(c.attempts) ? c.attempts : [];
    const chain = attempts.map((a) => a.upstream).join('→') || '–';
    const failedHops = attempts
      .filter((a) => a.outcome !== 'ok')
      .map((a) => `${a.upstream} ${a.status ?? a.error_class ?? a.outcome}`)
      .join(', ');
    let cost;
    if (isNum(c.cost_usd_micros)) cost = usd(c.cost_usd_micros);
    else cost = c.ok ? '$?' : '–';
    const flags = [];
    if (c.usage_missing) flags.push('no-usage');
    if (c.empty_completion) flags.push('empty');
    if (c.unpriced && c.ok) flags.push('unpriced');
    const iso = isNum(c.started_at_ms) ? new Date(c.started_at_ms).toISOString() : undefined;

    const tr = el('tr', { 'data-testid': 'call-row', 'data-call-id': c.id });
    const time = el('td', { 'data-testid': 'call-time' });
    time.appendChild(el('time', { datetime: iso, title: iso }, clock(c.started_at_ms)));
    tr.appendChild(time);
    const member = typeof c.member === 'string' && c.member !== '' ? c.member : ACCESS_TOKEN;
    tr.appendChild(el('td', {
      'data-testid': 'call-member', 'data-member': member,
      title: member === ACCESS_TOKEN ? "made with the daemon's access token" : `made with ${member}'s member key`,
    }, memberName(member)));
    // A translated call shows both protocols: `chat→messages`.
    const upstreamLabel = { chat_completions: 'chat', responses: 'responses', messages: 'messages' };
    const endpoint = c.upstream_protocol
      ? `${c.endpoint}→${upstreamLabel[c.upstream_protocol] || c.upstream_protocol}`
      : c.endpoint;
    tr.appendChild(el('td', {
      'data-testid': 'call-endpoint',
      title: c.upstream_protocol ? `translated: the upstream was spoken to in ${c.upstream_protocol}` : undefined,
    }, endpoint));
    tr.appendChild(el('td', {
      'data-testid': 'call-model',
      title: c.requested_model && c.requested_model !== c.model ? `requested ${c.requested_model}` : undefined,
    }, c.model));
    tr.appendChild(el('td', { 'data-testid': 'call-chain', title: failedHops ? `failed: ${failedHops}` : undefined }, chain));
    tr.appendChild(el('td', {
      'data-testid': 'call-latency', class: 'num', title: isNum(c.ttft_ms) ? `ttft ${c.ttft_ms} ms` : undefined,
    }, isNum(c.latency_ms) ? `${c.latency_ms} ms` : '?'));
    tr.appendChild(el('td', { 'data-testid': 'call-cost', class: 'num' }, cost));
    tr.appendChild(el('td', { 'data-testid': 'call-saved', class: 'num' },
      isNum(c.saved_usd_micros) ? usd(c.saved_usd_micros) : '–'));
    tr.appendChild(el('td', { 'data-testid': 'call-flags', class: flags.length ? 'flag' : undefined }, flags.join(' ')));
    tr.appendChild(el('td', { 'data-testid': 'call-outcome', class: `outcome-${c.outcome}` },
      c.failed_over && c.ok ? `${c.outcome} (failed over)` : c.outcome));
    const open = el('button', {
      type: 'button', class: 'secondary', 'data-testid': 'call-open',
      'aria-label': `Details of the ${c.model} call at ${clock(c.started_at_ms)}`,
    }, 'Details');
    open.addEventListener('click', (e) => {
      e.stopPropagation();
      openCall(c.id, open);
    });
    const cell = el('td');
    cell.appendChild(open);
    tr.appendChild(cell);
    tr.classList.add('clickable');
    tr.addEventListener('click', () => openCall(c.id, open));
    return tr;
  }

  function renderCalls(data) {
    const calls = Array.isArray(data && data.calls) ? data.calls : [];
    for (const c of calls) {
      noteOption('model', c.model);
      noteOption('upstream', c.winner);
    }
    // Rows are keyed by call id and kept (a record never changes), so a
    // refresh never moves or destroys a focused Details button.
    const body = byId('calls-body');
    const existing = new Map([...body.children].map((tr) => [tr.getAttribute('data-call-id'), tr]));
    const rows = calls.map((c) => existing.get(String(c.id)) || callRow(c));
    rows.forEach((tr, i) => {
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    while (body.children.length > rows.length) body.lastElementChild.remove();
    byId('calls-empty').hidden = calls.length > 0;
  }

  // ---------- members ----------

  const ACCESS_TOKEN = '-';
  function memberName(key) {
    return key === '' || key === ACCESS_TOKEN ? 'Access token' : String(key);
  }

  // Spend, calls and tokens per member (`/v1/usage?by=member`): a table and
  // one bar per member in the spend chart's style. Hidden while only the
  // access token made calls.
  function renderMembers(u) {
    const rows = (Array.isArray(u && u.rows) ? u.rows : [])
      .filter((r) => r && typeof r.key === 'string')
      .slice()
      .sort((a, b) => (b.cost_usd_micros || 0) - (a.cost_usd_micros || 0) || String(a.key).localeCompare(String(b.key)));
    rows.forEach((r) => { if (r.key !== '') noteOption('member', r.key); });
    byId('members').hidden = !rows.some((r) => r.key !== '');
    byId('members-body').replaceChildren(...rows.map((r) => {
      const tr = el('tr', { 'data-testid': 'member-row', 'data-member': r.key === '' ? ACCESS_TOKEN : r.key });
      tr.append(
        el('th', { scope: 'row' }, memberName(r.key)),
        el('td', { class: 'num', 'data-testid': 'member-calls' }, String(r.calls)),
        el('td', { class: 'num' }, String(r.input_tokens)),
        el('td', { class: 'num' }, String(r.output_tokens)),
        el('td', { class: 'num', 'data-testid': 'member-spend' }, usd(r.cost_usd_micros)),
      );
      return tr;
    }));
    drawMembers(rows);
  }

  function drawMembers(rows) {
    const W = 640, left = 120, right = 90, rowH = 22, top = 6;
    const H = top * 2 + Math.max(1, rows.length) * rowH;
    const plotW = W - left - right;
    const val = (v) => (isNum(v) && v > 0 ? v : 0);
    const max = Math.max(1, ...rows.map((r) => val(r.cost_usd_micros)));
    const root = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'members-chart-title', 'data-testid': 'members-chart-svg',
    });
    root.appendChild(svg('title', { id: 'members-chart-title' },
      `Spend per member: ${rows.map((r) => `${memberName(r.key)} ${usd(r.cost_usd_micros)}`).join(', ') || 'no calls'}`));
    root.appendChild(svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: H - top }));
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const w = (val(r.cost_usd_micros) / max) * plotW;
      root.appendChild(svg('text', { class: 'label', x: left - 6, y: y + rowH * 0.65, 'text-anchor': 'end' }, memberName(r.key)));
      const rect = svg('rect', {
        class: 'bar spend', x: left, y: (y + 3).toFixed(1), width: w.toFixed(1), height: (rowH - 6).toFixed(1),
        'data-testid': 'members-bar', 'data-member': r.key === '' ? ACCESS_TOKEN : r.key,
      });
      rect.appendChild(svg('title', null, `${memberName(r.key)}: ${usd(r.cost_usd_micros)} in ${r.calls} calls`));
      root.appendChild(rect);
      root.appendChild(svg('text', { class: 'label', x: (left + w + 6).toFixed(1), y: y + rowH * 0.65 }, usd(r.cost_usd_micros)));
    });
    byId('members-chart').replaceChildren(root);
  }

  function renderUpstreams(data) {
    const ups = Array.isArray(data && data.upstreams) ? data.upstreams : [];
    for (const u of ups) noteOption('upstream', u.id);
    byId('upstreams-scorer').textContent = data && data.scorer ? `Scorer: ${data.scorer}` : '';
    const rows = ups.map((u) => {
      const score = u.score || {};
      const missing = Array.isArray(score.missing_inputs) ? score.missing_inputs : [];
      const tr = el('tr', { 'data-testid': 'upstream-row', 'data-upstream-id': u.id });
      tr.appendChild(el('th', { scope: 'row', 'data-testid': 'upstream-id', title: u.base_url }, u.id));
      tr.appendChild(el('td', { 'data-testid': 'upstream-kind' }, u.kind));
      tr.appendChild(el('td', {
        'data-testid': 'upstream-circuit', class: `state-${u.circuit}`,
        title: isNum(u.consecutive_failures) ? `${u.consecutive_failures} consecutive failures` : undefined,
      }, u.circuit));
      tr.appendChild(el('td', {
        'data-testid': 'upstream-status', title: u.last_error_class ? `last error: ${u.last_error_class}` : undefined,
      }, u.upstream_status ?? '–'));
      tr.appendChild(el('td', { 'data-testid': 'upstream-health', class: 'num' }, fixed(u.health_score, 0)));
      tr.appendChild(el('td', { 'data-testid': 'upstream-score', class: 'num' }, fixed(score.total, 2)));
      tr.appendChild(el('td', { 'data-testid': 'upstream-missing' }, missing.length ? missing.join(', ') : '–'));
      return tr;
    });
    byId('upstreams-body').replaceChildren(...rows);
    byId('upstreams-empty').hidden = ups.length > 0;
  }

  function renderCredit(data) {
    const section = byId('credit');
    if (!data || typeof data !== 'object') {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    const sellers = Array.isArray(data.sellers) ? data.sellers : [];
    // One row per seller, and the totals (testids prefixed `credit-total-`).
    const row = (s, attrs, prefix, head) => {
      const tr = el('tr', attrs);
      tr.appendChild(el('th', { scope: 'row', 'data-testid': `${prefix}seller` }, head));
      tr.appendChild(el('td', { 'data-testid': `${prefix}purchases`, class: 'num' },
        s.failed_purchases ? `${s.purchases} (${s.failed_purchases} failed)` : s.purchases));
      tr.appendChild(el('td', { 'data-testid': `${prefix}paid`, class: 'num' }, usd(s.usd_paid_micros)));
      tr.appendChild(el('td', { 'data-testid': `${prefix}bought`, class: 'num' }, amount(s.credit_bought_micros)));
      tr.appendChild(el('td', { 'data-testid': `${prefix}spent`, class: 'num' }, amount(s.credit_spent_micros)));
      tr.appendChild(el('td', { 'data-testid': `${prefix}remaining`, class: 'num' }, amount(s.credit_remaining_micros)));
      tr.appendChild(el('td', { 'data-testid': `${prefix}wasted`, class: 'num' }, amount(s.credit_wasted_micros)));
      return tr;
    };
    const rows = sellers.map((s) =>
      row(s, { 'data-testid': 'credit-row', 'data-seller-id': s.seller_id }, 'credit-', s.seller_id));
    byId('credit-body').replaceChildren(...rows);
    const totals = data.totals && typeof data.totals === 'object' && sellers.length > 0
      ? [row(data.totals, { 'data-testid': 'credit-total-row' }, 'credit-total-', 'All sellers')]
      : [];
    byId('credit-total').replaceChildren(...totals);
    const budget = [];
    if (isNum(data.budget_usd_micros)) budget.push(`Session budget ${usd(data.budget_usd_micros)}`);
    if (isNum(data.budget_left_usd_micros)) budget.push(`left ${usd(data.budget_left_usd_micros)}`);
    byId('credit-budget').textContent = budget.join(', ');
  }

  // Signed ppm as `+2.7%`; `–` when unknown.
  function percent(ppm) {
    if (!isNum(ppm)) return '–';
    return (ppm < 0 ? '-' : '+') + (Math.abs(ppm) / 1e4).toFixed(1) + '%';
  }

  function when(ms) {
    return isNum(ms) ? new Date(ms).toLocaleString() : '–';
  }

  // The probe's checks in table order, and how each one's number reads.
  const TRUST_CHECKS = [
    ['plain', (n) => `${n} ms`],
    ['stream_usage', (n) => `${n} tokens`],
    ['tool_call', null],
    ['max_tokens', (n) => `${n} tokens`],
    ['prompt_tokens', (n) => `${n >= 0 ? '+' : '−'}${Math.abs(n)} %`],
    ['model_id', null],
  ];
  const VERDICT_MARK = { pass: '✓', fail: '✗', unknown: '?' };
  const VERDICT_WORD = { pass: 'passed', fail: 'failed', unknown: 'unknown' };

  function trustCell(check, found, fmt) {
    const verdict = found ? found.verdict : 'unknown';
    const measured = found && isNum(found.measured) && fmt ? fmt(found.measured) : '';
    const text = `${VERDICT_MARK[verdict] || '?'}${measured ? ` ${measured}` : ''}`;
    return el('td', {
      'data-testid': `trust-${check}`, 'data-verdict': verdict, class: `verdict-${verdict}`,
      'aria-label': `${check.replace('_', ' ')}: ${VERDICT_WORD[verdict] || verdict}${measured ? `, ${measured}` : ''}`,
    }, text);
  }

  function trustRouting(e) {
    if (e.expired) return 'expired: not used';
    if (e.demoted_for_all) return `pushed back: ${e.demoted_for_all}`;
    if (e.demoted_for_tools) return `not first with tools: ${e.demoted_for_tools}`;
    return 'trusted';
  }

  function renderTrust(data) {
    const entries = data && Array.isArray(data.entries) ? data.entries : [];
    byId('trust').hidden = entries.length === 0;
    const rows = entries.map((e) => {
      const checks = Array.isArray(e.checks) ? e.checks : [];
      const tr = el('tr', { 'data-testid': 'trust-row', 'data-upstream-id': e.upstream_id, 'data-model': e.model });
      tr.appendChild(el('th', { scope: 'row', 'data-testid': 'trust-upstream' }, e.upstream_id));
      tr.appendChild(el('td', { 'data-testid': 'trust-model' }, e.model));
      tr.appendChild(el('td', { 'data-testid': 'trust-probed' }, when(e.probed_at_ms)));
      for (const [check, fmt] of TRUST_CHECKS) {
        tr.appendChild(trustCell(check, checks.find((c) => c.check === check), fmt));
      }
      const demoted = !e.expired && (e.demoted_for_all || e.demoted_for_tools);
      tr.appendChild(el('td', { 'data-testid': 'trust-routing', class: demoted ? 'verdict-warn' : undefined }, trustRouting(e)));
      return tr;
    });
    byId('trust-body').replaceChildren(...rows);
  }

  function renderSellers(data) {
    const sellers = data && Array.isArray(data.sellers) ? data.sellers : [];
    byId('sellers').hidden = sellers.length === 0;
    const rows = sellers.map((s) => {
      const tr = el('tr', { 'data-testid': 'seller-row', 'data-seller-id': s.seller_id });
      tr.appendChild(el('th', { scope: 'row', 'data-testid': 'seller-id' }, s.seller_id));
      tr.appendChild(el('td', { 'data-testid': 'seller-calls', class: 'num' }, s.calls));
      tr.appendChild(el('td', { 'data-testid': 'seller-failed', class: 'num' },
        isNum(s.failure_share_ppm) ? (s.failure_share_ppm / 1e4).toFixed(1) + '%' : '–'));
      tr.appendChild(el('td', { 'data-testid': 'seller-settled', class: 'num' }, usd(s.settled_usd_micros)));
      tr.appendChild(el('td', { 'data-testid': 'seller-estimated', class: 'num' }, usd(s.estimated_usd_micros)));
      tr.appendChild(el('td', { 'data-testid': 'seller-drift', class: 'num' }, percent(s.median_drift_ppm)));
      tr.appendChild(el('td', { 'data-testid': 'seller-wasted', class: 'num' }, amount(s.wasted_credit_micros)));
      tr.appendChild(el('td', { 'data-testid': 'seller-last-purchase' }, when(s.last_purchase_ms)));
      return tr;
    });
    byId('sellers-body').replaceChildren(...rows);
  }

  function renderAudit(data) {
    const flagged = data && Array.isArray(data.flagged) ? data.flagged : [];
    const items = flagged.map((f) => {
      const li = el('li', { 'data-testid': 'audit-flag', 'data-seller-id': f.seller_id, 'data-kind': f.kind });
      li.appendChild(el('strong', { 'data-testid': 'audit-seller' }, f.seller_id));
      li.appendChild(el('span', { class: 'verdict verdict-fail', 'data-testid': 'audit-kind' }, f.kind));
      li.appendChild(el('span', { 'data-testid': 'audit-message' },
        `${f.message}: median drift ${percent(f.median_drift_ppm)} over ${f.settled_calls} calls`));
      const calls = (Array.isArray(f.calls) ? f.calls : []).map((c) => c.call_id);
      li.appendChild(el('span', { class: 'muted small', 'data-testid': 'audit-calls' }, calls.join(', ')));
      return li;
    });
    byId('audit-list').replaceChildren(...items);
  }

  // A QR code from its module rows ('1' dark) as SVG rects, drawn with
  // createElementNS: no markup is parsed.
  function qrCode(rows) {
    const n = rows.length;
    const quiet = 4;
    const size = n + 2 * quiet;
    const root = svg('svg', {
      'data-testid': 'payment-qr', viewBox: `0 0 ${size} ${size}`, width: 200, height: 200,
      role: 'img', 'aria-label': 'QR code of the payment link', 'shape-rendering': 'crispEdges',
    });
    root.appendChild(svg('rect', { x: 0, y: 0, width: size, height: size, fill: '#ffffff' }));
    rows.forEach((row, y) => {
      for (let x = 0; x < row.length; x += 1) {
        if (row[x] === '1') {
          root.appendChild(svg('rect', { x: x + quiet, y: y + quiet, width: 1, height: 1, fill: '#000000' }));
        }
      }
    });
    return root;
  }

  function renderPayments(data) {
    const section = byId('payments');
    const payments = data && Array.isArray(data.payments) ? data.payments : [];
    const items = payments.map((p) => {
      const li = el('li', { 'data-testid': 'payment-row', 'data-seller-id': p.seller_id, class: 'payment' });
      const what = `${p.seller_id} asks ${usd(p.price_usd_micros)} for ${amount(p.credit_micros)} credit (${p.model})`;
      li.appendChild(el('p', { 'data-testid': 'payment-what' }, what));
      const link = el('a', { 'data-testid': 'payment-url', rel: 'noreferrer noopener', target: '_blank' }, p.pay_url);
      // Only web links are made clickable (the daemon checks them too).
      if (PAY_LINK.test(String(p.pay_url))) link.setAttribute('href', String(p.pay_url));
      li.appendChild(link);
      const expires = isNum(p.expires_at_ms) ? new Date(p.expires_at_ms).toLocaleTimeString() : '?';
      li.appendChild(el('p', { 'data-testid': 'payment-expires', class: 'muted small' }, `expires ${expires}`));
      if (Array.isArray(p.qr_modules) && p.qr_modules.length > 0) li.appendChild(qrCode(p.qr_modules.map(String)));
      if (p.recharge_qr_url) {
        li.appendChild(el('p', { 'data-testid': 'payment-recharge', class: 'muted small' }, `recharge: ${p.recharge_qr_url}`));
      }
      return li;
    });
    const recharges = data && Array.isArray(data.recharges) ? data.recharges : [];
    for (const r of recharges) {
      const li = el('li', { 'data-testid': 'recharge-row', 'data-seller-id': r.seller_id, class: 'payment' });
      li.appendChild(el('p', { 'data-testid': 'recharge-what' },
        `${r.seller_id}: wallet balance low (${amount(r.balance_micros)} of ${amount(r.credit_micros)} left)`));
      const link = el('a', { 'data-testid': 'recharge-url', rel: 'noreferrer noopener', target: '_blank' }, r.recharge_url);
      if (PAY_LINK.test(String(r.recharge_url))) link.setAttribute('href', String(r.recharge_url));
      li.appendChild(link);
      if (Array.isArray(r.qr_modules) && r.qr_modules.length > 0) li.appendChild(qrCode(r.qr_modules.map(String)));
      items.push(li);
    }
    section.hidden = items.length === 0;
    byId('payments-list').replaceChildren(...items);
  }

  // Client rows are updated in place (keyed by id) so a refresh never
  // destroys a focused button or an action's result.
  const clientRows = new Map();

  function clientRow(c) {
    let row = clientRows.get(c.id);
    if (!row) {
      const tr = el('tr', { 'data-testid': 'client-row', 'data-client-id': c.id });
      const name = el('th', { scope: 'row', 'data-testid': 'client-name' });
      const detected = el('td', { 'data-testid': 'client-detected' });
      const configured = el('td', { 'data-testid': 'client-configured' });
      const actions = el('td');
      const install = el('button', { type: 'button', 'data-testid': 'client-install' }, 'Install');
      const undo = el('button', { type: 'button', class: 'secondary', 'data-testid': 'client-undo' }, 'Undo');
      actions.append(install, undo);
      const result = el('td', { 'data-testid': 'client-result', 'data-state': 'idle' });
      tr.append(name, detected, configured, actions, result);
      row = { tr, name, detected, configured, install, undo, result, client: c };
      install.addEventListener('click', () => clientAction('apply', row));
      undo.addEventListener('click', () => clientAction('undo', row));
      clientRows.set(c.id, row);
    }
    row.client = c;
    row.name.textContent = c.name || c.id;
    row.name.setAttribute('title', Array.isArray(c.paths) ? c.paths.join('\n') : '');
    row.detected.textContent = yesNo(c.detected);
    row.configured.textContent = yesNo(c.configured);
    row.configured.setAttribute('data-configured', String(Boolean(c.configured)));
    const label = c.name || c.id;
    row.install.setAttribute('aria-label', `Install into ${label}`);
    row.undo.setAttribute('aria-label', `Undo the install in ${label}`);
    return row.tr;
  }

  function renderClients(data) {
    const clients = Array.isArray(data && data.clients) ? data.clients : [];
    const seen = new Set(clients.map((c) => c.id));
    for (const id of [...clientRows.keys()]) if (!seen.has(id)) clientRows.delete(id);
    const body = byId('clients-body');
    const rows = clients.map(clientRow);
    // Re-append only when the order or set changed, to keep focus.
    const same = rows.length === body.children.length && rows.every((r, i) => body.children[i] === r);
    if (!same) body.replaceChildren(...rows);
  }

  async function clientAction(kind, row) {
    const token = tokenInput.value.trim();
    const label = row.client.name || row.client.id;
    const say = (state, text) => {
      row.result.setAttribute('data-state', state);
      row.result.textContent = text;
      byId('clients-status').textContent = `${label}: ${text}`;
    };
    if (!token) {
      say('error', 'Enter the access token first.');
      return;
    }
    row.install.disabled = true;
    row.undo.disabled = true;
    say('pending', kind === 'apply' ? 'Installing…' : 'Undoing…');
    try {
      const res = await fetch(`/v1/install/${kind}`, {
        method: 'POST',
        cache: 'no-store',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ clients: [row.client.id] }),
      });
      let body = null;
      try {
        body = await res.json();
      } catch (_) {
        body = null;
      }
      if (!res.ok) throw new Error(errorMessage(body, res));
      const changed = Array.isArray(body && body.changed) ? body.changed : [];
      const files = changed.map((c) => c.path).filter(Boolean);
      const what = files.length ? `${plural(files.length, 'file')} changed: ${files.join(', ')}` : 'nothing to change';
      say('ok', `${kind === 'apply' ? 'Installed' : 'Undone'}: ${what}`);
      renderClients(await getJson('/v1/install'));
    } catch (e) {
      say('error', `Error: ${e && e.message ? e.message : e}`);
    } finally {
      row.install.disabled = false;
      row.undo.disabled = false;
    }
  }

  function renderDoctor(data) {
    const checks = Array.isArray(data && data.checks) ? data.checks : [];
    const count = (v) => checks.filter((c) => c.verdict === v).length;
    const overall = byId('doctor-overall');
    overall.textContent = data && data.ok
      ? `All good: ${count('pass')} passed, ${plural(count('warn'), 'warning')}.`
      : `Needs attention: ${count('fail')} failed, ${plural(count('warn'), 'warning')}, ${count('pass')} passed.`;
    overall.setAttribute('data-ok', String(Boolean(data && data.ok)));
    const items = checks.map((c) => {
      const li = el('li', { 'data-testid': 'doctor-check', 'data-check-name': c.name });
      li.appendChild(el('span', { class: `verdict verdict-${c.verdict}`, 'data-testid': 'doctor-verdict' }, c.verdict));
      li.appendChild(el('span', { class: 'name' }, c.name));
      li.appendChild(el('span', { class: 'detail' }, c.detail));
      if (c.hint) li.appendChild(el('span', { class: 'hint' }, c.hint));
      return li;
    });
    byId('doctor-list').replaceChildren(...items);
  }

  // ---------- filters ----------

  let filterGen = 0;
  // The trends are fetched at the next refresh whatever the window.
  let seriesDue = true;
  const FILTERS = ['model', 'upstream', 'protocol', 'outcome', 'member'];
  // Values seen for the model, upstream and member choices (they only grow).
  const known = { model: new Set(), upstream: new Set(), member: new Set(['-']) };

  function noteOption(kind, value) {
    if (typeof value !== 'string' || value === '' || known[kind].has(value)) return;
    known[kind].add(value);
    const select = byId(`filter-${kind}`);
    const options = [...known[kind]].sort();
    const at = options.indexOf(value);
    // Options after the "Any" one, kept sorted; the selection is untouched.
    // (The member choice also has its fixed access-token option first.)
    const fixed = kind === 'member' ? 1 : 0;
    const before = select.options[at + 1 + fixed] || null;
    select.insertBefore(el('option', { value }, value), before);
  }

  // `&model=…&outcome=…` for the filters set (values URL-encoded).
  function filterQuery() {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const v = byId(`filter-${name}`).value;
      if (v) params.set(name, v);
    }
    const q = params.toString();
    return q ? `&${q}` : '';
  }

  function windowChoice() {
    const [since, bucket] = String(byId('filter-window').value || '24h|hour').split('|');
    return { since: encodeURIComponent(since), bucket: encodeURIComponent(bucket) };
  }

  // ---------- trends (inline SVG charts) ----------

  const colours = new Map();
  function colourOf(upstream) {
    if (!colours.has(upstream)) colours.set(upstream, PALETTE[colours.size % PALETTE.length]);
    return colours.get(upstream);
  }

  // Bucket start as a short label: `HH:MM` for minute/hour buckets within a
  // day, `MM-DD` for days.
  function bucketLabel(ms, bucketMs) {
    const d = new Date(ms);
    if (bucketMs >= 86400000) return `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }

  const ms = (v) => (isNum(v) ? `${Math.round(v)} ms` : '–');
  const pct = (ppm) => (isNum(ppm) ? `${(ppm / 1e4).toFixed(1)}%` : '–');
  const tps = (v) => (isNum(v) ? `${v.toFixed(1)} tok/s` : '–');

  // The metrics drawn per upstream: a p50 line, and a dashed p95 line when
  // the metric has one.
  const METRICS = [
    { id: 'latency', title: 'Latency (answered calls)', p50: 'latency_p50_ms', p95: 'latency_p95_ms', fmt: ms },
    { id: 'ttft', title: 'Time to first token (streams)', p50: 'ttft_p50_ms', p95: 'ttft_p95_ms', fmt: ms },
    { id: 'success', title: 'Attempt success rate', p50: 'success_ppm', fmt: pct, max: 1e6 },
    { id: 'failover', title: 'Failover rate (attempts that moved on)', p50: 'failover_ppm', fmt: pct, max: 1e6 },
    { id: 'tps', title: 'Output tokens per second (median)', p50: 'tokens_per_second_p50', fmt: tps },
  ];

  const CW = 440, CH = 180, CL = 64, CR = 10, CT = 12, CB = 28;

  // A chart frame: the svg with its title and description, axes, y labels
  // and x labels for [x0, x1].
  function frame(id, title, desc, yMax, fmt, x0, x1, bucketMs) {
    const root = svg('svg', {
      viewBox: `0 0 ${CW} ${CH}`, role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`,
      'data-testid': `trend-svg-${id}`,
    });
    root.appendChild(svg('title', { id: `${id}-title` }, title));
    root.appendChild(svg('desc', { id: `${id}-desc` }, desc));
    const plotH = CH - CT - CB;
    root.appendChild(svg('line', { class: 'axis', x1: CL, y1: CT + plotH, x2: CW - CR, y2: CT + plotH }));
    root.appendChild(svg('line', { class: 'axis', x1: CL, y1: CT, x2: CL, y2: CT + plotH }));
    root.appendChild(svg('line', { class: 'grid', x1: CL, y1: CT + plotH / 2, x2: CW - CR, y2: CT + plotH / 2 }));
    root.appendChild(svg('text', { class: 'label', x: CL - 6, y: CT + 4, 'text-anchor': 'end' }, fmt(yMax)));
    root.appendChild(svg('text', { class: 'label', x: CL - 6, y: CT + plotH, 'text-anchor': 'end' }, fmt(0)));
    const ticks = 4;
    for (let i = 0; i <= ticks; i += 1) {
      const t = x0 + ((x1 - x0) * i) / ticks;
      root.appendChild(svg('text', {
        class: 'label', x: (CL + ((CW - CL - CR) * i) / ticks).toFixed(1), y: CH - 8,
        'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle',
      }, bucketLabel(Math.round(t / bucketMs) * bucketMs, bucketMs)));
    }
    return root;
  }

  const xOf = (t, x0, x1) => CL + ((CW - CL - CR) * (x1 > x0 ? (t - x0) / (x1 - x0) : 0.5));
  const yOf = (v, max) => CT + (CH - CT - CB) * (1 - Math.min(1, Math.max(0, v) / max));

  // A figure: caption, the chart (focusable, described), and a data table
  // alternative in a <details>.
  function figure(id, title, chart, headers, rows) {
    const fig = el('figure', { class: 'trend', 'data-testid': `trend-${id}` });
    fig.appendChild(el('figcaption', { id: `${id}-cap` }, title));
    const box = el('div', { class: 'chart', tabindex: '0', 'aria-describedby': `${id}-cap` });
    box.appendChild(chart);
    fig.appendChild(box);
    const details = el('details', { 'data-testid': `trend-table-${id}` });
    details.appendChild(el('summary', null, 'Show as a table'));
    const table = el('table');
    const head = el('tr');
    for (const h of headers) head.appendChild(el('th', { scope: 'col' }, h));
    const thead = el('thead');
    thead.appendChild(head);
    const body = el('tbody');
    for (const r of rows) {
      const tr = el('tr');
      r.forEach((v, i) => tr.appendChild(el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : { class: 'num' }, v)));
      body.appendChild(tr);
    }
    table.append(thead, body);
    details.appendChild(table);
    fig.appendChild(details);
    return fig;
  }

  function metricChart(m, ups, x0, x1, bucketMs) {
    const values = [];
    for (const u of ups) for (const p of u.points) for (const k of [m.p50, m.p95]) if (k && isNum(p[k])) values.push(p[k]);
    const max = m.max || Math.max(1, ...values) * 1.1;
    const withData = ups.filter((u) => u.points.some((p) => isNum(p[m.p50])));
    const desc = withData.length === 0
      ? 'No data in this window.'
      : withData.map((u) => {
        const last = [...u.points].reverse().find((p) => isNum(p[m.p50]));
        return `${u.upstream}: latest ${m.fmt(last[m.p50])}${m.p95 && isNum(last[m.p95]) ? `, p95 ${m.fmt(last[m.p95])}` : ''}`;
      }).join('; ') + '.';
    const root = frame(`trend-${m.id}`, m.title, desc, max, m.fmt, x0, x1, bucketMs);
    if (withData.length === 0) {
      root.appendChild(svg('text', { class: 'label', x: CW / 2, y: CH / 2, 'text-anchor': 'middle' }, 'No data yet'));
    }
    for (const u of withData) {
      const colour = colourOf(u.upstream);
      for (const [key, dashed] of [[m.p50, false], [m.p95, true]]) {
        if (!key) continue;
        const pts = u.points.filter((p) => isNum(p[key]));
        if (pts.length === 0) continue;
        const half = bucketMs / 2;
        const d = pts.map((p, i) => `${i ? 'L' : 'M'}${xOf(p.bucket_start_ms + half, x0, x1).toFixed(1)},${yOf(p[key], max).toFixed(1)}`).join(' ');
        root.appendChild(svg('path', {
          d, class: dashed ? 'line p95' : 'line', stroke: colour,
          'data-testid': 'trend-line', 'data-upstream': u.upstream, 'data-metric': m.id, 'data-percentile': dashed ? 'p95' : 'p50',
        }));
        for (const p of pts) {
          const dot = svg('circle', {
            cx: xOf(p.bucket_start_ms + half, x0, x1).toFixed(1), cy: yOf(p[key], max).toFixed(1), r: dashed ? 2 : 3,
            fill: colour, 'data-testid': 'trend-point', 'data-upstream': u.upstream,
          });
          dot.appendChild(svg('title', null, `${u.upstream} ${bucketLabel(p.bucket_start_ms, bucketMs)}: ${dashed ? 'p95 ' : ''}${m.fmt(p[key])}`));
          root.appendChild(dot);
        }
      }
    }
    const headers = ['Bucket', 'Upstream', m.p95 ? 'p50' : 'Value'].concat(m.p95 ? ['p95'] : []).concat(['Attempts']);
    const rows = [];
    for (const u of ups) {
      for (const p of u.points) {
        const r = [bucketLabel(p.bucket_start_ms, bucketMs), u.upstream, m.fmt(p[m.p50])];
        if (m.p95) r.push(m.fmt(p[m.p95]));
        r.push(String(p.attempts));
        rows.push(r);
      }
    }
    return figure(m.id, m.title, root, headers, rows);
  }

  function spendChart(spend, x0, x1, bucketMs) {
    const val = (v) => (isNum(v) && v > 0 ? v : 0);
    const max = Math.max(1, ...spend.map((p) => Math.max(val(p.cost_usd_micros), val(p.saved_usd_micros))));
    const total = (k) => spend.reduce((a, p) => a + val(p[k]), 0);
    const desc = spend.length === 0
      ? 'No calls in this window.'
      : `${spend.length} buckets with calls: spend ${usd(total('cost_usd_micros'))}, saved ${usd(total('saved_usd_micros'))}.`;
    const title = 'Spend and saved over time';
    const root = frame('trend-spend', title, desc, max, (v) => usd(Math.round(v)), x0, x1, bucketMs);
    const slot = Math.max(4, ((CW - CL - CR) * bucketMs) / Math.max(bucketMs, x1 - x0));
    const bar = Math.max(1.5, Math.min(14, slot * 0.35));
    for (const p of spend) {
      const cx = xOf(p.bucket_start_ms + bucketMs / 2, x0, x1);
      [['spend', p.cost_usd_micros, -bar - 0.5], ['saved', p.saved_usd_micros, 0.5]].forEach(([kind, v, dx]) => {
        const h = (val(v) / max) * (CH - CT - CB);
        const rect = svg('rect', {
          class: `bar ${kind}`, x: (cx + dx).toFixed(1), y: (CH - CB - h).toFixed(1), width: bar.toFixed(1), height: h.toFixed(1),
          'data-testid': `trend-bar-${kind}`, 'data-bucket': p.bucket_start_ms,
        });
        rect.appendChild(svg('title', null, `${bucketLabel(p.bucket_start_ms, bucketMs)}: ${kind} ${usd(v)}`));
        root.appendChild(rect);
      });
    }
    const rows = spend.map((p) => [
      bucketLabel(p.bucket_start_ms, bucketMs), String(p.calls), String(p.failed_over_calls), usd(p.cost_usd_micros), usd(p.saved_usd_micros),
    ]);
    return figure('spend', title, root, ['Bucket', 'Calls', 'Failed over', 'Spend', 'Saved'], rows);
  }

  function renderSeries(data) {
    const ups = Array.isArray(data && data.upstreams) ? data.upstreams : [];
    const spend = Array.isArray(data && data.spend) ? data.spend : [];
    const bucketMs = isNum(data && data.bucket_ms) && data.bucket_ms > 0 ? data.bucket_ms : 3600000;
    const now = Date.now();
    const x0 = Math.floor((isNum(data && data.since_ms) ? data.since_ms : now - 86400000) / bucketMs) * bucketMs;
    const x1 = (Math.floor(now / bucketMs) + 1) * bucketMs;
    for (const u of ups) {
      noteOption('upstream', u.upstream);
      colourOf(u.upstream);
    }
    const legend = ups.map((u) => {
      const li = el('li', { 'data-testid': 'trends-legend-item', 'data-upstream': u.upstream });
      const sw = el('span', { class: 'swatch' });
      sw.style.background = colourOf(u.upstream);
      li.append(sw, document.createTextNode(u.upstream));
      return li;
    });
    if (ups.length) {
      const li = el('li', { class: 'muted' });
      li.appendChild(document.createTextNode('solid p50 · dashed p95'));
      legend.push(li);
    }
    byId('trends-legend').replaceChildren(...legend);
    const calls = spend.reduce((a, p) => a + (isNum(p.calls) ? p.calls : 0), 0);
    const failedOver = spend.reduce((a, p) => a + (isNum(p.failed_over_calls) ? p.failed_over_calls : 0), 0);
    byId('trends-summary').textContent = `${plural(calls, 'call')} in the window, ${failedOver} failed over, ${plural(ups.length, 'upstream')} tried`
      + (data && data.truncated ? ' (per-upstream figures from the newest calls only)' : '') + '.';
    byId('trends-summary').setAttribute('data-calls', String(calls));
    const figures = [spendChart(spend, x0, x1, bucketMs)].concat(METRICS.map((m) => metricChart(m, ups, x0, x1, bucketMs)));
    // Keep open tables open across refreshes.
    const open = new Set([...document.querySelectorAll('#trend-charts details[open]')].map((d) => d.getAttribute('data-testid')));
    for (const f of figures) {
      const d = f.querySelector('details');
      if (d && open.has(d.getAttribute('data-testid'))) d.open = true;
    }
    // A focused chart keeps the focus across the refresh.
    const active = document.activeElement;
    const focused = active && active.closest ? active.closest('#trend-charts figure') : null;
    const focusedId = focused && active.classList.contains('chart') ? focused.getAttribute('data-testid') : null;
    byId('trend-charts').replaceChildren(...figures);
    if (focusedId) {
      const again = document.querySelector(`#trend-charts figure[data-testid="${focusedId}"] .chart`);
      if (again) again.focus();
    }
  }

  // ---------- call detail ----------

  function fact(list, name, value, testid) {
    list.appendChild(el('dt', null, name));
    list.appendChild(el('dd', testid ? { 'data-testid': testid } : null, value));
  }

  const tokens = (v) => (isNum(v) ? String(v) : '?');

  async function openCall(id, opener) {
    const dialog = byId('call-detail');
    const error = byId('call-detail-error');
    const facts = byId('call-detail-facts');
    const body = byId('call-detail-attempts');
    dialog.setAttribute('data-call-id', String(id));
    dialog.setAttribute('data-state', 'loading');
    byId('call-detail-h').textContent = 'Call';
    facts.replaceChildren();
    body.replaceChildren();
    error.hidden = true;
    if (!dialog.open) dialog.showModal();
    dialog.addEventListener('close', () => {
      const row = [...byId('calls-body').children].find((tr) => tr.getAttribute('data-call-id') === String(id));
      const back = row ? row.querySelector('[data-testid="call-open"]') : opener;
      if (back && document.contains(back)) back.focus();
    }, { once: true });
    try {
      const c = await getJson(`/v1/calls/${encodeURIComponent(id)}`);
      byId('call-detail-h').textContent = `${c.model} call at ${clock(c.started_at_ms)}`;
      fact(facts, 'Outcome', c.failed_over ? `${c.outcome} (failed over)` : c.outcome, 'detail-outcome');
      fact(facts, 'Answered by', c.winner || 'nobody', 'detail-winner');
      fact(facts, 'Model', c.requested_model && c.requested_model !== c.model ? `${c.requested_model} → ${c.model}` : c.model);
      fact(facts, 'Client protocol', c.upstream_protocol ? `${c.protocol} (upstream spoke ${c.upstream_protocol})` : c.protocol);
      fact(facts, 'Latency', ms(c.latency_ms), 'detail-latency');
      fact(facts, 'Time to first token', ms(c.ttft_ms));
      fact(facts, 'Tokens in / cached / out', `${tokens(c.input_tokens)} / ${tokens(c.cached_input_tokens)} / ${tokens(c.output_tokens)}`, 'detail-tokens');
      fact(facts, 'Tokens per second', tps(c.tokens_per_second));
      fact(facts, 'Cost', isNum(c.cost_usd_micros) ? `${usd(c.cost_usd_micros)} (${c.balance_source})` : '$?', 'detail-cost');
      fact(facts, 'Saved', isNum(c.saved_usd_micros) ? `${usd(c.saved_usd_micros)} vs ${c.baseline_kind || '?'} ${usd(c.baseline_usd_micros)}` : '–', 'detail-saved');
      fact(facts, 'Request id', c.request_id);
      const attempts = Array.isArray(c.attempts) ? c.attempts : [];
      const rows = attempts.map((a, i) => {
        const next = attempts[i + 1];
        let then = 'answered the client';
        if (next) then = next.upstream === a.upstream ? 'retried on the same upstream' : `failed over to ${next.upstream}`;
        else if (a.outcome !== 'ok') then = 'gave up';
        const tr = el('tr', { 'data-testid': 'detail-attempt', 'data-upstream': a.upstream, 'data-outcome': a.outcome });
        tr.appendChild(el('th', { scope: 'row' }, String(i + 1)));
        tr.appendChild(el('td', { 'data-testid': 'detail-attempt-upstream' }, a.upstream));
        tr.appendChild(el('td', null, a.status ?? '–'));
        tr.appendChild(el('td', { class: `outcome-${a.outcome === 'ok' ? 'ok' : 'failed'}`, 'data-testid': 'detail-attempt-outcome' }, a.outcome));
        tr.appendChild(el('td', { class: 'num' }, ms(a.latency_ms)));
        tr.appendChild(el('td', null, then));
        return tr;
      });
      body.replaceChildren(...rows);
      dialog.setAttribute('data-state', 'loaded');
    } catch (e) {
      error.textContent = `Could not load the call: ${e && e.message ? e.message : e}`;
      error.hidden = false;
      dialog.setAttribute('data-state', 'error');
    }
  }

  // ---------- refresh loop ----------

  let tick = 0;

  async function refresh() {
    const gen = filterGen;
    const q = filterQuery();
    const { since, bucket } = windowChoice();
    const current = (render) => (data) => {
      // A filter changed while this was in flight: its answer is stale.
      if (gen === filterGen) render(data);
    };
    const jobs = [
      ['/v1/status', renderStatus],
      ['/v1/usage?by=day&since=7d', renderUsage],
      ['/v1/usage?by=member&since=7d', renderMembers],
      [`/v1/calls?limit=20${q}`, current(renderCalls)],
      ['/v1/upstreams', renderUpstreams],
      ['/v1/credit', renderCredit],
      ['/v1/purchases/pending', renderPayments],
    ];
    // A window of days reads every call of it (docs/performance.md): its
    // trends follow every 5th refresh, or at once after a filter change.
    if (seriesDue || !/d$/.test(decodeURIComponent(since)) || tick % SLOW_EVERY === 0) {
      seriesDue = false;
      jobs.push([`/v1/series?since=${since}&bucket=${bucket}${q}`, current(renderSeries)]);
    }
    if (tick % SLOW_EVERY === 0) {
      jobs.push(
        ['/v1/sellers?since=7d', renderSellers],
        ['/v1/sellers/audit?since=7d', renderAudit],
        ['/v1/install', renderClients],
        ['/v1/trust', renderTrust],
      );
    }
    if (tick % DOCTOR_EVERY === 0) jobs.push(['/v1/doctor', renderDoctor]);
    tick += 1;
    const results = await Promise.allSettled(jobs.map(async ([path, render]) => render(await getJson(path))));
    const errors = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason && r.reason.message ? r.reason.message : r.reason));
    const banner = byId('load-error');
    banner.textContent = errors.length ? `Could not load: ${errors.join('; ')}` : '';
    banner.hidden = errors.length === 0;
    byId('last-updated').textContent = new Date().toLocaleTimeString();
    const main = byId('main');
    main.setAttribute('data-loaded', 'true');
    main.setAttribute('data-refreshes', String(tick));
  }

  let timer = null;

  // One refresh, then the next in REFRESH_MS; a hidden tab schedules
  // nothing (it resumes when shown).
  async function loop() {
    timer = null;
    if (document.hidden) return;
    try {
      await refresh();
    } catch (e) {
      // Rendering bugs must not stop the loop.
      console.error(e);
    }
    if (!document.hidden && timer === null) timer = setTimeout(loop, REFRESH_MS);
  }

  // Refresh now (a filter changed, the tab came back), then keep going.
  function refreshNow() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    loop();
  }

  function start() {
    loadToken();
    tokenInput.addEventListener('input', saveToken);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refreshNow();
    });
    const form = byId('filters');
    const changed = () => {
      filterGen += 1;
      seriesDue = true;
      refreshNow();
    };
    form.addEventListener('change', changed);
    // `reset` fires before the controls change back.
    form.addEventListener('reset', () => setTimeout(changed, 0));
    form.addEventListener('submit', (e) => e.preventDefault());
    byId('call-detail-close').addEventListener('click', () => byId('call-detail').close());
    loop();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
