// Headless-Chromium check of the tokenbuddy dashboard (tb-control's
// assets), run against a live control plane.
//
//   node dashboard_check.mjs      (with `playwright-core` resolvable)
//
// Environment:
//   DASHBOARD_URL  the control plane's base URL, e.g. http://127.0.0.1:7879/
//   ACCESS_TOKEN   the daemon's access token (typed into the page)
//   EXPECT         JSON object of expected values; every key is optional:
//                    calls      number   summary "Calls" (last 7 days)
//                    spend      string   summary "Spend", e.g. "$0.002541"
//                    saved      string   summary "Saved", e.g. "$0.000500"
//                    circuits   object   upstream id -> "closed" | "open" | "half_open"
//                    client     string   client id to Install, then Undo
//                    model      string   a model shown in a recent-call row
//                    chain      string   a failover chain shown in a row, e.g. "s-bad→s-good"
//                    credit     null     the credit section must be hidden (manual mode)
//                    sellers    string[] seller ids with a credit row
//                    wasted     object   seller id -> its "Wasted" cell, e.g. "1.000000";
//                                        the key "*" is the totals row's
//                    audited    object   seller id -> finding kind ("times_100",
//                                        "div_100", "over_billing", "under_billing")
//                                        or null: a seller-audit row each, flagged
//                                        with that kind or not at all
//                    audit_wasted object seller id -> its seller-audit "Wasted" cell
//                    doctor     boolean  at least one doctor verdict is shown
//                    payments   object   seller id -> the pay URL its pending payment
//                                        shows (a link) with a drawn QR code
//                    trends     object   {upstreams: ids with a legend entry and a
//                                        success-rate line, answered: ids with a
//                                        latency line, failover: id with a
//                                        failover-rate line}
//                    filter     object   {name, value, rows}: choosing value in the
//                                        filter-<name> select narrows the calls
//                                        table to `rows` rows (and the trends to
//                                        as many calls); Clear filters undoes it
//                    detail     object   {chain: [upstream…], outcomes: [outcome…]}:
//                                        the Details button (keyboard) of the row
//                                        with that chain opens the attempt chain
//                    live       object   {proxy_url, token, body}: this script POSTs
//                                        body to <proxy_url>/v1/chat/completions;
//                                        the page shows the new call without reload
//                    members    object   member ("-": the access token) -> {calls,
//                                        spend}: its row in the members table with
//                                        those cells, and a bar in its chart
//                    call_members object member ("-": the access token) ->
//                                        {rows, text}: that many recent-call rows
//                                        whose Member cell shows text
//   SCREENSHOT_DIR where to save one PNG per step (overview, filtered, detail,
//                  live), when set
//   SCREENSHOT     where to save a full-page PNG (taken at the end, pass or fail)
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
//   TIMEOUT_MS     how long to wait for each expectation (default 15000;
//                  the page refreshes every 2 s)
//
// Exit status 0 when every expectation held; otherwise each problem is
// printed on stderr and the status is 1 (2 for a usage error).
//
// Selectors: only the data-testid hooks of tb-control's dashboard.
//   dashboard (main; data-loaded="true" after the first refresh,
//     data-refreshes=<n>), status-line, load-error, last-updated
//   summary-calls, summary-spend, summary-saved, summary-unpriced
//   chart (container), chart-svg, chart-bar-spend / chart-bar-saved
//     (rect, data-day=<key>)
//   calls-table, calls-body, calls-empty, call-row (data-call-id) with
//     cells call-time, call-member (data-member; "-" for the access
//     token), call-endpoint, call-model, call-chain, call-latency,
//     call-cost, call-saved, call-flags, call-outcome
//   upstreams-table, upstreams-body, upstreams-scorer, upstreams-empty,
//     upstream-row (data-upstream-id) with upstream-id, upstream-kind,
//     upstream-circuit, upstream-status, upstream-health, upstream-score,
//     upstream-missing
//   members-section (hidden while only the access token made calls),
//     members-chart, members-chart-svg, members-bar (rect, data-member),
//     members-table, members-body, member-row (data-member; "-" for the
//     access token) with member-calls, member-spend; filter-member
//   credit-section (hidden when /v1/credit is null), credit-budget,
//     credit-table, credit-body, credit-row (data-seller-id) with
//     credit-seller, credit-purchases, credit-paid, credit-bought,
//     credit-spent, credit-remaining, credit-wasted; credit-total
//     (tfoot) with credit-total-row and the same cells as credit-total-*
//   sellers-section (hidden without seller calls), sellers-table,
//     sellers-body, seller-row (data-seller-id) with seller-id,
//     seller-calls, seller-failed, seller-settled, seller-estimated,
//     seller-drift, seller-wasted, seller-last-purchase; audit-list,
//     audit-flag (data-seller-id, data-kind) with audit-seller,
//     audit-kind, audit-message, audit-calls
//   access-token (password input; value kept in sessionStorage)
//   clients-table, clients-body, clients-status, client-row
//     (data-client-id) with client-name, client-detected,
//     client-configured (data-configured="true"|"false"), client-install,
//     client-undo, client-result (data-state="idle"|"pending"|"ok"|"error")
//   payments-section (hidden when nothing is pending), payments-list,
//     payment-row (data-seller-id) with payment-what, payment-url (a),
//     payment-expires, payment-qr (svg of rects), payment-recharge
//   doctor-overall (data-ok), doctor-list, doctor-check (data-check-name)
//     with doctor-verdict

