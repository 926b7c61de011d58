// Issue 18 on the annotator page and the admin's quality page: the
// project's guidelines are shown as Markdown with no raw HTML; a keyboard-
// only annotator ranks, rates (Likert) and flags a response; a skip carries
// its reason; the history edits a ranking (prefilled, then changed) and
// revisits a skip; the labels read back through the API exactly as given;
// the labels fit a phone; the quality page shows the annotator.
import { EXPECTED_ERRORS, assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

const GUIDELINES = [
  '# How to judge',
  '',
  'Prefer **honest** answers. See [the rubric](https://example.com/rubric).',
  '',
  '- be kind',
  '- be *brief*',
  '',
  `<script>window.__xss='g'</script><img src=x onerror="window.__xss='img'">`,
  `[bad link](javascript:window.__xss='link')`,
].join('\n');

export default async function ({ browser, daemon }) {
  const ann = await daemon.api('POST', '/v1/tokens', { name: 'bob', role: 'annotator' });
  const project = await daemon.api('POST', '/v1/projects', {
    name: 'labelled',
    k: 2,
    guidelines: GUIDELINES,
    label_schema: { ratings: [{ name: 'overall', min: 1, max: 7 }], flags: ['harmful', 'refusal'] },
  });
  await daemon.api('POST', `/v1/projects/${project.id}/members`, { token_id: ann.id });
  const mk = (prompt, texts) => daemon.api('POST', `/v1/projects/${project.id}/comparisons`, { prompt, candidates: texts.map((text) => ({ text })) });
  const c1 = await mk('Greet a colleague.', ['Hello and welcome!', 'Go away.']);
  const c2 = await mk('Explain quantum gravity in one word.', ['Strings.', 'Loops.']);
  const c3 = await mk('Say thanks.', ['Thanks!', 'No.']);

  const page = await newPage(browser);
  await login(page, daemon, ann.token);
  await page.waitForSelector('#annotate:not([hidden]) .card');

  // Guidelines: Markdown made into elements, HTML shown as text.
  assert(await page.isVisible('#guidelines-text'), 'the guidelines are shown');
  assertEq(await page.textContent('#guidelines-text h3'), 'How to judge', 'a heading');
  assertEq(await page.textContent('#guidelines-text strong'), 'honest', 'bold');
  assertEq(await page.locator('#guidelines-text li').count(), 2, 'a list');
  assertEq(await page.textContent('#guidelines-text em'), 'brief', 'emphasis');
  assertEq(await page.locator('#guidelines-text a').count(), 1, 'only the https link is a link');
  assertEq(await page.getAttribute('#guidelines-text a', 'href'), 'https://example.com/rubric', 'its href');
  assertEq(await page.locator('#guidelines-text script, #guidelines-text img').count(), 0, 'no element from raw HTML');
  assert((await page.textContent('#guidelines-text')).includes(`<script>window.__xss='g'</script>`), 'raw HTML shown as text');
  assert((await page.textContent('#guidelines-text')).includes(`[bad link](javascript:`), 'a javascript: link stays text');

  // Keyboard only: 1 ranks the first shown response; Tab to its rating,
  // type 6; Tab to "harmful", Space; Tab to Submit, Enter.
  assertEq(await page.textContent('#prompt'), c1.prompt, 'the first comparison');
  const shown1 = await page.locator('.card').evaluateAll((cards) => cards.map((x) => Number(x.dataset.cid)));
  await page.keyboard.press('1');
  const tabTo = async (selector, what) => {
    for (let i = 0; i < 60; i++) {
      if (await page.evaluate((sel) => document.activeElement && document.activeElement.matches(sel), selector)) return;
      await page.keyboard.press('Tab');
    }
    throw new Error(`Tab never reached ${what}`);
  };
  await tabTo(`.labels[data-cid="${shown1[0]}"] select.rating`, 'the first rating');
  await page.keyboard.press('6');
  await page.keyboard.press('Tab');
  assert(await page.evaluate(() => document.activeElement.matches('input.flag[data-flag="harmful"]')), 'Tab reaches the harmful flag');
  await page.keyboard.press(' ');
  assertEq(await page.textContent(`.card[data-cid="${shown1[0]}"] .rank`), '1st', 'the keyboard rank (Space on a flag did not rank)');
  await tabTo('#submit', 'Submit');
  await page.keyboard.press('Enter');
  await until(async () => (await page.textContent('#prompt')) === c2.prompt, 'the second comparison');
  const r1 = (await daemon.api('GET', `/v1/comparisons/${c1.id}/rankings`)).data[0];
  assertEq(r1.order, [[shown1[0]], [shown1[1]]], 'the keyboard order');
  assertEq(r1.labels, [{ candidate_id: shown1[0], ratings: { overall: 6 }, flags: ['harmful'] }], 'the Likert rating and the flag');

  // A skip with a reason.
  await page.selectOption('#skip-reason', 'cannot_judge');
  await page.click('#skip');
  await until(async () => (await page.textContent('#prompt')) === c3.prompt, 'the third comparison');
  const r2 = (await daemon.api('GET', `/v1/comparisons/${c2.id}/rankings`)).data[0];
  assertEq([r2.skipped, r2.skip_reason], [true, 'cannot_judge'], 'the skip and its reason');
  await page.click('.card[data-index="2"]');
  await page.keyboard.press('Enter');
  await until(async () => /Nothing left/.test(await page.textContent('#ann-status')), 'the end of the queue');

  // History: three entries; edit comparison 1 (prefilled), change it.
  await page.click('#history summary');
  await until(async () => (await page.locator('#history-list li').count()) === 3, 'three history entries');
  await page.click(`#history-list li[data-comparison="${c1.id}"] button.edit`);
  await until(async () => (await page.textContent('#prompt')) === c1.prompt, 'comparison 1 back for editing');
  assertEq(await page.inputValue(`.labels[data-cid="${shown1[0]}"] select.rating`), '6', 'the rating is prefilled');
  assert(await page.isChecked(`.labels[data-cid="${shown1[0]}"] input.flag[data-flag="harmful"]`), 'the flag is prefilled');
  assertEq(await page.textContent(`.card[data-cid="${shown1[0]}"] .rank`), '1st', 'the order is prefilled');
  await page.click('#clear');
  await page.click(`.card[data-cid="${shown1[1]}"]`);
  await page.selectOption(`.labels[data-cid="${shown1[0]}"] select.rating`, '3');
  await page.uncheck(`.labels[data-cid="${shown1[0]}"] input.flag[data-flag="harmful"]`);
  await page.check(`.labels[data-cid="${shown1[1]}"] input.flag[data-flag="refusal"]`);
  await screenshot(page, 'labels-edit.png');
  await page.click('#submit');
  await until(async () => /Nothing left/.test(await page.textContent('#ann-status')), 'back to the queue after the edit');
  const e1 = (await daemon.api('GET', `/v1/comparisons/${c1.id}/rankings`)).data;
  assertEq(e1.length, 1, 'still one ranking');
  assertEq(e1[0].id, r1.id, 'the same ranking, edited');
  assertEq(e1[0].order, [[shown1[1]], [shown1[0]]], 'the edited order');
  assertEq(e1[0].labels, [{ candidate_id: shown1[0], ratings: { overall: 3 } }, { candidate_id: shown1[1], flags: ['refusal'] }], 'the edited labels');
  assert(Number.isInteger(e1[0].updated_at), 'updated_at is set');

  // Revisit the skip: withdrawn, and the comparison is served again.
  await until(async () => (await page.locator(`#history-list li[data-comparison="${c2.id}"] button.revisit`).count()) === 1, 'the skip in the history');
  await page.click(`#history-list li[data-comparison="${c2.id}"] button.revisit`);
  await until(async () => (await page.textContent('#prompt')) === c2.prompt, 'the skipped comparison, revisited');
  assertEq((await daemon.api('GET', `/v1/comparisons/${c2.id}/rankings`)).data.length, 0, 'the skip was withdrawn');
  assertEq(await page.evaluate(() => window.__xss === undefined), true, 'no injected script ran');
  assertNoProblems(page, EXPECTED_ERRORS);

  // A phone: the labels fit, no horizontal scrolling.
  const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await login(phone, daemon, ann.token);
  await phone.waitForSelector('.card .labels select.rating');
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px)`);
  const x = await phone.locator('.card').evaluateAll((cards) => cards.map((c) => Math.round(c.getBoundingClientRect().left)));
  assert(x[0] === x[1], `responses stack on a phone (lefts ${x})`);
  await screenshot(phone, 'labels-phone.png');
  assertNoProblems(phone, EXPECTED_ERRORS);

  // The admin's quality page.
  const admin = await newPage(browser);
  await login(admin, daemon, daemon.admin, '#quality');
  await admin.waitForSelector('#quality:not([hidden]) #q-table tbody tr');
  assertEq(await admin.locator('#q-table tbody tr').count(), 1, 'one annotator');
  assertEq(await admin.textContent('#q-table tbody tr td:first-child'), 'bob', 'the annotator');
  assertEq(await admin.textContent('#q-table tbody tr .alpha'), '–', 'alpha is undefined with one annotator');
  assertEq(await admin.locator('#q-bias tbody tr[data-k="2"]').count(), 1, 'position bias for k = 2');
  // Exclude bob from the exports and training, then include him again: the
  // button follows the server's state.
  const bobId = (await daemon.api('GET', `/v1/projects/${project.id}/annotators`)).data[0].id;
  await admin.click('#q-table tbody tr button.exclude');
  await admin.waitForSelector('#q-table tbody tr button.include');
  assertEq((await daemon.api('GET', `/v1/projects/${project.id}/annotators`)).data.find((a) => a.id === bobId).excluded, true, 'bob excluded');
  await admin.click('#q-table tbody tr button.include');
  await admin.waitForSelector('#q-table tbody tr button.exclude');
  assertEq((await daemon.api('GET', `/v1/projects/${project.id}/annotators`)).data.find((a) => a.id === bobId).excluded, false, 'bob included again');
  await screenshot(admin, 'quality.png');
  assertNoProblems(admin, EXPECTED_ERRORS);
  await page.context().close();
  await phone.context().close();
  await admin.context().close();
}
