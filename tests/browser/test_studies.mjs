// A study of 2 variations x 2 seeds (short ppo-control runs) created through
// the API: the studies view lists it, overlays one mean line and band per
// variation on the union of the steps the curves route reports, and its
// summary table shows what GET /v1/studies/{id} computes; a viewer sees it
// with no cancel button.
import { assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

export default async function ({ browser, daemon }) {
  const study = await daemon.api('POST', '/v1/studies', {
    name: 'clip in the browser',
    base: { type: 'ppo-control', hyperparameters: { total_steps: 4096 } },
    variations: [
      { label: 'tight', hyperparameters: { clip_coef: 0.1 } },
      { label: 'loose', hyperparameters: { clip_coef: 0.3 } },
    ],
    seeds: [1, 2],
    metric: 'episodic_return',
  });
  assertEq(study.jobs.length, 4, 'four jobs');

  const page = await newPage(browser, { viewport: { width: 1440, height: 900 } });
  await login(page, daemon, daemon.admin, '#studies');
  await page.waitForSelector(`tr.study-row[data-id="${study.id}"]`);
  await page.click(`tr.study-row[data-id="${study.id}"]`);
  await until(async () => (await page.textContent('#study-status')) === 'succeeded', 'the study to succeed');
  assertEq(await page.textContent('#study-title'), `Study ${study.id} · clip in the browser`, 'the study pane');

  const curves = await daemon.api('GET', `/v1/studies/${study.id}/curves`);
  const steps = new Set(curves.variations.flatMap((v) => v.steps.map((p) => p.step)));
  await until(async () => (await page.getAttribute('#study-chart', 'data-points')) === String(steps.size), `the chart to hold ${steps.size} steps`);
  assertEq(await page.getAttribute('#study-chart', 'data-variations'), '2', 'one line and band per variation');
  assert((await page.locator('#study-chart canvas').count()) >= 1, 'uPlot drew the chart');
  assertEq(await page.locator('#study-legend .legend-item').allTextContents(), ['tight', 'loose'], 'the legend');

  const full = await daemon.api('GET', `/v1/studies/${study.id}`);
  const fmt = (v, d) => String(Number(v.toPrecision(d)));
  for (const row of full.summary) {
    const tr = page.locator(`#study-summary tr[data-variation="${row.variation}"]`);
    assertEq(await tr.locator('td.final').textContent(), `${fmt(row.final_mean, 4)} ± ${fmt(row.final_std, 2)}`, `variation ${row.label}: final`);
    assertEq(await tr.locator('td.best').textContent(), `${fmt(row.best_mean, 4)} ± ${fmt(row.best_std, 2)}`, `variation ${row.label}: best`);
  }
  assertEq(await page.locator('#study-jobs tbody tr').count(), 4, 'the jobs table');
  assert(await page.isHidden('#study-cancel'), 'a finished study has nothing to cancel');

  // Another metric's curves on request.
  await page.fill('#study-metric', 'entropy');
  await page.click('#study-metric-form button[type=submit]');
  await until(async () => (await page.getAttribute('#study-chart', 'data-metric')) === 'entropy', 'the entropy curves');
  await screenshot(page, 'studies.png');
  assertNoProblems(page);
}
