// Server text that looks like HTML stays text: a prompt, responses, a
// project name and a dataset name carrying markup and script are shown
// literally on both pages, no element is created from them, and no script
// runs (no dialog, no global set, no page error).
import { assert, assertEq, assertNoProblems, login, newPage, screenshot } from './lib.mjs';

const PROMPT = `<img src=x onerror="window.__xss='prompt';alert('prompt')">Prompt & <b>bold</b>`;
const SCRIPT = `<script>window.__xss='script';alert('script')</script>`;
const IMG = `<img src=x onerror="window.__xss='img';alert('img')"><i>italic</i>`;
const PROJECT = `<svg onload="window.__xss='project'">p</svg>`;
const DATASET = `<img src=x onerror="window.__xss='dataset'">d`;

export default async function ({ browser, daemon }) {
  const project = await daemon.api('POST', '/v1/projects', { name: PROJECT, k: 2 });
  await daemon.api('POST', `/v1/projects/${project.id}/comparisons`, { prompt: PROMPT, candidates: [{ text: SCRIPT }, { text: IMG }] });
  await daemon.api('POST', '/v1/datasets', { name: DATASET, format: 'sft' });

  const page = await newPage(browser);
  await login(page, daemon, daemon.admin, '#annotate');
  await page.waitForSelector('#annotate:not([hidden]) .card');
  assertEq(await page.textContent('#prompt'), PROMPT, 'the prompt as text');
  // The responses come in the annotator's shuffled order: both, as text.
  const texts = await page.locator('.card .text').allTextContents();
  assertEq(texts.slice().sort(), [SCRIPT, IMG].sort(), 'both responses as text');
  assertEq(await page.textContent('#project option'), `${PROJECT} (#${project.id}, k ≤ 2)`, 'the project name as text');
  // Visible as the literal characters.
  assert(await page.getByText(SCRIPT, { exact: true }).isVisible(), 'the script text is visible');
  assert(await page.getByText(IMG, { exact: true }).isVisible(), 'the img text is visible');
  assertEq(await page.locator('main img, main script, main b, main i, main svg').count(), 0, 'no element was made from server text');
  await screenshot(page, 'xss-annotator.png');

  await page.click('#nav-dashboard');
  await page.waitForSelector('#dashboard:not([hidden]) #launch');
  await page.selectOption('#l-type', 'sft');
  await page.waitForFunction((name) => [...document.querySelectorAll('#l-train option')].some((o) => o.textContent.includes(name)), DATASET);
  assertEq(await page.locator('main img, main script, main svg').count(), 0, 'no element from the dataset name');

  assertEq(await page.evaluate(() => window.__xss === undefined), true, 'no injected script ran');
  assertNoProblems(page);
  await page.context().close();
}
