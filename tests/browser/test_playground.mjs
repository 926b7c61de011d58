// The models page lists the fine-tuned models; its playground streams the
// same prompt from two of them side by side, and each side shows exactly
// what POST /v1/completions answers for that model, prompt and seed. A bad
// parameter is shown with its name.
import { assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

const TINY = { n_layer: 1, d_model: 32, n_head: 2, context: 64, batch_size: 8, max_steps: 20, sample_interval: 0 };

export default async function ({ browser, daemon }) {
  const ds = await daemon.api('POST', '/v1/datasets', { name: 'letters', format: 'sft' });
  const rows = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `count ${i % 5}:`, response: ' abcde'.slice(0, 2 + (i % 5)) })).join('\n');
  await daemon.upload(ds.id, rows);
  const jobs = [];
  for (const seed of [1, 2]) {
    const job = await daemon.api('POST', '/v1/jobs', { type: 'sft', training_file: ds.id, hyperparameters: { ...TINY, seed } });
    jobs.push(job.id);
  }
  for (const id of jobs)
    await until(async () => (await daemon.api('GET', `/v1/jobs/${id}`)).status === 'succeeded', `job ${id} to succeed`, 60000);
  const ids = jobs.map((id) => `ft:scratch::ftjob-${id}`);

  const page = await newPage(browser, { viewport: { width: 1440, height: 900 } });
  await login(page, daemon, daemon.admin, '#models');
  await page.waitForSelector('#models:not([hidden])');
  await until(async () => (await page.locator('#models-table tbody tr').count()) === 2, 'both models listed');
  const listed = await page.locator('#models-table tbody tr td:first-child').allTextContents();
  assertEq(listed.sort(), [...ids].sort(), 'the models table lists the fine-tuned models');

  await page.selectOption('#p-left', ids[0]);
  await page.selectOption('#p-right', ids[1]);
  await page.uncheck('#p-chat'); // lineages from scratch have no chat template
  await page.fill('#p-prompt', 'count 3:');
  await page.fill('#p-temp', '5');
  await page.click('#p-run');
  await until(async () => (await page.textContent('#play-error')).startsWith('temperature: '), 'the temperature error');
  assert(await page.locator('#p-temp.invalid').count(), 'temperature is marked');

  await page.fill('#p-temp', '0.7');
  await page.fill('#p-max', '12');
  await page.fill('#p-seed', '7');
  await page.click('#p-run');
  await until(async () => /^done/.test(await page.textContent('#p-status-left')) && /^done/.test(await page.textContent('#p-status-right')), 'both streams to end');
  const sides = [await page.textContent('#p-out-left'), await page.textContent('#p-out-right')];
  for (let i = 0; i < 2; i++) {
    const api = await daemon.api('POST', '/v1/completions', { model: ids[i], prompt: 'count 3:', max_tokens: 12, temperature: 0.7, seed: 7 });
    assertEq(sides[i], api.choices[0].text, `side ${i} shows what the API completes for ${ids[i]}`);
    assertEq(await page.textContent(i ? '#p-status-right' : '#p-status-left'), `done: ${api.choices[0].finish_reason}`, `side ${i} finish reason`);
  }
  await screenshot(page, 'models-playground.png');
  assertNoProblems(page);
  await page.context().close();
}
