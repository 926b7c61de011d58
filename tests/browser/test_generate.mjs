// An admin launches a tiny sft job on an uploaded dataset from the
// dashboard; its samples and checkpoints appear; the page then generates
// from the final checkpoint, and the text equals what the API returns for
// the same parameters and seed. A bad parameter is shown with its name.
import { assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

const TINY = { n_layer: 1, d_model: 32, n_head: 2, context: 64, batch_size: 8, max_steps: 40, checkpoint_interval: 20, eval_interval: 10, sample_interval: 20, sample_max_tokens: 8 };

export default async function ({ browser, daemon }) {
  const ds = await daemon.api('POST', '/v1/datasets', { name: 'letters', format: 'sft' });
  const rows = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `count ${i % 5}:`, response: ' abcde'.slice(0, 2 + (i % 5)) })).join('\n');
  await daemon.upload(ds.id, rows);

  const page = await newPage(browser, { viewport: { width: 1440, height: 900 } });
  await login(page, daemon, daemon.admin, '#dashboard');
  await page.waitForSelector('#dashboard:not([hidden]) #launch');
  await page.selectOption('#l-type', 'sft');
  await page.waitForSelector(`#l-train option[value="${ds.id}"]`, { state: 'attached' });
  await page.selectOption('#l-train', String(ds.id));
  await page.fill('#l-hp', JSON.stringify(TINY));
  await page.click('#l-submit');
  await until(async () => (await page.textContent('#job-title')).endsWith('· sft'), 'the sft job to open');
  await until(async () => (await page.textContent('#job-status')) === 'succeeded', 'the sft job to succeed', 60000);
  const job = (await daemon.api('GET', '/v1/jobs')).data[0];
  assertEq(job.training_file, ds.id, 'the job trains on the chosen dataset');
  await until(async () => (await page.locator('#samples li').count()) >= 1, 'a sample in the samples list');
  await until(async () => /final/.test(await page.textContent('#checkpoints')), 'the final checkpoint');
  assert(await page.locator('.chart[data-metric="loss"]').count(), 'a loss chart');

  await page.click('#gen-box summary');
  const final = (await daemon.api('GET', `/v1/jobs/${job.id}/checkpoints`)).data.find((c) => c.kind === 'final');
  await page.selectOption('#g-ckpt', String(final.id));
  await page.fill('#g-prompt', 'count 3:');
  await page.fill('#g-n', '2');
  await page.fill('#g-max', '5000');
  await page.fill('#g-temp', '0.7');
  await page.fill('#g-seed', '7');
  await page.click('#g-submit');
  await until(async () => (await page.textContent('#gen-error')).startsWith('max_tokens: '), 'the max_tokens error');
  assert(await page.locator('#g-max.invalid').count(), 'max_tokens is marked');

  await page.fill('#g-max', '8');
  await page.click('#g-submit');
  await until(async () => (await page.locator('#gen-out li').count()) === 2, 'two completions');
  const shown = await page.locator('#gen-out li pre').allTextContents();
  const api = await daemon.api('POST', `/v1/checkpoints/${final.id}/generate`, { prompt: 'count 3:', n: 2, max_tokens: 8, temperature: 0.7, seed: 7 });
  assertEq(shown, api.choices.map((c) => c.text), 'the page shows what the API generates for the same seed');
  await screenshot(page, 'dashboard-sft-generate.png');
  assertNoProblems(page);
  await page.context().close();
}
