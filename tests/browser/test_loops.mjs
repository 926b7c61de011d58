// An online loop of one round runs through the API (a tiny sft model, two
// pairwise comparisons ranked by an annotator token); the dashboard's
// "Online loops" panel shows the loop's status and its round's signals as
// GET /v1/loops/{id} reports them.
import { assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

const TINY_SFT = { n_layer: 1, d_model: 32, n_head: 2, context: 64, batch_size: 8, max_steps: 20, eval_interval: 0, sample_interval: 0, checkpoint_interval: 10 };
const SUBJECTS = ['cat', 'dog', 'river', 'city'];
const WORDS = ['warm', 'kind', 'cold', 'old', 'tall', 'grim'];
const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toPrecision(3)); // as loops.js shows numbers

export default async function ({ browser, daemon }) {
  const sft = await daemon.api('POST', '/v1/datasets', { name: 'sft', format: 'sft' });
  const rows = Array.from({ length: 32 }, (_, i) => {
    const s = SUBJECTS[i % 4];
    return JSON.stringify({ prompt: `Describe the ${s}.`, response: ` The ${s} is ${WORDS[i % 6]} and ${WORDS[(i + 1) % 6]}.` });
  });
  await daemon.upload(sft.id, rows.join('\n'));
  const job = await daemon.api('POST', '/v1/jobs', { type: 'sft', training_file: sft.id, hyperparameters: TINY_SFT });
  const prompts = await daemon.api('POST', '/v1/datasets', { name: 'prompts', format: 'prompts' });
  await daemon.upload(prompts.id, SUBJECTS.map((s) => JSON.stringify({ prompt: `Describe the ${s}.` })).join('\n'));
  const project = await daemon.api('POST', '/v1/projects', { name: 'loop', k: 2, overlap: 1 });
  const ann = await daemon.api('POST', '/v1/tokens', { name: 'ann', role: 'annotator' });
  await daemon.api('POST', `/v1/projects/${project.id}/members`, { token_id: ann.id });
  const annotator = ann.token;
  await until(async () => (await daemon.api('GET', `/v1/jobs/${job.id}`)).status === 'succeeded', 'the sft job', 60000);

  const loop = await daemon.api('POST', '/v1/loops', {
    name: 'panel',
    model: `job:${job.id}`,
    project: project.id,
    prompts: prompts.id,
    rounds: 1,
    prompts_per_round: 2,
    samples_per_prompt: 3,
    rankings_per_round: 2,
    max_tokens: 8,
    eval_prompts: 2,
    gold: true,
    reward_hyperparameters: { batch_size: 2, max_steps: 2, eval_interval: 0, norm_samples: 2, norm_max_tokens: 8 },
    policy_hyperparameters: { total_updates: 1, batch_size: 2, mini_batch_size: 2, ppo_epochs: 1, response_length: 8, sample_interval: 0 },
  });
  await until(async () => (await daemon.api('GET', `/v1/loops/${loop.id}`)).phase === 'annotating', 'the comparisons', 60000);
  for (const c of (await daemon.api('GET', `/v1/projects/${project.id}/comparisons`)).data) {
    const [a, b] = c.candidates.map((x) => x.id);
    await daemon.api('POST', `/v1/comparisons/${c.id}/rankings`, { order: [[a], [b]] }, annotator);
  }
  const done = await until(async () => {
    const l = await daemon.api('GET', `/v1/loops/${loop.id}`);
    return l.status === 'succeeded' && l;
  }, 'the loop to succeed', 90000);

  const page = await newPage(browser, { viewport: { width: 1440, height: 900 } });
  await login(page, daemon, daemon.admin, '#dashboard');
  await page.click('#loops-box summary');
  const block = `.loop[data-id="${loop.id}"][data-status="succeeded"]`;
  await page.waitForSelector(block);
  const round = done.rounds[0];
  const cell = (key) => page.textContent(`${block} tr[data-round="1"] td[data-key="${key}"]`);
  assertEq(await cell('rankings'), '2', 'the rankings collected');
  assertEq(await cell('selection'), 'random', 'the rule (no reward model before round 1)');
  assertEq(await cell('rm_accuracy'), '–', 'no earlier reward model to score them');
  assertEq(await cell('kl'), fmt(round.kl), 'the KL the loop reports');
  assertEq(await cell('gold_score'), fmt(round.gold_score), 'the gold score the loop reports');
  assertEq(await page.textContent(`${block} .stop-reason`), ' · stopped: all rounds ran', 'why it stopped');
  await screenshot(page, 'dashboard-loops.png');
  assertNoProblems(page);
  await page.context().close();
}
