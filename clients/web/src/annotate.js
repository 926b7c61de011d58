// annotate.js — the annotator page: lease the next comparison of a project,
// show the project's guidelines, the prompt and its 2..k responses side by
// side (in the order the server shuffled for this annotator), rank them
// (click, number keys or drag; ties), rate and flag each response as the
// project's label schema asks, skip with a reason, note, submit; and the
// annotator's history, from which a ranking is edited or a skip revisited.
//
// The ranking is a list of groups, best first; a group of several is a tie.
// That is exactly the API's `order`.
import { api, ApiError, listAll } from './api.js';
import { $, clear, el, fillSelect, setText, typingIn } from './dom.js';
import { renderMarkdown } from './markdown.js';

let active = false;
let projects = [];
let current = null; // the leased comparison (or the one being edited)
let editing = null; // the ranking being edited, or null for a new one
let groups = []; // [[candidate id, ...], ...] best first
let history = []; // snapshots of groups for undo
let sessionCount = 0;
let busy = false;

const ordinal = (n) => {
  const s = ['th', 'st', 'nd', 'rd'];
  const v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
};

function projectId() {
  return Number($('project').value) || null;
}

function rankOf(cid) {
  return groups.findIndex((g) => g.includes(cid));
}

function snapshot() {
  history.push(groups.map((g) => g.slice()));
}

function setGroups(next) {
  groups = next.filter((g) => g.length > 0);
  render();
}

// Click / number key: rank the candidate next (a new last group, or the last
// group when tie mode is on); if it is ranked already, take it back.
function pick(cid) {
  if (!current || busy) return;
  snapshot();
  const next = groups.map((g) => g.filter((c) => c !== cid));
  if (rankOf(cid) < 0) {
    const tie = $('tie-mode').checked && next.length > 0;
    if (tie) next[next.length - 1].push(cid);
    else next.push([cid]);
    $('tie-mode').checked = false;
  }
  setGroups(next);
}

// Drag and drop: into an existing group (a tie) or a new last group.
function moveTo(cid, groupIndex) {
  snapshot();
  const target = groupIndex === null ? null : groups[groupIndex];
  const next = groups.map((g) => g.filter((c) => c !== cid));
  if (target) next[groupIndex].push(cid);
  else next.push([cid]);
  setGroups(next);
}

function undo() {
  if (history.length) setGroups(history.pop());
}

function candidateLabel(cid) {
  const i = current.candidates.findIndex((c) => c.id === cid);
  return String.fromCharCode(65 + i); // A, B, C...
}

function dragSource(node, cid) {
  node.draggable = true;
  node.addEventListener('dragstart', (e) => {
    e.dataTransfer.setData('text/plain', String(cid));
    e.dataTransfer.effectAllowed = 'move';
  });
}

function dropTarget(node, groupIndex) {
  node.addEventListener('dragover', (e) => {
    e.preventDefault();
    node.classList.add('over');
  });
  node.addEventListener('dragleave', () => node.classList.remove('over'));
  node.addEventListener('drop', (e) => {
    e.preventDefault();
    node.classList.remove('over');
    const cid = Number(e.dataTransfer.getData('text/plain'));
    if (current && current.candidates.some((c) => c.id === cid)) moveTo(cid, groupIndex);
  });
}

function render() {
  if (!current) return;
  for (const card of $('candidates').children) {
    const cid = Number(card.dataset.cid);
    const r = rankOf(cid);
    card.classList.toggle('ranked', r >= 0);
    const tied = r >= 0 && groups[r].length > 1;
    setText(card.querySelector('.rank'), r < 0 ? 'unranked' : `${ordinal(r + 1)}${tied ? ' (tie)' : ''}`);
    card.dataset.rank = r < 0 ? '' : String(r + 1);
  }
  const list = $('ranking');
  clear(list);
  groups.forEach((g, i) => {
    const li = el('li', { className: 'group', dataset: { rank: i + 1 } }, el('span', { className: 'pos' }, ordinal(i + 1)));
    for (const cid of g) {
      const chip = el('span', { className: 'chip', dataset: { cid } }, candidateLabel(cid));
      dragSource(chip, cid);
      li.append(chip);
    }
    dropTarget(li, i);
    list.append(li);
  });
  const left = current.candidates.length - groups.reduce((n, g) => n + g.length, 0);
  setText($('submit'), left > 1 ? `Submit (${left} left to rank)` : 'Submit (Enter)');
}

function currentProject() {
  return projects.find((x) => x.id === projectId()) || null;
}

