// The dashboard's stream survives rlhfd restarting: the page reconnects with
// Last-Event-ID (no event arrives twice), the job's second attempt re-reports
// its steps (the charts replace them), and at the end every chart matches
// the metrics route.
import { EXPECTED_ERRORS, assert, assertEq, assertNoProblems, login, newPage, until } from './lib.mjs';

const points = (page, name) => page.getAttribute(`.chart[data-metric="${name}"]`, 'data-points').then(Number);
const lastStep = async (page) => Number(/@ (\d+)$/.exec((await page.textContent('.chart[data-metric="global_step"] .latest')) || '')?.[1] || 0);

export default async function ({ browser, daemon }) {
  const job = await daemon.api('POST', '/v1/jobs', { type: 'ppo-control', hyperparameters: { total_steps: 50000000, num_envs: 2, num_steps: 64 } });
  const page = await newPage(browser);
  await login(page, daemon, daemon.admin, '#dashboard');
  await page.click(`tr.job-row[data-id="${job.id}"]`);
  await until(async () => (await page.getAttribute('.chart[data-metric="global_step"]', 'data-points').catch(() => null)) >= 3, 'three points before the restart');

  await daemon.restart();
  // Where the first attempt got to (it wrote its last update before it
  // stopped).
  const first = await daemon.api('GET', `/v1/jobs/${job.id}/metrics?names=global_step&limit=10000`);
  const before = first.data[first.data.length - 1].step;
  // The requeued job runs again from step 0 and passes where it was.
  await until(async () => (await page.locator('#events li[data-code="started"]').count()) === 2, 'the second attempt in the events list', 40000);
  await until(async () => (await lastStep(page)) > before, 'the second attempt to pass the first', 40000);
  assert(/stream: live/.test(await page.textContent('#job-stream')), 'the stream is live again');

  await daemon.api('POST', `/v1/jobs/${job.id}/cancel`);
  await until(async () => /stream: ended/.test(await page.textContent('#job-stream')), 'the stream to end');
  await until(async () => (await page.textContent('#job-status')) === 'cancelled', 'the status');

  const ids = await page.locator('#events li').evaluateAll((lis) => lis.map((li) => li.dataset.id));
  assertEq(new Set(ids).size, ids.length, 'no event was delivered twice');
  assertEq(await page.locator('#events li[data-code="created"]').count(), 1, 'one created event');
  const metrics = await daemon.api('GET', `/v1/jobs/${job.id}/metrics?names=global_step,entropy&limit=10000`);
  await until(async () => (await points(page, 'entropy')) === metrics.data.length, `the entropy chart to hold ${metrics.data.length} steps`);
  const last = metrics.data[metrics.data.length - 1];
  const latest = await page.textContent('.chart[data-metric="entropy"] .latest');
  assertEq(latest, ` ${Number(last.metrics.entropy.toPrecision(5))} @ ${last.step}`, 'the last entropy point is the stored one');
  // The restart cuts the stream and refuses connections for a moment.
  assertNoProblems(page, [...EXPECTED_ERRORS, /net::ERR_(INCOMPLETE_CHUNKED_ENCODING|CONNECTION_REFUSED|EMPTY_RESPONSE|CONNECTION_RESET)/]);
  await page.context().close();
}
