// Browser scenarios for the SDK tests (tests/tests/browser.rs): each drives headless Debian
// Chromium through playwright-core against a real `braid serve`, which serves the SDK files and
// takes the events. The document itself is fulfilled by the test (page.route), at the server's
// origin, so the SDK loads first-party. Faults (503, 429, network errors) are injected at the
// browser's network layer for the first requests only; the rest go through to the real server.
//
//   node run.mjs <scenario>   with BRAID_URL and BRAID_KEY set; prints one JSON object.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const base = process.env.BRAID_URL;
const key = process.env.BRAID_KEY;
const snippet = readFileSync(join(root, 'sdk-js/dist/snippet.min.js'), 'utf8');

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function html(options, body = '') {
  return `<!doctype html><html><head><title>Braid test page</title>
<script>${snippet}
braid.load(${JSON.stringify(key)}, ${JSON.stringify(options)});
</script></head><body>${body}</body></html>`;
}

async function browser() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ARGS });
}

// Serves `pages` (path → html) at the server's origin and counts /v1/batch requests; `fault(n)`
// may answer the n-th batch request (from 1) instead of the server.
async function context(b, pages, fault = () => null, stalled = []) {
  const ctx = await b.newContext();
  const log = { batches: [], statuses: [] };
  await ctx.route(`${base}/test/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    const page = pages[path];
    return page ? route.fulfill({ status: 200, contentType: 'text/html', body: page }) : route.fulfill({ status: 404 });
  });
  await ctx.route(`${base}/v1/batch*`, async (route) => {
    const n = log.batches.length + 1;
    const body = JSON.parse(route.request().postData());
    log.batches.push({ at: Date.now(), events: body.batch.map((e) => e.messageId) });
    const answer = fault(n, body);
    if (answer === 'abort') return route.abort('internetdisconnected');
    if (answer === 'stall') return stalled.push(route);
    if (answer) {
      log.statuses.push(answer.status);
      return route.fulfill(answer);
    }
    const response = await route.fetch();
    log.statuses.push(response.status());
    return route.fulfill({ response });
  });
  return { ctx, log };
}

async function until(what, test, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('timed out waiting for ' + what);
}

const sent = (log) => log.batches.flatMap((b) => b.events);
// Stored events and records of batches sent by pages that went away.
const pending = (page) =>
  page.evaluate(() => Object.keys(localStorage).filter((k) => k.includes('.q.') || k.includes('.sent.')).length);
const storedKeys = (page) =>
  page.evaluate(() => Object.keys(localStorage).filter((k) => k.includes('.q.')).length);

// Segment's own browser SDK from npm, bundled into one script for an inline <script>.
async function analyticsNext() {
  const out = await build({
    stdin: {
      contents: "import { AnalyticsBrowser } from '@segment/analytics-next'; window.AnalyticsBrowser = AnalyticsBrowser;",
      resolveDir: here,
    },
    bundle: true,
    format: 'iife',
    minify: true,
    write: false,
    logLevel: 'error',
  });
  return out.outputFiles[0].text;
}

const scenarios = {
  // A site running @segment/analytics-next switches to Braid by changing only the host (inline
  // settings, as a site without Segment's CDN configures it).
  async segment(b) {
    const host = new URL(base).host;
    const settings = { integrations: { 'Segment.io': { apiKey: key, apiHost: host + '/v1', protocol: 'http' } } };
    const page_html = `<!doctype html><html><head><title>Segment site</title>
<script>${(await analyticsNext()).replace(/<\/script/g, '<\\/script')}</script>
<script>
  window.analytics = AnalyticsBrowser.load({ writeKey: ${JSON.stringify(key)}, cdnSettings: ${JSON.stringify(settings)} });
  analytics.page();
  analytics.identify('segment-user', { plan: 'enterprise' });
  analytics.track('Segment Event', { amount: 3 });
</script></head><body></body></html>`;
    const ctx = await b.newContext();
    const statuses = [];
    await ctx.route(`${base}/test/**`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: page_html }));
    ctx.on('response', (response) => {
      if (new URL(response.url()).pathname.startsWith('/v1/')) statuses.push(response.status());
    });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/test/segment.html`);
    await until('three answers', () => statuses.length >= 3).catch((e) => {
      throw new Error(e.message + ' ' + JSON.stringify({ statuses, errors }));
    });
    return { statuses, errors };
  },


  // Calls made before the SDK loads are queued by the snippet and replayed in order; the page
  // view of autoPage comes first; context is filled in.
  async snippet(b) {
    const pages = {
      '/test/snippet.html': html({ flushAt: 4 }, `<script>
        braid.identify('user-1', { email: 'Ada@Example.com', plan: 'pro' });
        braid.track('Early Click', { button: 'buy' });
        braid.ready(function () { window.readyCalled = true; });
        braid.track('Second Click');
      </script>`),
    };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/snippet.html?utm_source=news&utm_medium=email&utm_campaign=spring#top`);
    await until('the batch', () => log.statuses.includes(200));
    const state = await page.evaluate(() => ({
      ready: window.readyCalled === true,
      user: braid.user().id(),
      anon: braid.user().anonymousId(),
      traits: braid.user().traits(),
      cookie: document.cookie,
    }));
    await until('the queue to empty', async () => (await storedKeys(page)) === 0);
    return { ...state, batches: log.batches.length };
  },

  // Every call of the API, middleware that changes and drops events, reset and alias.
  async api(b) {
    const pages = { '/test/api.html': html({ flushAt: 100, flushInterval: 200, autoPage: false }) };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/api.html`);
    const ids = await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      braid.addSourceMiddleware(({ payload, next }) => {
        if (payload.obj.event === 'Secret') return next(null);
        payload.obj.properties = { ...(payload.obj.properties || {}), touched: true };
        next(payload);
      });
      const first = braid.user().anonymousId();
      braid.page('Docs', 'Install', { section: 'sdk' });
      braid.page('Pricing');
      braid.screen('Home');
      braid.track('Secret');
      braid.identify('user-7', { email: 'x@example.com' });
      braid.group('org-1', { name: 'Acme' });
      braid.track('Bought', { revenue: 12.5 }, { context: { ip: '203.0.113.9' } });
      braid.alias('user-8');
      const afterAlias = braid.user().id();
      braid.reset();
      const afterReset = { id: braid.user().id(), anon: braid.user().anonymousId(), traits: braid.user().traits() };
      braid.track('After Reset');
      await braid.flush();
      return { first, afterAlias, afterReset };
    });
    await until('delivery', async () => (await storedKeys(page)) === 0 && log.statuses.includes(200));
    return ids;
  },

  // flushAt 5: five events leave at once; two more wait for the interval (3 s); events queued in
  // one go share one request.
  async batching(b) {
    const pages = { '/test/batch.html': html({ flushAt: 5, flushInterval: 3000, autoPage: false }) };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/batch.html`);
    await page.evaluate(() => new Promise((r) => braid.ready(r)));
    const t0 = Date.now();
    await page.evaluate(async () => {
      for (let i = 0; i < 5; i++) {
        braid.track('Item ' + i, { i });
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    await until('the first batch', () => log.statuses.length === 1);
    const first = Date.now() - t0;
    const t1 = Date.now();
    await page.evaluate(() => {
      braid.track('Item 5');
      braid.track('Item 6');
    });
    await until('the second batch', () => log.statuses.length === 2);
    const second = Date.now() - t1;
    await page.evaluate(() => {
      for (let i = 7; i < 19; i++) braid.track('Item ' + i);
    });
    await until('the third batch', () => log.statuses.length === 3);
    return { sizes: log.batches.map((b) => b.events.length), statuses: log.statuses, first, second };
  },

  // The network is down on the first page; its events survive a reload and arrive once (sent
  // as the page unloads, or by the next page; the server's receipt cookie keeps the next page
  // from sending them again).
  async reload(b) {
    let offline = true;
    const pages = { '/test/reload.html': html({ flushAt: 1, autoPage: false }) };
    const { ctx, log } = await context(b, pages, () => (offline ? 'abort' : null));
    const page = await ctx.newPage();
    await page.goto(`${base}/test/reload.html`);
    await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      for (let i = 0; i < 3; i++) braid.track('Offline ' + i);
    });
    await until('a failed attempt', () => log.batches.length > 0);
    const before = await storedKeys(page);
    offline = false;
    await page.reload();
    await until('an empty queue after the reload', async () => (await pending(page)) === 0);
    return { storedBeforeReload: before };
  },

  // A page dies (crash) while its batch is in flight, unanswered: the next page holds those
  // events back for a while (the request might still arrive), then sends them, once.
  async crash(b) {
    const stalled = [];
    const pages = { '/test/crash.html': html({ flushAt: 3, autoPage: false }) };
    const { ctx, log } = await context(b, pages, (n) => (n === 1 ? 'stall' : null), stalled);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/crash.html`);
    await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      for (let i = 0; i < 3; i++) braid.track('Crash ' + i);
    });
    await until('the stalled request', () => stalled.length === 1);
    const cdp = await ctx.newCDPSession(page);
    const crashed = new Promise((r) => page.once('crash', r));
    cdp.send('Page.crash').catch(() => {});
    await crashed;
    const crashedAt = Date.now();
    // The request dies with the page: it never reaches the server.
    await stalled[0].fulfill({ status: 503, body: '{}' }).catch(() => {});
    const next = await ctx.newPage();
    await next.goto(`${base}/test/crash.html`);

    await until('delivery by the next page', async () => log.statuses.includes(200) && (await pending(next)) === 0, 30000);
    return { resentAfter: log.batches[1].at - crashedAt, batches: log.batches.map((b) => b.events) };
  },

  // A bounded queue: offline with maxQueue 3, five events keep the newest three; the next
  // batch reports the two dropped.
  async bounded(b) {
    let offline = true;
    const pages = { '/test/bounded.html': html({ flushAt: 1, maxQueue: 3, autoPage: false }) };
    const { ctx, log } = await context(b, pages, () => (offline ? 'abort' : null));
    const page = await ctx.newPage();
    await page.goto(`${base}/test/bounded.html`);
    await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      for (let i = 0; i < 5; i++) braid.track('Bounded ' + i);
    });
    const stored = await storedKeys(page);
    offline = false;
    await page.evaluate(() => braid.flush());
    await until('delivery', async () => log.statuses.includes(200) && (await pending(page)) === 0, 20000);
    return { stored };
  },

  // 503 twice, then the server: delivered once, after backoff.
  async retry503(b) {
    const pages = { '/test/retry.html': html({ flushAt: 2, autoPage: false }) };
    const { ctx, log } = await context(b, pages, (n) => (n <= 2 ? { status: 503, body: '{}' } : null));
    const page = await ctx.newPage();
    await page.goto(`${base}/test/retry.html`);
    await page.evaluate(() => {
      braid.track('Retry A');
      braid.track('Retry B');
    });
    await until('delivery', () => log.statuses.includes(200), 20000);
    const gaps = log.batches.slice(1).map((b, i) => b.at - log.batches[i].at);
    return { statuses: log.statuses, gaps, batches: log.batches.map((b) => b.events) };
  },

  // 429 with Retry-After: 2 is honoured.
  async retry429(b) {
    const pages = { '/test/429.html': html({ flushAt: 1, autoPage: false }) };
    const { ctx, log } = await context(b, pages, (n) =>
      n === 1 ? { status: 429, headers: { 'Retry-After': '2' }, body: '{}' } : null,
    );
    const page = await ctx.newPage();
    await page.goto(`${base}/test/429.html`);
    await page.evaluate(() => braid.track('Throttled'));
    await until('delivery', () => log.statuses.includes(200), 20000);
    return { statuses: log.statuses, gap: log.batches[1].at - log.batches[0].at };
  },

  // Events waiting for a flush leave with the page (keepalive) when it closes.
  async unload(b) {
    const pages = { '/test/unload.html': html({ flushAt: 100, flushInterval: 60000, autoPage: false }) };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/unload.html`);
    await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      for (let i = 0; i < 3; i++) braid.track('Leaving ' + i);
    });
    const queued = await storedKeys(page);
    const before = log.batches.length;
    // The test checks the lake: a keepalive request of a closed page is not seen by page.route.
    await page.close({ runBeforeUnload: true });
    // Keep the browser up while the keepalive request completes.
    await new Promise((r) => setTimeout(r, 2000));
    return { queuedBeforeClose: queued, batchesBeforeClose: before };
  },

  // Two tabs share one stored queue: every event is sent exactly once.
  async tabs(b) {
    const pages = { '/test/tab.html': html({ flushAt: 3, flushInterval: 300, autoPage: false }) };
    const { ctx, log } = await context(b, pages);
    const [one, two] = [await ctx.newPage(), await ctx.newPage()];
    await Promise.all([one.goto(`${base}/test/tab.html`), two.goto(`${base}/test/tab.html`)]);
    const fire = (tab, name) =>
      tab.evaluate(async (name) => {
        await new Promise((r) => braid.ready(r));
        for (let i = 0; i < 20; i++) {
          braid.track(name + ' ' + i);
          await new Promise((r) => setTimeout(r, 5));
        }
      }, name);
    await Promise.all([fire(one, 'Tab One'), fire(two, 'Tab Two')]);
    await until('both queues empty', async () => (await storedKeys(one)) === 0 && log.statuses.length > 0, 20000);
    await new Promise((r) => setTimeout(r, 1500));
    return { sent: sent(log), statuses: log.statuses };
  },

  // consent: 'pending' stores and sends nothing, then setConsent grants it and all is sent.
  async consent(b) {
    const pages = { '/test/consent.html': html({ consent: 'pending', flushAt: 1 }) };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/consent.html`);
    await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      braid.track('Before Consent');
    });
    await new Promise((r) => setTimeout(r, 1500));
    const pending = await page.evaluate(() => ({
      cookie: document.cookie,
      storage: Object.keys(localStorage).filter((k) => k.startsWith('braid.')),
    }));
    const batchesWhilePending = log.batches.length;
    await page.evaluate(() => braid.setConsent({ analytics: true, advertising: false }));
    await until('delivery', async () => log.statuses.includes(200) && (await storedKeys(page)) === 0);
    const granted = await page.evaluate(() => ({ cookie: document.cookie }));
    // Withdrawn: the ids, the stored state and the cookie go; later events are not sent.
    const withdrawn = await page.evaluate(async () => {
      braid.setConsent({ analytics: false });
      braid.track('After Withdrawal');
      await new Promise((r) => setTimeout(r, 300));
      return {
        cookie: document.cookie.split('; ').filter((c) => c.startsWith('braid_anon_id=')),
        storage: Object.keys(localStorage).filter((k) => k.startsWith('braid.')),
      };
    });
    await new Promise((r) => setTimeout(r, 1000));
    return { pending, batchesWhilePending, granted, withdrawn, batches: log.batches.length };
  },

  // With the server's identity cookie (HttpOnly): a first visit's cookie takes the SDK's id;
  // after script storage is wiped (Safari's 7-day cap), the SDK takes the id back from the
  // server's answer. The browser's credential (braid_key) is another HttpOnly cookie, which
  // scripts never see.
  async edgeid(b) {
    const pages = { '/test/edge.html': html({ flushAt: 1, autoPage: false }) };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/edge.html`);
    const first = await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      braid.track('First Visit');
      return braid.user().anonymousId();
    });
    await until('delivery', () => log.statuses.includes(200));
    const httpOnly = (await ctx.cookies()).find((c) => c.name === 'braid_aid');
    const credential = (await ctx.cookies()).find((c) => c.name === 'braid_key');
    const readable = await page.evaluate(() => document.cookie);
    // Script storage is wiped; the HttpOnly cookie survives.
    await page.evaluate(() => {
      localStorage.clear();
      document.cookie = 'braid_anon_id=; max-age=0; path=/';
    });
    await page.reload();
    const wiped = await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      const fresh = braid.user().anonymousId();
      braid.track('After Wipe');
      return fresh;
    });
    await until('the second delivery', () => log.statuses.filter((s) => s === 200).length === 2);
    await until('the id from the server', async () => (await page.evaluate(() => braid.user().anonymousId())) === first);
    await page.evaluate(() => braid.track('Realigned'));
    await until('the third delivery', () => log.statuses.filter((s) => s === 200).length === 3);
    return {
      first,
      cookie: httpOnly && { value: httpOnly.value, httpOnly: httpOnly.httpOnly },
      credential: credential && { value: credential.value, httpOnly: credential.httpOnly },
      scriptSeesCredential: readable.includes('braid_key'),
      wiped,
    };
  },

  // cookieless: nothing stored, events still sent; with honorGPC and Global Privacy Control on,
  // the same, and events say so.
  async privacy(b) {
    const pages = {
      '/test/cookieless.html': html({ flushAt: 1, cookieless: true }),
      '/test/gpc.html': html({ flushAt: 1, honorGPC: true }),
    };
    const { ctx, log } = await context(b, pages);
    await ctx.addInitScript(() => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
    const result = {};
    for (const name of ['cookieless', 'gpc']) {
      const page = await ctx.newPage();
      await page.goto(`${base}/test/${name}.html`);
      await page.evaluate(async () => {
        await new Promise((r) => braid.ready(r));
        braid.identify('private-user', { plan: 'x' });
      });
      const want = name === 'gpc' ? 4 : 2;
      await until(name + ' delivery', () => sent(log).length >= want && log.statuses.length === log.batches.length);
      result[name] = await page.evaluate(() => ({
        cookie: document.cookie,
        storage: Object.keys(localStorage).filter((k) => k.startsWith('braid.')),
      }));
      await page.close();
    }
    return result;
  },

  // A site bundles braid-sdk from npm (esbuild; the wasm file sits next to the bundle, where
  // `new URL(..., import.meta.url)` finds it) and runs it.
  async bundler(b) {
    const out = await build({
      entryPoints: [join(here, 'bundler/app.ts')],
      bundle: true,
      format: 'esm',
      write: false,
      alias: { 'braid-sdk': join(root, 'sdk-js') },
      logLevel: 'error',
    });
    const bundle = out.outputFiles[0].text;
    const wasm = readdirSync(join(root, 'sdk-js/dist')).find((f) => f.endsWith('.wasm'));
    const pages = {
      '/test/app/index.html': `<!doctype html><html><body data-key="${key}"><script type="module" src="app.js"></script></body></html>`,
    };
    const { ctx, log } = await context(b, pages);
    await ctx.route(`${base}/test/app/app.js`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/javascript', body: bundle }),
    );
    await ctx.route(`${base}/test/app/${wasm}`, (route) =>
      route.fulfill({ status: 200, contentType: 'application/wasm', body: readFileSync(join(root, 'sdk-js/dist', wasm)) }),
    );
    const page = await ctx.newPage();
    await page.goto(`${base}/test/app/index.html`);
    await until('delivery', () => log.statuses.includes(200));
    return { anon: await page.evaluate(async () => (await window.bundled).user().anonymousId()) };
  },

  // Single-page navigation sends a page view per new path; UTM parameters become the campaign.
  async spa(b) {
    const pages = { '/test/spa.html': html({ flushAt: 3, flushInterval: 500 }) };
    const { ctx, log } = await context(b, pages);
    const page = await ctx.newPage();
    await page.goto(`${base}/test/spa.html?utm_source=ads&utm_term=shoes`);
    await page.evaluate(async () => {
      await new Promise((r) => braid.ready(r));
      history.pushState({}, '', '/test/spa/products');
      history.replaceState({}, '', '/test/spa/products');
      history.pushState({}, '', '/test/spa/cart?step=2');
    });
    await until('delivery', async () => log.statuses.includes(200) && (await storedKeys(page)) === 0);
    return { batches: log.batches.length };
  },
};

// Not a test: the cost of one track() call, persistence included, for Braid's SDK and for
// Segment's analytics-next (default settings: localStorage persistence of its queue) in the
// same browser. Printed by scripts/bench-sdk.sh.
scenarios.bench = async (b) => {
  const calls = Number(process.env.BENCH_CALLS || 2000);
  const host = new URL(base).host;
  const measure = async (name, body, ready) => {
    const ctx = await b.newContext();
    await ctx.route(`${base}/test/**`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body }));
    const page = await ctx.newPage();
    await page.goto(`${base}/test/${name}.html`);
    await page.evaluate(ready);
    const result = await page.evaluate(async (calls) => {
      const lib = window.braid && window.braid.track ? window.braid : window.analytics;
      const props = { sku: 'A-100', price: 19.99, currency: 'EUR', tags: ['x', 'y'] };
      for (let i = 0; i < 200; i++) lib.track('Warm Up', props); // JIT warm-up
      const times = [];
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now();
        lib.track('Product Viewed', props);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const sum = times.reduce((a, b) => a + b, 0);
      return { mean_ms: sum / calls, p50_ms: times[calls >> 1], p99_ms: times[Math.floor(calls * 0.99)] };
    }, calls);
    await ctx.close();
    return { calls, ...result };
  };
  // Nothing is sent during the synchronous loop (timers wait for it), so the queue only grows:
  // a bound above the call count keeps eviction out of the figure.
  const braid = await measure('bench-braid', html({ flushAt: 20, autoPage: false, maxQueue: 100000 }), () => new Promise((r) => braid.ready(r)));
  const settings = { integrations: { 'Segment.io': { apiKey: key, apiHost: host + '/v1', protocol: 'http' } } };
  const segment = await measure(
    'bench-segment',
    `<!doctype html><html><head><script>${(await analyticsNext()).replace(/<\/script/g, '<\\/script')}</script>
<script>window.analytics = AnalyticsBrowser.load({ writeKey: ${JSON.stringify(key)}, cdnSettings: ${JSON.stringify(settings)} });</script></head></html>`,
    () => window.analytics.ready ? new Promise((r) => window.analytics.ready(r)) : null,
  );
  return { braid, segment };
};

const name = process.argv[2];
const scenario = scenarios[name];
if (!scenario) {
  console.error('unknown scenario: ' + name + ' (one of ' + Object.keys(scenarios).join(', ') + ')');
  process.exit(2);
}
// A scenario that hangs fails instead of holding up the test run.
setTimeout(() => {
  console.error('scenario ' + name + ' did not finish within 90 s');
  process.exit(3);
}, 90000).unref();
const b = await browser();
try {
  const result = await scenario(b);
  console.log(JSON.stringify(result));
} finally {
  await b.close();
}
