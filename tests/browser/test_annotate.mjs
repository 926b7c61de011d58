// An annotator logs in, ranks three comparisons (clicks, number keys, a
// drag that makes a tie, a note, a skip) and the rankings read back through
// the API exactly as given. The token stays out of the URL and storage other
// than sessionStorage. rlhfd runs with a write rate limit of 2 at once then
// 1 per second; just before the third answer the test spends the
// annotator's allowance itself (bodies the server would refuse anyway), so
// the page's answer meets a 429 and the page retries it after Retry-After
// (with the same Idempotency-Key).
import { EXPECTED_ERRORS, assert, assertEq, assertNoProblems, login, newPage, screenshot, until } from './lib.mjs';

export default async function ({ browser, daemon }) {
  const ann = await daemon.api('POST', '/v1/tokens', { name: 'alice', role: 'annotator' });
  const project = await daemon.api('POST', '/v1/projects', { name: 'greetings', k: 3, overlap: 1 });
  await daemon.api('POST', `/v1/projects/${project.id}/members`, { token_id: ann.id });
  const mk = (prompt, texts) => daemon.api('POST', `/v1/projects/${project.id}/comparisons`, { prompt, candidates: texts.map((text) => ({ text })) });
  const c1 = await mk('Greet a new colleague.', ['Hello, welcome to the team! Let me know if you need anything.', 'hi', 'Welcome aboard.']);
  const c2 = await mk('Summarise: the cat sat on the mat.', ['A cat sat on a mat.', 'The cat was on the mat.', 'Cat, mat.']);
  const c3 = await mk('Say something.', ['Something.', 'Nothing.']);
  // The page shows each annotator the responses in their own shuffled
  // order (the server's shown_order): expectations are in that order.
  const shown = {};
  const shownNow = async (c) => {
    shown[c.id] = await page.locator('.card').evaluateAll((cards) => cards.map((x) => Number(x.dataset.cid)));
    const next = await daemon.api('GET', `/v1/comparisons/${c.id}`, undefined, ann.token);
    assertEq(shown[c.id], next.shown_order, 'the page shows the server\'s shown order');
  };
  // A tie group comes back in stored (id) order.
  const group = (...cids) => cids.slice().sort((a, b) => a - b);
  await daemon.restart(['--write-rate', '1', '--write-burst', '2']);

  const page = await newPage(browser);
  await login(page, daemon, ann.token);
  await page.waitForSelector('#annotate:not([hidden]) .card');
  assert(!page.url().includes(ann.token), 'the token is not in the URL');
  assertEq(await page.evaluate(() => sessionStorage.getItem('rlhfd.token')), ann.token, 'token in sessionStorage');
  assertEq(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  assertEq((await page.context().cookies()).length, 0, 'no cookies');
  assert((await page.content()).indexOf(ann.token) < 0, 'the token is not in the document');

  // Comparison 1 (the oldest comes first): click C then A; B goes last on
  // Enter.
  assertEq(await page.textContent('#prompt'), c1.prompt, 'the first comparison');
  await shownNow(c1);
  assertEq(await page.locator('.card').count(), 3, 'three responses side by side');
  const y = await page.locator('.card').evaluateAll((cards) => cards.map((c) => Math.round(c.getBoundingClientRect().top)));
  assert(y[0] === y[1] && y[1] === y[2], `responses are side by side on a laptop (tops ${y})`);
  await page.click('.card[data-index="3"]');
  await page.click('.card[data-index="1"]');
  assertEq(await page.textContent('.card[data-index="3"] .rank'), '1st', 'rank badge of C');
  await screenshot(page, 'annotator-laptop.png');
  await page.keyboard.press('Enter');

  // Comparison 2: keys 1, 2, 3, then drag C onto the 2nd rank (a tie), a
  // note, submit by the button.
  await until(async () => (await page.textContent('#prompt')) === c2.prompt, 'the second comparison');
  await shownNow(c2);
  for (const k of ['1', '2', '3']) await page.keyboard.press(k);
  assertEq(await page.locator('#ranking .group').count(), 3, 'three ranks after keys');
  await page.dragAndDrop(`#ranking .chip[data-cid="${shown[c2.id][2]}"]`, '#ranking .group[data-rank="2"]');
  assertEq(await page.locator('#ranking .group').count(), 2, 'the drag made a tie');
  assertEq(await page.textContent('.card[data-index="3"] .rank'), '2nd (tie)', 'tie badge');
  await page.fill('#note', 'B and C say the same');
  await page.keyboard.press('!'); // typed into the note, not a shortcut
  await page.keyboard.press('s');
  await page.click('#submit');

  // Comparison 3: skipped with the s key; then nothing is left.
  await until(async () => (await page.textContent('#prompt')) === c3.prompt, 'the third comparison');
  const pageStatuses = [];
  page.on('response', (resp) => { if (resp.url().includes('/rankings')) pageStatuses.push(resp.status()); });
  for (let i = 0; i < 10; i++) {
    const resp = await fetch(`${daemon.url}/v1/comparisons/${c3.id}/rankings`, { method: 'POST', headers: { Authorization: `Bearer ${ann.token}`, 'Content-Type': 'application/json' }, body: '{}' });
    if (resp.status === 429) break;
  }
  await page.keyboard.press('s');
  await until(async () => /Nothing left/.test(await page.textContent('#ann-status')), 'the end of the queue');
  assert(/ranked this session: 3/.test(await page.textContent('#progress')), 'progress counts 3');

  const ranking = async (c) => (await daemon.api('GET', `/v1/comparisons/${c.id}/rankings`)).data;
  const r1 = await ranking(c1);
  assertEq(r1.length, 1, 'one ranking of comparison 1');
  assertEq(r1[0].order, [[shown[c1.id][2]], [shown[c1.id][0]], [shown[c1.id][1]]], 'comparison 1 order');
  assertEq(r1[0].shown_order, shown[c1.id], 'the ranking keeps the order it was shown in');
  assertEq(r1[0].annotator, 'alice', 'the annotator is the token');
  assertEq(r1[0].skipped, false, 'not skipped');
  const r2 = await ranking(c2);
  assertEq(r2[0].order, [[shown[c2.id][0]], group(shown[c2.id][1], shown[c2.id][2])], 'comparison 2 order with the tie');
  assertEq(r2[0].note, 'B and C say the same!s', 'the note (the s typed in it was not a skip)');
  assertEq(r2[0].n_pairs, 2, 'a tie gives two pairs');
  const r3 = await ranking(c3);
  assertEq(r3[0].skipped, true, 'comparison 3 skipped');
  assert(pageStatuses.includes(429), `the page met a 429 (${pageStatuses}) and retried it`);
  const pairs = await daemon.api('GET', `/v1/projects/${project.id}/pairs?limit=100`);
  assertEq(pairs.data.length, 5, 'pairs: 3 from the strict order, 2 from the tie, none from the skip');
  assertNoProblems(page, [...EXPECTED_ERRORS, /status of 429/]);

  // The same page on a phone: one column.
  const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await daemon.api('POST', `/v1/projects/${project.id}/comparisons`, { prompt: 'Pick the kinder reply.', candidates: [{ text: 'Sure, happy to help!' }, { text: 'Figure it out yourself.' }] });
  await login(phone, daemon, ann.token);
  await phone.waitForSelector('.card');
  const x = await phone.locator('.card').evaluateAll((cards) => cards.map((c) => Math.round(c.getBoundingClientRect().left)));
  assert(x[0] === x[1], `responses stack on a phone (lefts ${x})`);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px)`);
  await phone.click('.card[data-index="2"]');
  await screenshot(phone, 'annotator-phone.png');
  assertNoProblems(phone);
  await page.context().close();
  await phone.context().close();
}
