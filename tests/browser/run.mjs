// Runs tests/browser/test_*.mjs, each against its own fresh rlhfd, in one
// headless chromium. Exit 1 if any fails, or if the browser cannot start
// (never skipped). Screenshots go to build/browser-artifacts/.
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, Daemon, ROOT, launchBrowser } from './lib.mjs';

const dir = path.join(ROOT, 'tests/browser');
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => /^test_.*\.mjs$/.test(f))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

if (files.length === 0) {
  console.error('browser tests: FAILED: no tests/browser/test_*.mjs matched');
  process.exit(1);
}
rmSync(ARTIFACTS, { recursive: true, force: true });
const started = Date.now();
let browser;
try {
  browser = await launchBrowser();
} catch (err) {
  console.error(`browser tests: FAILED: ${err.message}`);
  process.exit(1);
}
let failed = 0;
for (const file of files) {
  const t0 = Date.now();
  const mod = await import(path.join(dir, file));
  const daemon = await Daemon.start();
  let ok = true;
  try {
    await mod.default({ browser, daemon });
  } catch (err) {
    ok = false;
    failed++;
    console.error(`browser ${file}: FAILED: ${err.stack || err}`);
    console.error(`  rlhfd log and database kept in ${daemon.dir}`);
  }
  await daemon.stop(!ok);
  console.log(`browser ${file}: ${ok ? 'ok' : 'FAILED'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
await browser.close();
console.log(`browser tests: ${files.length - failed}/${files.length} passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${path.relative(process.cwd(), ARTIFACTS)}/`);
process.exit(failed ? 1 : 0);
