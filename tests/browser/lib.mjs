// Shared by the browser tests: a real rlhfd with a fresh database, its API
// from Node, and headless Debian chromium driven by playwright-core (from
// clients/web/node_modules, installed by `make web`).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD = path.resolve(ROOT, process.env.BUILD || 'build');
export const ARTIFACTS = path.join(BUILD, 'browser-artifacts');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export function fail(message) {
  throw new Error(message);
}

export function assert(cond, message) {
  if (!cond) fail(`assertion failed: ${message}`);
}

export function assertEq(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${message}: expected ${e}, got ${a}`);
}

function loadPlaywright() {
  const require = createRequire(path.join(ROOT, 'clients/web/package.json'));
  try {
    return require('playwright-core');
  } catch (err) {
    fail(`playwright-core is not installed in clients/web/node_modules (run \`make web\`): ${err.message}`);
  }
}

// Starts chromium or fails with a message that says what to do.
export async function launchBrowser() {
  if (!existsSync(CHROMIUM))
    fail(`the browser tests need ${CHROMIUM} (Debian package chromium; \`make browser-deps\` installs it)`);
  const { chromium } = loadPlaywright();
  try {
    return await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
      timeout: 30000,
    });
  } catch (err) {
    fail(`cannot start ${CHROMIUM}: ${err.message.split('\n')[0]}`);
  }
}

// A page that fails the test on any uncaught page error or dialog, and
// records console errors (CSP violations land there).
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`console error: ${msg.text()}`);
  });
  page.on('dialog', async (dialog) => {
    page.problems.push(`a dialog opened: ${dialog.type()} ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.setDefaultTimeout(20000);
  return page;
}

// API error statuses the page expects (400 for a rejected launch, 403 while it finds the token's role,
// 404 when no comparison is left) are logged by chromium as "Failed to load
// resource"; they are not problems.
export const EXPECTED_ERRORS = [/Failed to load resource: the server responded with a status of 40[034]/];
export function assertNoProblems(page, allow = EXPECTED_ERRORS) {
  const left = page.problems.filter((p) => !allow.some((re) => re.test(p)));
  assert(left.length === 0, `the page reported problems:\n  ${left.join('\n  ')}`);
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

export class Daemon {
  static async start() {
    const d = new Daemon();
    d.dir = mkdtempSync(path.join(tmpdir(), 'rlhfd-browser-'));
    d.db = path.join(d.dir, 'rlhfd.db');
    d.admin = execFileSync(path.join(BUILD, 'rlhfd'), ['--db', d.db, '--create-token', 'root', '--role', 'admin']).toString().trim();
    await d.launch('127.0.0.1:0');
    return d;
  }

  async launch(listen, extra = []) {
    const rlhfd = path.join(BUILD, 'rlhfd');
    this.proc = spawn(rlhfd, ['--listen', listen, '--db', this.db, '--web-root', path.join(BUILD, 'web'), '--workers', '1', '--sse-poll-ms', '50', '--shutdown-grace-ms', '5000', ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
    });
    this.log = this.log || '';
    this.proc.stderr.on('data', (b) => (this.log += b));
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve(sig ? -1 : code)));
    this.url = await new Promise((resolve, reject) => {
      let out = '';
      this.proc.stdout.on('data', (b) => {
        out += b;
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]);
      });
      this.exited.then((code) => reject(new Error(`rlhfd exited (${code}) before listening: ${this.log}`)));
    });
  }

  // SIGTERM (workers checkpoint and requeue), then the same database on the
  // same port, with extra flags if given.
  async restart(extra = []) {
    this.proc.kill('SIGTERM');
    assertEq(await this.exited, 0, 'rlhfd exit code on SIGTERM');
    await this.launch(this.url.replace('http://', ''), extra);
  }

  // GET /metrics (Prometheus text).
  async metrics() {
    const resp = await fetch(`${this.url}/metrics`, { headers: { Authorization: `Bearer ${this.admin}` } });
    return resp.text();
  }

  async api(method, p, body, token = this.admin) {
    const resp = await fetch(this.url + p, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await resp.json();
    if (!resp.ok) fail(`${method} ${p} -> ${resp.status} ${JSON.stringify(json)}`);
    return json;
  }

  // POST /v1/datasets/{id}/upload with a JSONL body.
  async upload(id, text) {
    const resp = await fetch(`${this.url}/v1/datasets/${id}/upload`, { method: 'POST', headers: { Authorization: `Bearer ${this.admin}` }, body: text });
    const json = await resp.json();
    if (!resp.ok) fail(`upload -> ${resp.status} ${JSON.stringify(json)}`);
    return json;
  }

  async stop(keep = false) {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      await this.exited;
    }
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

// Polls fn until it returns a truthy value (deadline 30 s).
export async function until(fn, what, deadlineMs = 30000) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Logs in through the page's form.
export async function login(page, daemon, token, hash = '') {
  await page.goto(`${daemon.url}/${hash}`);
  await page.fill('#token', token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#logout', { state: 'visible' });
}
