// loops.js — the online RLHF loops on the dashboard (docs/api.md, "Online
// loops"): each loop's status, phase and round, and a table of its rounds'
// signals — rankings collected, the previous reward model's accuracy on the
// NEW rankings (before it trained on them), agreement, proxy score, KL and
// the demo task's gold score — and why a finished loop stopped. Read-only;
// refreshed with the jobs list.
import { api } from './api.js';
import { $, clear, el, setText } from './dom.js';

const COLUMNS = [
  ['round', 'round'],
  ['rule', 'selection'],
  ['rankings', 'rankings'],
  ['RM acc. (new)', 'rm_accuracy'],
  ['agreement', 'agreement'],
  ['proxy', 'proxy_score'],
  ['KL', 'kl'],
  ['gold', 'gold_score'],
];

function fmt(x) {
  if (x === null || x === undefined) return '–';
  if (typeof x === 'number' && !Number.isInteger(x)) return x.toPrecision(3);
  return String(x);
}

function roundsTable(loop) {
  return el(
    'table',
    { className: 'jobs loop-rounds' },
    el('thead', {}, el('tr', {}, ...COLUMNS.map(([h]) => el('th', {}, h)))),
    el(
      'tbody',
      {},
      ...loop.rounds.map((r) =>
        el('tr', { dataset: { round: r.round } }, ...COLUMNS.map(([, key]) => el('td', { dataset: { key } }, fmt(r[key])))),
      ),
    ),
  );
}

// Why a succeeded loop stopped (stop_reason): all its rounds, or the plateau rule.
function stopText(loop) {
  const rule = loop.config.plateau;
  return loop.stop_reason === 'plateau' && rule
    ? `stopped: ${rule.metric} plateau (${rule.patience} round${rule.patience === 1 ? '' : 's'} without +${rule.min_delta})`
    : 'stopped: all rounds ran';
}

function loopBlock(loop) {
  return el(
    'div',
    { className: 'loop', dataset: { id: loop.id, status: loop.status } },
    el(
      'p',
      { className: 'meta' },
      `loop ${loop.id}${loop.name ? ` (${loop.name})` : ''} `,
      el('span', { className: `badge ${loop.status}` }, loop.status),
      ` round ${loop.round}/${loop.config.rounds} · ${loop.phase} · project ${loop.project}`,
      loop.stop_reason ? el('span', { className: 'stop-reason' }, ` · ${stopText(loop)}`) : null,
    ),
    loop.error ? el('p', { className: 'error' }, loop.error) : null,
    roundsTable(loop),
  );
}

export async function loadLoops() {
  try {
    const page = await api('GET', '/v1/loops?limit=20');
    const box = $('loops');
    clear(box);
    for (const loop of page.data) box.append(loopBlock(loop));
    $('loops-empty').hidden = page.data.length > 0;
    setText($('loops-error'), '');
  } catch (err) {
    setText($('loops-error'), err.describe ? err.describe() : String(err));
  }
}