import { chromium } from 'playwright-core';
import path from 'node:path';

const url = process.env.DASHBOARD_URL;
const token = process.env.ACCESS_TOKEN || '';
const shot = process.env.SCREENSHOT;
const shotDir = process.env.SCREENSHOT_DIR;
const timeout = Number(process.env.TIMEOUT_MS || 15000);
let want;
try {
  want = JSON.parse(process.env.EXPECT || '{}');
} catch (e) {
  console.error(`EXPECT is not JSON: ${e.message}`);
  process.exit(2);
}
if (!url) {
  console.error('DASHBOARD_URL is required');
  process.exit(2);
}

const problems = [];
const notes = [];
const problem = (msg) => problems.push(msg);
const tid = (id) => `[data-testid="${id}"]`;
const attr = (name, value) => `[${name}=${JSON.stringify(String(value))}]`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `read` until `ok(value)` or the timeout; returns [held, lastValue].
async function until(read, ok, ms = timeout) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await read();
      if (ok(last)) return [true, last];
    } catch (e) {
      last = `<${e.message.split('\n')[0]}>`;
    }
    if (Date.now() > end) return [false, last];
    await sleep(200);
  }
}

async function expectText(page, selector, expected, what) {
  const loc = page.locator(selector).first();
  const [held, seen] = await until(async () => (await loc.textContent({ timeout: 1000 }))?.trim(), (v) => v === expected);
  if (!held) problem(`${what}: expected ${JSON.stringify(expected)}, page shows ${JSON.stringify(seen)}`);
}

async function expectRowWith(page, cell, expected, what) {
  const [held, seen] = await until(
    () => page.locator(`${tid('calls-body')} ${tid(cell)}`).allTextContents(),
    (texts) => texts.map((t) => t.trim()).includes(expected),
  );
  if (!held) problem(`recent calls: no row with ${what} ${JSON.stringify(expected)} (seen ${JSON.stringify(seen)})`);
}


async function stepShot(page, name) {
  if (!shotDir) return;
  try {
    await page.screenshot({ path: path.join(shotDir, `${name}.png`), fullPage: true });
  } catch (e) {
    problem(`screenshot ${name} failed: ${e.message.split('\n')[0]}`);
  }
}

const rowCount = (page) => page.locator(tid('call-row')).count();
const trendCalls = async (page) => Number(await page.locator(tid('trends-summary')).getAttribute('data-calls', { timeout: 1000 }));

