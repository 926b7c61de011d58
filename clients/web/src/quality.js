// quality.js — the admin's annotation quality page (#quality): per
// annotator gold accuracy, agreement (pairwise and Krippendorff's alpha)
// and median time per comparison, and the project's position bias, from
// GET /v1/projects/{id}/quality; per annotator an Exclude / Include button
// (POST /v1/projects/{id}/annotators/{token_id}/exclude | include: their
// rankings leave or rejoin the exports and the reward / DPO jobs trained on
// the project). Everything the server sends is text.
import { api, listAll } from './api.js';
import { $, clear, el, fillSelect, setText } from './dom.js';

let active = false;

const pct = (v) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(1)}%`);
const num = (v, digits = 3) => (v === null || v === undefined ? '–' : v.toFixed(digits));
const secs = (ms) => (ms === null || ms === undefined ? '–' : `${(ms / 1000).toFixed(1)} s`);

async function load() {
  const pid = Number($('q-project').value);
  const body = $('q-table').querySelector('tbody');
  const bias = $('q-bias').querySelector('tbody');
  clear(body);
  clear(bias);
  setText($('q-summary'), '');
  if (!pid) {
    setText($('q-status'), 'There are no projects yet.');
    return;
  }
  setText($('q-status'), 'Loading…');
  let q;
  try {
    q = await api('GET', `/v1/projects/${pid}/quality`);
  } catch (err) {
    setText($('q-status'), err.describe());
    return;
  }
  let excluded = new Set();
  try {
    const annotators = await listAll(`/v1/projects/${pid}/annotators`, 500);
    excluded = new Set(annotators.filter((a) => a.excluded).map((a) => a.id));
  } catch (err) {
    setText($('q-status'), err.describe());
    return;
  }
  setText($('q-status'), '');
  setText($('q-summary'), `${q.n_rankings} rankings, ${q.n_skipped} skips · Krippendorff's α (ordinal) ${num(q.alpha)}`);
  for (const a of q.annotators)
    body.append(
      el(
        'tr',
        { dataset: { annotator: a.annotator } },
        el('td', {}, a.annotator),
        el('td', {}, String(a.n_ranked)),
        el('td', {}, String(a.n_skipped)),
        el('td', {}, String(a.gold.n)),
        el('td', { className: 'gold-top' }, pct(a.gold.top_accuracy)),
        el('td', {}, pct(a.gold.pair_accuracy)),
        el('td', {}, pct(a.pairwise_agreement)),
        el('td', { className: 'alpha' }, num(a.alpha)),
        el('td', {}, secs(a.median_time_ms)),
        el('td', {}, exclusionButton(pid, a.token_id, excluded.has(a.token_id))),
      ),
    );
  for (const k of q.position_bias.by_k)
    bias.append(
      el(
        'tr',
        { dataset: { k: k.k } },
        el('td', {}, String(k.k)),
        el('td', {}, String(k.n)),
        el('td', {}, `${k.first_wins} (${pct(k.first_win_rate)})`),
        el('td', {}, pct(k.expected_rate)),
        el('td', {}, `${pct(k.ci95[0])} – ${pct(k.ci95[1])}`),
        el('td', { className: 'p' }, k.p_value < 0.001 ? '< 0.001' : k.p_value.toFixed(3)),
      ),
    );
}

// Excluded annotators' rankings stay stored; the button flips the state and
// reloads the table from the server.
function exclusionButton(pid, tokenId, isExcluded) {
  const b = el('button', { type: 'button', className: isExcluded ? 'include' : 'exclude' },
    isExcluded ? 'Include' : 'Exclude');
  b.title = isExcluded
    ? 'Their rankings are left out of exports and training: bring them back'
    : 'Leave their rankings out of exports and of reward / DPO jobs on this project';
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await api('POST', `/v1/projects/${pid}/annotators/${tokenId}/${isExcluded ? 'include' : 'exclude'}`);
    } catch (err) {
      setText($('q-status'), err.describe());
      b.disabled = false;
      return;
    }
    await load();
  });
  return b;
}

async function loadProjects() {
  let projects;
  try {
    projects = await listAll('/v1/projects', 500);
  } catch (err) {
    setText($('q-status'), err.describe());
    return;
  }
  fillSelect($('q-project'), projects, (p) => `${p.name} (#${p.id})`);
  await load();
}

export function init() {
  $('q-project').addEventListener('change', load);
  $('q-refresh').addEventListener('click', load);
}

export function show() {
  if (active) return;
  active = true;
  loadProjects();
}

export function hide() {
  active = false;
}
