// Builds dist/ (index.html, app.js, app.css): the files the Rust binaries embed and serve at /dashboard.
// Deterministic: the same sources give the same bytes, so CI can check that dist/ is up to date.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/app.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome110', 'firefox110', 'safari16'],
  outfile: 'dist/app.js',
  legalComments: 'none',
  logLevel: 'warning',
});
const css = readFileSync('node_modules/uplot/dist/uPlot.min.css', 'utf8') + '\n' + readFileSync('src/app.css', 'utf8');
writeFileSync('dist/app.css', css);
writeFileSync('dist/index.html', readFileSync('src/index.html', 'utf8'));