// The label controls of one response: a select per rating, a checkbox per
// flag, prefilled from label (an item of a ranking's labels) if given.
function labelControls(c, i, label) {
  const schema = (currentProject() || {}).label_schema || { ratings: [], flags: [] };
  if (!schema.ratings.length && !schema.flags.length) return null;
  const box = el('div', { className: 'labels', dataset: { cid: c.id } });
  for (const r of schema.ratings) {
    const sel = el('select', { className: 'rating', dataset: { rating: r.name }, 'aria-label': `${r.name} of response ${i + 1}` }, el('option', { value: '' }, '–'));
    for (let v = r.min; v <= r.max; v++) sel.append(el('option', { value: String(v) }, String(v)));
    const given = label && label.ratings ? label.ratings[r.name] : undefined;
    if (given !== undefined) sel.value = String(given);
    box.append(el('label', {}, `${r.name} (${r.min}–${r.max}) `, sel));
  }
  for (const f of schema.flags) {
    const cb = el('input', { type: 'checkbox', className: 'flag', dataset: { flag: f } });
    cb.checked = Boolean(label && label.flags && label.flags.includes(f));
    box.append(el('label', { className: 'flag-label' }, cb, ` ${f}`));
  }
  // Clicking a control, or Space on it, must not rank the response.
  box.addEventListener('click', (e) => e.stopPropagation());
  box.addEventListener('keydown', (e) => e.stopPropagation());
  return box;
}

// The labels the controls hold, as the API takes them.
function collectLabels() {
  const out = [];
  for (const box of document.querySelectorAll('#candidates .labels')) {
    const item = { candidate_id: Number(box.dataset.cid) };
    const ratings = {};
    for (const sel of box.querySelectorAll('select.rating')) if (sel.value !== '') ratings[sel.dataset.rating] = Number(sel.value);
    const flags = [...box.querySelectorAll('input.flag:checked')].map((cb) => cb.dataset.flag);
    if (Object.keys(ratings).length) item.ratings = ratings;
    if (flags.length) item.flags = flags;
    if (item.ratings || item.flags) out.push(item);
  }
  return out;
}

function showGuidelines() {
  const p = currentProject();
  const box = $('guidelines-text');
  clear(box);
  const text = p && p.guidelines ? p.guidelines : '';
  $('guidelines').hidden = text === '';
  if (text) box.append(renderMarkdown(text));
}

function showComparison(cmp, ranking = null) {
  current = cmp;
  editing = ranking;
  groups = ranking && !ranking.skipped ? ranking.order.map((g) => g.slice()) : [];
  history = [];
  $('note').value = ranking && ranking.note ? ranking.note : '';
  $('skip-reason').value = ranking && ranking.skip_reason ? ranking.skip_reason : '';
  $('tie-mode').checked = false;
  setText($('ann-error'), '');
  setText($('prompt'), cmp.prompt);
  const until = cmp.lease_expires_at ? new Date(cmp.lease_expires_at * 1000).toLocaleTimeString() : '';
  setText($('cmp-meta'), ranking ? `comparison ${cmp.id} · editing your ranking ${ranking.id}` : `comparison ${cmp.id}${until ? ` · yours until ${until}` : ''}`);
  $('cancel-edit').hidden = !ranking;
  const box = $('candidates');
  clear(box);
  cmp.candidates.forEach((c, i) => {
    const card = el(
      'article',
      { className: 'card', dataset: { cid: c.id, index: i + 1 }, tabIndex: 0 },
      el('header', {}, el('kbd', {}, String(i + 1)), el('span', { className: 'label' }, ` Response ${candidateLabel(c.id)}`), el('span', { className: 'rank' })),
      // An empty answer (a model may say nothing) is a candidate too: say so.
      c.text.trim() === ''
        ? el('pre', { className: 'text empty' }, el('em', {}, '(empty answer)'))
        : el('pre', { className: 'text' }, c.text),
      labelControls(c, i, ranking ? (ranking.labels || []).find((l) => l.candidate_id === c.id) : null),
    );
    card.addEventListener('click', () => pick(c.id));
    card.addEventListener('keydown', (e) => {
      if (e.key === ' ') {
        e.preventDefault();
        pick(c.id);
      }
    });
    dragSource(card, c.id);
    box.append(card);
  });
  $('comparison').hidden = false;
  $('ann-retry').hidden = true;
  setText($('ann-status'), '');
  render();
}

function showProgress() {
  const p = projects.find((x) => x.id === projectId());
  const parts = [`ranked this session: ${sessionCount}`];
  if (p) parts.push(`project: ${p.n_comparisons} comparisons, each ranked by ${p.overlap}`);
  setText($('progress'), parts.join(' · '));
}

async function loadNext() {
  current = null;
  editing = null;
  $('comparison').hidden = true;
  const pid = projectId();
  showProgress();
  showGuidelines();
  loadHistory();
  if (!pid) {
    setText($('ann-status'), projects.length ? '' : 'There are no projects yet.');
    return;
  }
  setText($('ann-status'), 'Loading the next comparison…');
  try {
    showComparison(await api('GET', `/v1/projects/${pid}/comparisons/next`));
  } catch (err) {
    if (err.code === 'no_comparison_available')
      setText($('ann-status'), 'Nothing left to rank in this project for you. Thank you!');
    else setText($('ann-status'), err.describe());
    $('ann-retry').hidden = false;
  }
}

