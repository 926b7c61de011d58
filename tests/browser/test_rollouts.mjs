// A grpo job (a tiny sft model trained first, a string_check grader) keeps
// its rollouts; the dashboard shows the newest as text whose tokens are the
// API's tokens, each coloured by the chosen quantity (red above zero, blue
// below, none for a zero) with every number in its tooltip; switching the
// quantity recolours them.
import { assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

const TINY_SFT = { n_layer: 1, d_model: 32, n_head: 2, context: 64, batch_size: 8, max_steps: 20, sample_interval: 0 };

async function waitJob(daemon, id) {
  let job;
  await until(async () => {
    job = await daemon.api('GET', `/v1/jobs/${id}`);
    return ['succeeded', 'failed', 'cancelled'].includes(job.status);
  }, `job ${id} to finish`, 90000);
  assertEq(job.status, 'succeeded', `job ${id}: ${JSON.stringify(job.error)}`);
}

export default async function ({ browser, daemon }) {
  const ds = await daemon.api('POST', '/v1/datasets', { name: 'letters', format: 'sft' });
  const rows = Array.from({ length: 24 }, (_, i) => JSON.stringify({ prompt: `count ${i % 5}:`, response: ' abcde'.slice(0, 2 + (i % 5)) })).join('\n');
  await daemon.upload(ds.id, rows);
  const sft = await daemon.api('POST', '/v1/jobs', { type: 'sft', training_file: ds.id, hyperparameters: TINY_SFT });
  await waitJob(daemon, sft.id);
  const prompts = await daemon.api('POST', '/v1/datasets', { name: 'counts', format: 'prompts' });
  await daemon.upload(prompts.id, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `count ${i % 5}:` })).join('\n'));
  const grader = { type: 'string_check', name: 'has_a', input: '{{sample.output_text}}', reference: 'a', operation: 'like' };
  const grpo = await daemon.api('POST', '/v1/jobs', {
    type: 'grpo',
    training_file: prompts.id,
    model: `job:${sft.id}`,
    hyperparameters: { total_steps: 3, prompts_per_step: 2, num_generations: 3, max_completion_length: 6, learning_rate: 0.003, beta: 0.1, rollout_samples: 2, rollout_interval: 1, grader },
  });
  await waitJob(daemon, grpo.id);
  const api = (await daemon.api('GET', `/v1/jobs/${grpo.id}/rollouts?limit=10`)).data;
  assertEq(api.length, 6, 'two rollouts per step, three steps');

  const page = await newPage(browser, { viewport: { width: 1440, height: 1000 } });
  await login(page, daemon, daemon.admin, '#dashboard');
  await page.click(`tr.job-row[data-id="${grpo.id}"]`);
  await page.waitForSelector('#rollouts-box:not([hidden])');
  await until(async () => (await page.locator('#rollouts li.rollout').count()) === api.length, 'the rollouts to show');
  // newest first, as the API lists them; the text is the tokens' texts
  const first = page.locator('#rollouts li.rollout').first();
  assertEq(await first.getAttribute('data-id'), String(api[0].id), 'the newest rollout first');
  const tokens = api[0].tokens;
  assertEq(await first.locator('.tok').count(), tokens.length, 'a span per token');
  assertEq(await first.locator('.response').textContent(), tokens.map((t) => t.text).join(''), 'the response text');
  assertEq(await first.locator('.prompt').textContent(), api[0].prompt, 'the prompt');

  // colour and tooltip of every token, for two quantities
  for (const quantity of ['advantage', 'kl', 'logprob']) {
    await page.selectOption('#r-quantity', quantity);
    let scale = 0;
    for (const r of api) for (const t of r.tokens) if (t[quantity] !== null) scale = Math.max(scale, Math.abs(t[quantity]));
    const shown = await first.locator('.tok').evaluateAll((spans) => spans.map((s) => ({ bg: s.style.backgroundColor, title: s.title, value: s.dataset.value })));
    for (let i = 0; i < tokens.length; i++) {
      const v = tokens[i][quantity];
      assertEq(Number(shown[i].value), v, `token ${i} carries its ${quantity}`);
      assert(shown[i].title.includes(`${quantity} ${Number(v).toPrecision(4)}`), `token ${i} tooltip: ${shown[i].title}`);
      assert(shown[i].title.includes(`logprob ${Number(tokens[i].logprob).toPrecision(4)}`), `token ${i} tooltip has the log-prob`);
      if (v > 0) assert(shown[i].bg.startsWith('rgba(220, 38, 38'), `token ${i} (${quantity} ${v}) is red: ${shown[i].bg}`);
      else if (v < 0) assert(shown[i].bg.startsWith('rgba(37, 99, 235'), `token ${i} (${quantity} ${v}) is blue: ${shown[i].bg}`);
      if (scale > 0 && Math.abs(v) === scale) assert(/0\.75\)$/.test(shown[i].bg), `the strongest token is at full strength: ${shown[i].bg}`);
    }
  }
  await screenshot(page, 'rollouts.png');
  assertNoProblems(page);
}
