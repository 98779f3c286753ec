// dist/index.js (ESM) and dist/analytics.min.js (IIFE, global `CommerceAnalytics`), minified; `--size`
// prints the minified + gzipped size of the browser bundle.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const common = { entryPoints: ['src/index.ts'], bundle: true, minify: true, target: ['es2020'], legalComments: 'none', logLevel: 'warning' };
await build({ ...common, format: 'esm', outfile: 'dist/index.js' });
await build({ ...common, format: 'iife', globalName: 'CommerceAnalytics', outfile: 'dist/analytics.min.js' });
if (process.argv.includes('--size')) {
  const min = readFileSync('dist/analytics.min.js');
  console.log(`dist/analytics.min.js: ${min.length} bytes minified, ${gzipSync(min, { level: 9 }).length} bytes gzipped`);
}
