// Builds everything a site loads into dist/: the collector's wasm (cargo, wasm-bindgen of the
// pinned version, wasm-opt -Oz from npm binaryen), the SDK's JS with the wasm-bindgen glue in one
// minified ES module, the snippet, and the TypeScript types. Fails when the payload is over the
// 25 KB gzip budget. Run `npm ci` first; wasm-bindgen comes from ../.tools (scripts/setup.sh).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const budget = 25 * 1000;
const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });

run('cargo', ['build', '--locked', '-p', 'braid-collector', '--target', 'wasm32-unknown-unknown', '--profile', 'sdk']);
const tools = join(root, '.tools', 'bin', 'wasm-bindgen');
const bindgen = existsSync(tools) ? tools : 'wasm-bindgen';
const buildDir = join(here, 'build');
rmSync(buildDir, { recursive: true, force: true });
run(bindgen, [
  join(root, 'target/wasm32-unknown-unknown/sdk/braid_collector.wasm'),
  '--target', 'web', '--out-dir', buildDir, '--no-typescript',
]);
const optimised = join(buildDir, 'opt.wasm');
run(join(here, 'node_modules/.bin/wasm-opt'), [
  '-Oz', '--strip-debug', '--strip-producers', '--strip-target-features',
  join(buildDir, 'braid_collector_bg.wasm'), '-o', optimised,
]);

const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
const wasm = readFileSync(optimised);
// Content-addressed: served with an immutable cache header, a new build gets a new name.
const wasmFile = 'braid-' + createHash('sha256').update(wasm).digest('hex').slice(0, 12) + '.wasm';
writeFileSync(join(dist, wasmFile), wasm);

await build({
  entryPoints: [join(here, 'src/runtime.js')],
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2020',
  outfile: join(dist, 'braid.js'),
  define: { __BRAID_VERSION__: JSON.stringify(pkg.version), __BRAID_WASM_FILE__: JSON.stringify(wasmFile) },
  legalComments: 'none',
  logLevel: 'warning',
});
await build({
  entryPoints: [join(here, 'src/snippet.js')],
  minify: true,
  target: 'es5',
  outfile: join(dist, 'snippet.min.js'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'src/braid.d.ts'), join(dist, 'braid.d.ts'));

const files = ['snippet.min.js', 'braid.js', wasmFile];
const sizes = files.map((file) => {
  const bytes = readFileSync(join(dist, file));
  return {
    file,
    raw: bytes.length,
    gzip: gzipSync(bytes, { level: 9 }).length,
    brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  };
});
const total = sizes.reduce((t, s) => ({ raw: t.raw + s.raw, gzip: t.gzip + s.gzip, brotli: t.brotli + s.brotli }), { raw: 0, gzip: 0, brotli: 0 });
writeFileSync(join(dist, 'size.json'), JSON.stringify({ files: sizes, total, budgetGzip: budget }, null, 2) + '\n');
for (const s of [...sizes, { file: 'total', ...total }]) {
  console.log(`${s.file.padEnd(28)} ${String(s.raw).padStart(7)} B  gzip ${String(s.gzip).padStart(6)} B  brotli ${String(s.brotli).padStart(6)} B`);
}
if (total.gzip > budget) {
  console.error(`over budget: ${total.gzip} B gzip > ${budget} B`);
  process.exit(1);
}
