// How the built Worker is loaded into Miniflare, shared by run.mjs (the tests) and bench.mjs.
import { dirname } from 'node:path';

/** Miniflare options for the Worker whose entry module is `scriptPath`. */
export function workerModule(scriptPath) {
  return {
    modules: true,
    scriptPath,
    modulesRoot: dirname(scriptPath),
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2025-09-01',
  };
}
