// Runs the built Braid Worker in workerd (Miniflare's Node API) and sends it the requests the
// Rust test gives on stdin: [{method, path, headers, body_base64}], answering on stdout with
// [{status, headers, body}]. Bindings come from the environment.
import { Miniflare } from 'miniflare';
import { dirname } from 'node:path';
import { readFileSync } from 'node:fs';

const scriptPath = process.env.BRAID_WORKER_ENTRY;
const requests = JSON.parse(readFileSync(0, 'utf8'));
const mf = new Miniflare({
  modules: true,
  scriptPath,
  modulesRoot: dirname(scriptPath),
  modulesRules: [
    { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
  ],
  compatibilityDate: '2025-09-01',
  bindings: {
    INGEST_URL: process.env.INGEST_URL,
    BRAID_FORWARD_SECRET: process.env.BRAID_FORWARD_SECRET,
    BRAID_WORKSPACES: process.env.BRAID_WORKSPACES,
  },
  cf: false,
  host: '127.0.0.1',
});
const answers = [];
try {
  for (const r of requests) {
    const response = await mf.dispatchFetch(`http://edge.example${r.path}`, {
      method: r.method,
      headers: r.headers,
      body: r.body_base64 ? Buffer.from(r.body_base64, 'base64') : undefined,
      cf: r.cf,
    });
    answers.push({
      status: response.status,
      headers: Object.fromEntries(response.headers),
      body: await response.text(),
    });
  }
} finally {
  await mf.dispose();
}
process.stdout.write(JSON.stringify(answers));
