// Runs the built Braid Worker in workerd (Miniflare's Node API) and sends it the requests the
// Rust test gives on stdin: [{method, path, headers, body_base64}], answering on stdout with
// [{status, headers, body}]. Bindings come from the environment.
import { Miniflare } from 'miniflare';
import { workerModule } from './module.mjs';
import { readFileSync } from 'node:fs';

const scriptPath = process.env.BRAID_WORKER_ENTRY;
const requests = process.env.BRAID_SERVE ? [] : JSON.parse(readFileSync(0, 'utf8'));
const mf = new Miniflare({
  ...workerModule(scriptPath),
  bindings: {
    BRAID_CONFIG: process.env.BRAID_CONFIG,
    BRAID_FORWARD_SECRET: process.env.BRAID_FORWARD_SECRET,
    ...(process.env.BRAID_EDGE_KEY_SECRET && { BRAID_EDGE_KEY_SECRET: process.env.BRAID_EDGE_KEY_SECRET }),
    ...(process.env.BRAID_TOKEN_SECRET && { BRAID_TOKEN_SECRET: process.env.BRAID_TOKEN_SECRET }),
  },
  kvNamespaces: ['PROFILES'],
  // Queue mode (BRAID_QUEUE=1): batches go to a queue whose consumer (the same Worker)
  // forwards them, retrying every second.
  ...(process.env.BRAID_QUEUE && {
    queueProducers: { EVENTS: 'braid-events' },
    queueConsumers: { 'braid-events': { maxBatchSize: 10, maxBatchTimeout: 0.1, maxRetries: 50, retryDelay: 1 } },
  }),
  // The browser SDK's files as static assets, with the Worker first (as wrangler.toml says).
  ...(process.env.BRAID_SDK_DIR && {
    assets: {
      directory: process.env.BRAID_SDK_DIR,
      binding: 'SDK',
      routerConfig: { invoke_user_worker_ahead_of_assets: true, has_user_worker: true },
    },
  }),
  cf: false,
  host: '127.0.0.1',
  port: 0,
});
// Serve mode (BRAID_SERVE=1): listen on a port for real clients, print the URL, and run until
// stdin closes.
if (process.env.BRAID_SERVE) {
  const url = await mf.ready;
  process.stdout.write(url.href.replace(/\/$/, '') + '\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await mf.dispose();
  process.exit(0);
}
const answers = [];
try {
  // The edge store as `braid profiles --edge` wrote it (wrangler kv bulk put's format).
  if (process.env.BRAID_KV_FILE) {
    const kv = await mf.getKVNamespace('PROFILES');
    for (const { key, value } of JSON.parse(readFileSync(process.env.BRAID_KV_FILE, 'utf8'))) await kv.put(key, value);
  }
  for (const r of requests) {
    if (r.wait_ms) {
      // Let the queue consumer work.
      await new Promise((resolve) => setTimeout(resolve, r.wait_ms));
      continue;
    }
    const response = await mf.dispatchFetch(`http://edge.example${r.path}`, {
      method: r.method,
      headers: r.headers,
      body: r.body_base64 ? Buffer.from(r.body_base64, 'base64') : undefined,
      cf: r.cf,
    });
    const bytes = Buffer.from(await response.arrayBuffer());
    answers.push({
      status: response.status,
      headers: headersOf(response),
      body: bytes.toString('utf8'),
      body_base64: bytes.toString('base64'),
    });
  }
} finally {
  await mf.dispose();
}
process.stdout.write(JSON.stringify(answers));

// The answer's headers by name; a header sent more than once (Set-Cookie) has its values joined
// by newlines.
function headersOf(response) {
  const headers = {};
  for (const [name, value] of response.headers) {
    headers[name] = name in headers ? `${headers[name]}\n${value}` : value;
  }
  return headers;
}
