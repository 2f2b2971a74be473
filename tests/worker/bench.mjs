// Figures of the built Worker in workerd (Miniflare), for scripts/bench-worker.sh:
// - a 20-event /v1/batch handled and handed off to the EVENTS queue, against GET /health (the
//   same path through Miniflare with no work): the difference is the Worker's own time per
//   request (validate, enrich, serialise, queue send), an upper bound of its CPU time;
// - GET /v1/personalize reads from KV, with 10,000 profiles stored.
import { createHash, createHmac } from 'node:crypto';
import { Miniflare } from 'miniflare';
import { workerModule } from './module.mjs';

const scriptPath = process.env.BRAID_WORKER_ENTRY;
const N = Number(process.env.BENCH_REQUESTS || 2000);
const KEY = 'bench-key';
const mf = new Miniflare({
  ...workerModule(scriptPath),
  bindings: {
    BRAID_CONFIG: JSON.stringify({
      workspaces: [{ name: 'bench', write_keys: [KEY] }],
      collect: { upstream: 'http://127.0.0.1:9/v1/forward', identity_cookie: {} },
    }),
    BRAID_FORWARD_SECRET: 'bench',
    BRAID_EDGE_KEY_SECRET: 'kv-secret',
  },
  kvNamespaces: ['PROFILES'],
  queueProducers: { EVENTS: 'braid-events' },
  cf: false,
});

const auth = 'Basic ' + Buffer.from(KEY + ':').toString('base64');
const agents = [
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
];
function batch(n) {
  const events = [];
  for (let i = 0; i < 20; i++) {
    events.push({
      type: i % 5 === 0 ? 'page' : 'track',
      event: 'Product Viewed',
      anonymousId: 'anon-' + (n % 500),
      messageId: `m-${n}-${i}`,
      timestamp: new Date(Date.now() - i * 1000).toISOString(),
      properties: { sku: 'SKU-' + i, price: 19.99 + i, currency: 'EUR' },
      context: {
        userAgent: agents[i % 2],
        page: { url: `https://shop.example/p/${i}?utm_source=news&utm_medium=email`, referrer: 'https://www.google.com/' },
        library: { name: 'analytics.js', version: '5.0.0' },
      },
    });
  }
  return JSON.stringify({ batch: events, sentAt: new Date().toISOString() });
}

const bodies = Array.from({ length: 50 }, (_, n) => batch(n));
const stats = (times) => {
  times.sort((a, b) => a - b);
  const pick = (q) => times[Math.min(times.length - 1, Math.floor(times.length * q))].toFixed(3);
  return { p50_ms: pick(0.5), p99_ms: pick(0.99), mean_ms: (times.reduce((a, b) => a + b, 0) / times.length).toFixed(3) };
};
async function timed(n, request, expect = 200) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const response = await request(i);
    await response.arrayBuffer();
    times.push(performance.now() - t0);
    if (response.status !== expect) throw new Error('status ' + response.status);
  }
  return times;
}

try {
  await mf.ready;
  // Warm up the isolate and the JIT.
  await timed(200, (i) => mf.dispatchFetch('http://edge.example/health'));
  await timed(200, (i) => mf.dispatchFetch('http://edge.example/v1/batch', {
    method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: bodies[i % 50],
  }));
  const health = await timed(N, () => mf.dispatchFetch('http://edge.example/health'));
  const ingest = await timed(N, (i) => mf.dispatchFetch('http://edge.example/v1/batch', {
    method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: bodies[i % 50],
  }));
  // The same bodies refused at the write key: the transfer without the work.
  const refused = await timed(N, (i) => mf.dispatchFetch('http://edge.example/v1/batch', {
    method: 'POST', headers: { authorization: 'Basic eDo=', 'content-type': 'application/json' }, body: bodies[i % 50],
  }), 401);
  // 10,000 profiles in KV, keyed as braid_core::activate::personalize::edge_key does, under
  // the browser ids of their credential cookies (braid_core::collect::browser_id).
  const kv = await mf.getKVNamespace('PROFILES');
  const key = (id) => createHmac('sha256', 'kv-secret').update(id).digest('hex').slice(0, 32);
  const credential = (i) => 'credential-' + String(i).padStart(5, '0');
  const browser = (i) => 'browser:' + createHash('sha256').update(credential(i)).digest('hex');
  for (let i = 0; i < 10000; i++) {
    await kv.put(key(browser(i)), JSON.stringify({ traits: { plan: i % 3 ? 'pro' : 'basic' }, audiences: [] }));
  }
  const personalize = await timed(N, (i) => mf.dispatchFetch('http://edge.example/v1/personalize', {
    headers: { cookie: 'braid_key=' + credential((i * 7919) % 10000) },
  }));
  const h = stats(health), b = stats(ingest), r = stats(refused), p = stats(personalize);
  console.log(JSON.stringify({
    requests: N,
    health_dispatch: h,
    batch_refused_at_auth: r,
    batch_of_20_to_queue: b,
    worker_time_per_batch_ms: { p50: (b.p50_ms - r.p50_ms).toFixed(3), mean: (b.mean_ms - r.mean_ms).toFixed(3) },
    personalize_kv_read: p,
    kv_read_over_dispatch_ms: { p50: (p.p50_ms - h.p50_ms).toFixed(3), mean: (p.mean_ms - h.mean_ms).toFixed(3) },
  }, null, 2));
} finally {
  await mf.dispose();
}
