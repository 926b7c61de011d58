// An admin launches a short ppo-control job from the dashboard: first with a
// bad hyperparameter (the server's message and param are shown on the
// form), then a valid one; the job's charts receive every metric point the
// API reports, its events and final checkpoint appear, and a second job is
// cancelled with the button.
import { assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

export default async function ({ browser, daemon }) {
  const page = await newPage(browser, { viewport: { width: 1440, height: 900 } });
  await login(page, daemon, daemon.admin, '#dashboard');
  await page.waitForSelector('#dashboard:not([hidden]) #launch');
  await page.selectOption('#l-type', 'ppo-control');

  // The server validates the hyperparameters; its error names the key.
  await page.fill('#l-hp', JSON.stringify({ total_steps: 4096, gamma: 2 }));
  await page.click('#l-submit');
  await until(async () => (await page.textContent('#launch-error')).length > 0, 'the launch error');
  const err = await page.textContent('#launch-error');
  assert(err.startsWith('hyperparameters.gamma: '), `the error names the param: ${err}`);
  assert(await page.locator('#l-hp.invalid').count(), 'the hyperparameters field is marked');
  assertEq((await daemon.api('GET', '/v1/jobs')).data.length, 0, 'nothing was created');

  // ranks goes into the body; the server refuses it for a one-process type,
  // naming the field, which the form marks.
  await page.fill('#l-hp', JSON.stringify({ total_steps: 4096 }));
  await page.fill('#l-ranks', '2');
  await page.click('#l-submit');
  await until(async () => (await page.textContent('#launch-error')).startsWith('ranks: '), 'the ranks error');
  assert(await page.locator('#l-ranks.invalid').count(), 'the ranks field is marked');
  assertEq((await daemon.api('GET', '/v1/jobs')).data.length, 0, 'nothing was created');
  await page.fill('#l-ranks', '');

  // 16 updates of 4 x 128 steps.
  const hp = { env: 'CartPole-v1', total_steps: 8192, num_envs: 4, num_steps: 128, seed: 3 };
  await page.fill('#l-hp', JSON.stringify(hp));
  await page.click('#l-submit');
  await until(async () => (await page.textContent('#job-title')).startsWith('Job '), 'the new job to open');
  const jobs = (await daemon.api('GET', '/v1/jobs')).data;
  assertEq(jobs.length, 1, 'one job created');
  const job = jobs[0];
  assertEq(job.type, 'ppo-control', 'its type');
  assertEq(job.hyperparameters.total_steps, 8192, 'its hyperparameters');
  assertEq(await page.textContent('#job-title'), `Job ${job.id} · ppo-control`, 'the job pane');

  // Points arrive while it runs; at the end every chart holds exactly the
  // steps the metrics route reports.
  await page.waitForSelector('.chart[data-metric]');
  await until(async () => (await page.textContent('#job-status')) === 'succeeded', 'the job to succeed');
  await until(async () => /stream: ended/.test(await page.textContent('#job-stream')), 'the stream to end');
  const metrics = await daemon.api('GET', `/v1/jobs/${job.id}/metrics?limit=10000`);
  const names = Object.keys(metrics.data[0].metrics);
  assert(metrics.data.length >= 16, `the job reported ${metrics.data.length} updates`);
  for (const name of names) {
    const want = metrics.data.filter((d) => Number.isFinite(d.metrics[name])).length;
    await until(async () => (await page.getAttribute(`.chart[data-metric="${name}"]`, 'data-points')) === String(want), `chart ${name} to hold ${want} points`);
  }
  const last = metrics.data[metrics.data.length - 1];
  const latest = await page.textContent(`.chart[data-metric="${names[0]}"] .latest`);
  assert(latest.endsWith(`@ ${last.step}`), `the chart shows the last step (${latest})`);
  // uPlot drew something: canvases sized to the chart.
  assert((await page.locator('.chart canvas').count()) >= names.length, 'a canvas per chart');
  assert(/created/.test(await page.textContent('#events')), 'the events list');
  await until(async () => (await page.locator('#checkpoints tbody tr').count()) >= 1, 'the checkpoint list');
  assert(/final/.test(await page.textContent('#checkpoints')), 'the final checkpoint is listed');
  assertEq(await page.textContent(`tr.job-row[data-id="${job.id}"] .badge`), 'succeeded', 'the list shows the status');
  assert(await page.isDisabled('#job-cancel'), 'a finished job cannot be cancelled');
  await screenshot(page, 'dashboard.png');

  // Filters: type and status.
  await page.selectOption('#f-status', 'failed');
  await until(async () => !(await page.isHidden('#jobs-empty')), 'an empty filtered list');
  await page.selectOption('#f-status', 'succeeded');
  await page.waitForSelector(`tr.job-row[data-id="${job.id}"]`);

  // A long job, cancelled from the page.
  await page.fill('#l-hp', JSON.stringify({ total_steps: 50000000 }));
  await page.click('#l-submit');
  await until(async () => (await page.textContent('#job-title')) === `Job ${job.id + 1} · ppo-control`, 'the second job');
  await until(async () => !(await page.isDisabled('#job-cancel')) && (await page.textContent('#job-status')).startsWith('running'), 'the second job to run');
  await page.click('#job-cancel');
  await until(async () => (await page.textContent('#job-status')) === 'cancelled', 'the job to be cancelled');
  assertEq((await daemon.api('GET', `/v1/jobs/${job.id + 1}`)).status, 'cancelled', 'cancelled in the API');

  // Smoothness with 10,000+ points per series: the page's own chart code,
  // 12 series of 20,000 points, then frames of one new point per series.
  const perf = await page.evaluate(async () => {
    const { MetricCharts } = await import('/assets/charts.js');
    const box = document.createElement('div');
    box.className = 'charts';
    document.body.append(box);
    const charts = new MetricCharts(box);
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    let t0 = performance.now();
    for (let i = 0; i < 20000; i++) for (let s = 0; s < 12; s++) charts.add(`m${s}`, i, Math.sin(i / 100 + s));
    await frame();
    const first = performance.now() - t0;
    const times = [];
    for (let i = 20000; i < 20060; i++) {
      t0 = performance.now();
      for (let s = 0; s < 12; s++) charts.add(`m${s}`, i, Math.sin(i / 100 + s));
      charts.flush();
      times.push(performance.now() - t0);
    }
    await frame();
    const points = charts.points('m0');
    charts.destroy();
    box.remove();
    times.sort((a, b) => a - b);
    return { first, median: times[30], p95: times[57], points };
  });
  assertEq(perf.points, 20060, 'every point kept');
  console.log(`  charts: 12 series x 20,000 points: first draw ${perf.first.toFixed(0)} ms; one point per series per frame: median ${perf.median.toFixed(1)} ms, p95 ${perf.p95.toFixed(1)} ms`);
  assertNoProblems(page);
  await page.context().close();
}