// Trends, filters, the call detail and live updates (the dashboard views
// of /v1/series and /v1/calls/{id}).
async function dashboardViews(page) {
  const t = want.trends;
  if (t) {
    const line = (metric, up) => `${tid('trend-line')}${attr('data-metric', metric)}${attr('data-upstream', up)}`;
    for (const up of t.upstreams || []) {
      const [legend] = await until(() => page.locator(`${tid('trends-legend-item')}${attr('data-upstream', up)}`).count(), (n) => n === 1);
      if (!legend) problem(`trends: no legend entry for ${up}`);
      const [success] = await until(() => page.locator(line('success', up)).count(), (n) => n > 0);
      if (!success) problem(`trends: no success-rate line for ${up}`);
    }
    for (const up of t.answered || []) {
      const [lat] = await until(() => page.locator(line('latency', up)).count(), (n) => n >= 2);
      if (!lat) problem(`trends: no latency p50 and p95 lines for ${up}`);
    }
    if (t.failover) {
      const [held, seen] = await until(async () => {
        const d = await page.locator(line('failover', t.failover)).first().getAttribute('d', { timeout: 1000 });
        // The line is above the zero axis somewhere: a failover rate > 0.
        const ys = (d || '').split(/[ML ]/).filter(Boolean).map((p) => Number(p.split(',')[1]));
        return Math.min(...ys);
      }, (y) => y < 140);
      if (!held) problem(`trends: the failover line of ${t.failover} shows no failovers (min y ${seen})`);
    }
    const [bars] = await until(() => page.locator(`${tid('trend-bar-spend')}`).count(), (n) => n > 0);
    if (!bars) problem('trends: no spend bars');
    // Each chart has a text alternative and can be reached with the keyboard.
    const charts = await page.locator(`${tid('trend-charts')} figure`).count();
    if (charts < 6) problem(`trends: ${charts} charts, expected 6`);
    const a11y = await page.evaluate(() => [...document.querySelectorAll('#trend-charts figure')].map((f) => ({
      focusable: f.querySelector('.chart').tabIndex === 0,
      label: Boolean(f.querySelector('svg title') && f.querySelector('svg desc') && f.querySelector('svg desc').textContent.trim()),
      table: f.querySelectorAll('details table tbody tr').length,
    })));
    for (const [i, c] of a11y.entries()) {
      if (!c.focusable || !c.label) problem(`trends: chart ${i} lacks focus or a title/description`);
    }
    if (!a11y.some((c) => c.table > 0)) problem('trends: no chart has a table alternative with rows');
    await stepShot(page, 'overview');
  }

  const f = want.filter;
  if (f) {
    const select = page.locator(tid(`filter-${f.name}`));
    const [option] = await until(() => select.locator(`option${attr('value', f.value)}`).count(), (n) => n === 1);
    if (!option) problem(`filter: ${f.name} offers no ${f.value}`);
    const before = await rowCount(page);
    await select.selectOption(f.value);
    const [narrowed, seen] = await until(async () => ({ rows: await rowCount(page), trend: await trendCalls(page) }),
      (v) => v.rows === f.rows && v.trend === f.rows);
    if (!narrowed) problem(`filter: ${f.name}=${f.value} shows ${JSON.stringify(seen)}, expected ${f.rows} rows and trend calls`);
    if (f.name === 'model') {
      const models = (await page.locator(`${tid('calls-body')} ${tid('call-model')}`).allTextContents()).map((x) => x.trim());
      if (models.some((m) => m !== f.value)) problem(`filter: rows for other models shown: ${JSON.stringify(models)}`);
    }
    await stepShot(page, 'filtered');
    await page.locator(tid('filter-clear')).click();
    const [cleared, after] = await until(() => rowCount(page), (n) => n === before);
    if (!cleared) problem(`filter: Clear filters shows ${after} rows, expected ${before}`);
  }

  const d = want.detail;
  if (d) {
    const chain = d.chain.join('→');
    const row = page.locator(tid('call-row')).filter({ has: page.locator(tid('call-chain'), { hasText: chain }) }).first();
    const [present] = await until(() => row.count(), (n) => n === 1);
    if (!present) {
      problem(`detail: no row with chain ${chain}`);
    } else {
      await row.locator(tid('call-open')).focus();
      await page.keyboard.press('Enter');
      const dialog = page.locator(tid('call-detail'));
      const [loaded, state] = await until(() => dialog.getAttribute('data-state', { timeout: 1000 }), (s) => s === 'loaded');
      if (!loaded) problem(`detail: the dialog is ${state}: ${await page.locator(tid('call-detail-error')).textContent()}`);
      const attempts = await page.locator(tid('detail-attempt')).evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-upstream'), r.getAttribute('data-outcome')]));
      const wantAttempts = d.chain.map((u, i) => [u, d.outcomes[i]]);
      if (JSON.stringify(attempts) !== JSON.stringify(wantAttempts)) {
        problem(`detail: attempts ${JSON.stringify(attempts)}, expected ${JSON.stringify(wantAttempts)}`);
      }
      const winner = (await page.locator(tid('detail-winner')).textContent()).trim();
      if (winner !== d.chain[d.chain.length - 1]) problem(`detail: answered by ${winner}`);
      await stepShot(page, 'detail');
      await page.keyboard.press('Escape');
      const [closed] = await until(() => dialog.evaluate((e) => !e.open), (c) => c === true);
      if (!closed) problem('detail: Escape did not close the dialog');
      const back = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('data-testid'));
      if (back !== 'call-open') problem(`detail: focus went to ${back}, not back to the Details button`);
    }
  }

  const l = want.live;
  if (l) {
    await page.evaluate(() => { window.__tbNoReload = 'same page'; });
    const rows = await rowCount(page);
    const [, calls] = await until(() => trendCalls(page), (n) => Number.isFinite(n));
    const res = await fetch(`${l.proxy_url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${l.token}` },
      body: JSON.stringify(l.body),
    });
    await res.arrayBuffer();
    if (!res.ok) problem(`live: the new call answered ${res.status}`);
    const [updated, seen] = await until(async () => ({ rows: await rowCount(page), calls: await trendCalls(page) }),
      (v) => v.calls === calls + 1 && v.rows === Math.min(20, rows + 1));
    if (!updated) problem(`live: after a new call the page shows ${JSON.stringify(seen)} (before: ${rows} rows, ${calls} calls)`);
    const same = await page.evaluate(() => window.__tbNoReload);
    if (same !== 'same page') problem('live: the page was reloaded');
    await stepShot(page, 'live');
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on('pageerror', (e) => problem(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // A CSP violation means inline code or a foreign resource: a real bug.
    if (/Content Security Policy/i.test(text)) problem(`CSP violation: ${text}`);
    else notes.push(`console error: ${text}`);
  });

  const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout });
  if (!res || !res.ok()) throw new Error(`GET ${url} answered ${res ? res.status() : 'nothing'}`);
  const csp = res.headers()['content-security-policy'];
  if (!csp || !csp.includes("default-src 'self'")) problem(`the page's CSP is ${JSON.stringify(csp)}`);

  await page.waitForSelector(`${tid('dashboard')}[data-loaded="true"]`, { timeout });
  const banner = page.locator(tid('load-error'));
  if (await banner.isVisible()) problem(`the page reports: ${(await banner.textContent()).trim()}`);

  // Summary (last 7 days).
  if (want.calls !== undefined) await expectText(page, tid('summary-calls'), String(want.calls), 'summary calls');
  if (want.spend !== undefined) await expectText(page, tid('summary-spend'), want.spend, 'summary spend');
  if (want.saved !== undefined) await expectText(page, tid('summary-saved'), want.saved, 'summary saved');

  // Chart.
  const chart = page.locator(`${tid('chart')} ${tid('chart-svg')}`);
  if ((await chart.count()) !== 1) problem('the spend vs saved chart is missing');
  else if (Number(want.calls) > 0) {
    const [held] = await until(() => page.locator(`${tid('chart-svg')} rect${tid('chart-bar-spend')}`).count(), (n) => n > 0);
    if (!held) problem('the chart has no bars although there were calls');
  }

  // Recent calls.
  const [haveCalls, rows] = await until(() => page.locator(tid('call-row')).count(), (n) => n > 0);
  if (!haveCalls && Number(want.calls) > 0) problem(`recent calls: no rows (seen ${rows})`);
  if (want.model !== undefined) await expectRowWith(page, 'call-model', want.model, 'model');
  if (want.chain !== undefined) await expectRowWith(page, 'call-chain', want.chain, 'chain');
  // Data is text, never markup.
  const injected = await page.evaluate(
    () => window.__xss !== undefined || document.querySelector('[data-testid="calls-body"] img, [data-testid="calls-body"] script') !== null,
  );
  if (injected) problem('call data was rendered as HTML');

  // Upstream circuits.
  for (const [id, state] of Object.entries(want.circuits || {})) {
    await expectText(page, `${tid('upstream-row')}${attr('data-upstream-id', id)} ${tid('upstream-circuit')}`, state, `upstream ${id} circuit`);
  }

  // Credit.
  if (want.credit === null) {
    const [held] = await until(() => page.locator(tid('credit-section')).isHidden(), (h) => h === true);
    if (!held) problem('the credit section is shown although /v1/credit is null');
  }
  for (const seller of want.sellers || []) {
    const [held] = await until(() => page.locator(`${tid('credit-row')}${attr('data-seller-id', seller)}`).count(), (n) => n === 1);
    if (!held) problem(`credit: no row for seller ${seller}`);
  }
  for (const [seller, text] of Object.entries(want.wasted || {})) {
    const selector = seller === '*'
      ? `${tid('credit-total-row')} ${tid('credit-total-wasted')}`
      : `${tid('credit-row')}${attr('data-seller-id', seller)} ${tid('credit-wasted')}`;
    await expectText(page, selector, text, `credit wasted on ${seller === '*' ? 'all sellers' : seller}`);
  }

  // Seller audit.
  for (const [seller, kind] of Object.entries(want.audited || {})) {
    const [row] = await until(() => page.locator(`${tid('seller-row')}${attr('data-seller-id', seller)}`).count(), (n) => n === 1);
    if (!row) problem(`seller audit: no row for seller ${seller}`);
    const flag = `${tid('audit-flag')}${attr('data-seller-id', seller)}`;
    if (kind === null) {
      const [clear] = await until(() => page.locator(flag).count(), (n) => n === 0);
      if (!clear) problem(`seller audit: ${seller} is flagged but should not be`);
    } else {
      await expectText(page, `${flag} ${tid('audit-kind')}`, kind, `seller audit: ${seller} flag`);
    }
  }

  for (const [seller, text] of Object.entries(want.audit_wasted || {})) {
    await expectText(page, `${tid('seller-row')}${attr('data-seller-id', seller)} ${tid('seller-wasted')}`, text, `seller audit: wasted on ${seller}`);
  }

  // Pending wallet payments: the link and a QR code of many modules.
  for (const [seller, payUrl] of Object.entries(want.payments || {})) {
    const row = `${tid('payment-row')}${attr('data-seller-id', seller)}`;
    const [held, seen] = await until(async () => {
      const link = page.locator(`${row} ${tid('payment-url')}`).first();
      const href = await link.getAttribute('href', { timeout: 1000 });
      const modules = await page.locator(`${row} ${tid('payment-qr')} rect`).count();
      return { href, modules };
    }, (v) => v.href === payUrl && v.modules > 100);
    if (!held) problem(`payments: ${seller} should link ${payUrl} with a QR code, seen ${JSON.stringify(seen)}`);
  }

  // Doctor.
  if (want.doctor) {
    const [held] = await until(() => page.locator(tid('doctor-verdict')).count(), (n) => n > 0);
    if (!held) problem('doctor: no verdicts shown');
  }

  // Clients: install, then undo (the undo through the keyboard).
  if (want.client !== undefined) {
    const row = page.locator(`${tid('client-row')}${attr('data-client-id', want.client)}`);
    const [present] = await until(() => row.count(), (n) => n === 1);
    if (!present) {
      problem(`clients: no row for ${want.client}`);
    } else {
      await page.locator(tid('access-token')).fill(token);
      const stored = await page.evaluate(() => sessionStorage.getItem('tokenbuddy.accessToken'));
      if (stored !== token) problem('the access token was not kept in sessionStorage');
      const configured = row.locator(tid('client-configured'));
      const result = row.locator(tid('client-result'));
      const step = async (label, act, wantConfigured) => {
        await act();
        const [done, state] = await until(
          async () => ({ configured: await configured.getAttribute('data-configured'), result: await result.getAttribute('data-state') }),
          (s) => s.configured === String(wantConfigured) && s.result === 'ok',
        );
        if (!done) {
          problem(`clients: after ${label} ${want.client} shows configured=${state && state.configured}, result ${JSON.stringify((await result.textContent()).trim())}`);
        }
        return done;
      };
      const installed = await step('Install', () => row.locator(tid('client-install')).click(), true);
      if (installed) {
        await step('Undo', async () => {
          await row.locator(tid('client-undo')).focus();
          await page.keyboard.press('Enter');
        }, false);
      }
    }
  }

  // Members: a table row and a spend bar per member.
  if (want.members) {
    const section = page.locator(tid('members-section'));
    const [shown] = await until(() => section.isVisible(), (v) => v === true);
    if (!shown) problem('members: the section is hidden');
    for (const [member, m] of Object.entries(want.members)) {
      const row = page.locator(`${tid('member-row')}${attr('data-member', member)}`);
      const [held, seen] = await until(async () => ((await row.count()) === 1
        ? { calls: (await row.locator(tid('member-calls')).textContent()).trim(),
          spend: (await row.locator(tid('member-spend')).textContent()).trim() }
        : null), (v) => v && v.calls === String(m.calls) && v.spend === m.spend);
      if (!held) problem(`members: ${member} shows ${JSON.stringify(seen)}, expected ${JSON.stringify(m)}`);
      const bars = await page.locator(`${tid('members-bar')}${attr('data-member', member)}`).count();
      if (bars !== 1) problem(`members: ${member} has ${bars} bars in the spend chart`);
    }
    await stepShot(page, 'members');
  }

  // The recent calls name the member whose key made each call.
  if (want.call_members) {
    for (const [member, m] of Object.entries(want.call_members)) {
      const cells = page.locator(`${tid('calls-body')} ${tid('call-member')}${attr('data-member', member)}`);
      const [held, seen] = await until(async () => {
        const texts = (await cells.allTextContents()).map((t) => t.trim());
        return { rows: texts.length, texts };
      }, (v) => v.rows === m.rows && v.texts.every((t) => t === m.text));
      if (!held) problem(`call members: ${member} shows ${JSON.stringify(seen)}, expected ${m.rows} rows reading ${JSON.stringify(m.text)}`);
    }
    const header = page.locator(`${tid('calls-table')} thead th`);
    const headers = (await header.allTextContents()).map((t) => t.trim());
    if (!headers.includes('Member')) problem(`call members: the calls table has no Member column: ${JSON.stringify(headers)}`);
  }

  if (want.trends || want.filter || want.detail || want.live) await dashboardViews(page);

  // Provider trust: the probe's verdicts per check and what routing does.
  if (want.trust) {
    const t = want.trust;
    const row = page.locator(`${tid('trust-row')}${attr('data-upstream-id', t.upstream)}`);
    const [present] = await until(() => row.count(), (n) => n === 1);
    if (!present) {
      problem(`trust: no row for ${t.upstream}`);
    } else {
      for (const [check, verdict] of Object.entries(t.verdicts)) {
        const cell = row.locator(tid(`trust-${check}`));
        const seen = await cell.getAttribute('data-verdict');
        if (seen !== verdict) problem(`trust ${t.upstream} ${check}: expected ${verdict}, page shows ${seen}`);
        const label = await cell.getAttribute('aria-label');
        if (!label || !label.startsWith(check.replace('_', ' '))) problem(`trust ${t.upstream} ${check}: aria-label ${JSON.stringify(label)}`);
      }
      for (const [check, text] of Object.entries(t.texts || {})) {
        await expectText(page, `${tid('trust-row')}${attr('data-upstream-id', t.upstream)} ${tid(`trust-${check}`)}`, text, `trust ${t.upstream} ${check}`);
      }
      const routing = ((await row.locator(tid('trust-routing')).textContent()) || '').trim();
      if (!routing.includes(t.routing)) problem(`trust ${t.upstream}: routing says ${JSON.stringify(routing)}, want ${JSON.stringify(t.routing)}`);
    }
    if (t.trusted) {
      await expectText(page, `${tid('trust-row')}${attr('data-upstream-id', t.trusted)} ${tid('trust-routing')}`, 'trusted', `trust ${t.trusted}`);
    }
    await stepShot(page, 'trust');
  }

  // Every form control and button has an accessible name.
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('input, button, select')]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map((e) => e.outerHTML.slice(0, 80)));
  for (const u of unnamed) problem(`control without an accessible name: ${u}`);
} catch (e) {
  problem(`check aborted: ${e.message.split('\n')[0]}`);
} finally {
  if (page && shot) {
    try {
      await page.screenshot({ path: shot, fullPage: true });
    } catch (e) {
      problem(`screenshot failed: ${e.message.split('\n')[0]}`);
    }
  }
  await browser.close();
}

for (const n of notes) console.error(`note: ${n}`);
if (problems.length) {
  for (const p of problems) console.error(`FAIL: ${p}`);
  console.error(`${problems.length} problem(s) on ${url}`);
  process.exit(1);
}
console.log(`dashboard check passed on ${url}${shot ? ` (screenshot: ${shot})` : ''}`);