async function send(body) {
  if (!current || busy) return;
  busy = true;
  setText($('ann-error'), '');
  const note = $('note').value.trim();
  if (note) body.note = note;
  if (body.skip) {
    const reason = $('skip-reason').value;
    if (reason) body.skip_reason = reason;
  } else {
    const labels = collectLabels();
    if (labels.length) body.labels = labels;
  }
  try {
    if (editing) await api('PUT', `/v1/rankings/${editing.id}`, body);
    else {
      await api('POST', `/v1/comparisons/${current.id}/rankings`, body, { idempotent: true });
      sessionCount++;
    }
    await loadNext();
  } catch (err) {
    setText($('ann-error'), err instanceof ApiError ? err.describe() : String(err));
  } finally {
    busy = false;
  }
}

function submit() {
  if (!current) return;
  const ranked = new Set(groups.flat());
  const left = current.candidates.filter((c) => !ranked.has(c.id));
  let order = groups;
  if (left.length === 1) order = [...groups, [left[0].id]];
  else if (left.length > 1) {
    setText($('ann-error'), `Rank every response first (${left.length} left), or skip.`);
    return;
  }
  send({ order: order.map((g) => g.slice()) });
}

function onKey(e) {
  if (!active || !current || e.ctrlKey || e.metaKey || e.altKey || typingIn(e)) return;
  if (/^[1-9]$/.test(e.key)) {
    const c = current.candidates[Number(e.key) - 1];
    if (c) pick(c.id);
  } else if (e.key === 's') send({ skip: true });
  else if (e.key === 't') $('tie-mode').checked = !$('tie-mode').checked;
  else if (e.key === 'Enter') submit();
  else if (e.key === 'Backspace' || e.key === 'u') undo();
  else return;
  e.preventDefault();
}

// The caller's history: newest first, each with Edit (and Revisit for a
// skip: withdrawing it lets `next` serve it again).
async function loadHistory() {
  const list = $('history-list');
  let mine;
  try {
    mine = (await api('GET', '/v1/me/rankings?limit=50')).data.filter((r) => r.project_id === projectId());
  } catch (err) {
    setText($('history-status'), err.describe());
    return;
  }
  clear(list);
  setText($('history-status'), mine.length ? '' : 'Nothing ranked in this project yet.');
  for (const r of mine) {
    const what = r.skipped ? `skipped${r.skip_reason ? ` (${r.skip_reason.replace('_', ' ')})` : ''}` : `ranked${r.updated_at ? ', edited' : ''}`;
    const edit = el('button', { type: 'button', className: 'edit', dataset: { ranking: r.id } }, 'Edit');
    edit.addEventListener('click', () => editRanking(r));
    const li = el('li', { dataset: { ranking: r.id, comparison: r.comparison_id } }, `comparison ${r.comparison_id}: ${what} `, edit);
    if (r.skipped) {
      const revisit = el('button', { type: 'button', className: 'revisit' }, 'Revisit');
      revisit.addEventListener('click', async () => {
        try {
          await api('DELETE', `/v1/rankings/${r.id}`);
          await loadNext();
        } catch (err) {
          setText($('history-status'), err.describe());
        }
      });
      li.append(' ', revisit);
    }
    list.append(li);
  }
}

async function editRanking(r) {
  try {
    const cmp = await api('GET', `/v1/comparisons/${r.comparison_id}`);
    showComparison(cmp, r);
    $('comparison').scrollIntoView({ block: 'start' });
  } catch (err) {
    setText($('history-status'), err.describe());
  }
}

async function loadProjects() {
  try {
    projects = await listAll('/v1/projects', 500);
  } catch (err) {
    setText($('ann-status'), err.describe());
    return;
  }
  fillSelect($('project'), projects, (p) => `${p.name} (#${p.id}, k ≤ ${p.k})`);
  await loadNext();
}

export function init() {
  $('project').addEventListener('change', loadNext);
  $('ann-retry').addEventListener('click', loadNext);
  $('undo').addEventListener('click', undo);
  $('clear').addEventListener('click', () => {
    snapshot();
    setGroups([]);
  });
  $('skip').addEventListener('click', () => send({ skip: true }));
  $('cancel-edit').addEventListener('click', loadNext);
  $('submit').addEventListener('click', submit);
  dropTarget($('new-rank'), null);
  document.addEventListener('keydown', onKey);
}

export function show() {
  if (active) return;
  active = true;
  loadProjects();
}

export function hide() {
  active = false;
}
