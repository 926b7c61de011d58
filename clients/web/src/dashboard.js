// dashboard.js — jobs (list, filters, launch form) and one job at a time:
// live metric charts from the event stream, samples, events, checkpoints,
// cancel.
import { api, ApiError, followJob, getToken, listAll } from './api.js';
import { MetricCharts } from './charts.js';
import { $, clear, el, fmtBytes, fmtTime, setText } from './dom.js';
import { loadLoops } from './loops.js';
import { QUANTITIES, renderRollouts } from './rollouts.js';

// The job types the form offers, with the dataset format each trains on and
// the inputs it takes (docs/api.md, POST /v1/jobs: model = a checkpoint to
// start from, reward_model = a reward job's checkpoint, training_project =
// a project's rankings instead of a dataset). The server is the judge: what
// a build cannot run yet is answered with an error naming the field, which
// the form shows.
const JOB_TYPES = [
  { type: 'sft', format: 'sft', model: true, hp: { max_steps: 200, checkpoint_interval: 50 } },
  { type: 'reward', format: 'preference', model: true, project: true, hp: { epochs: 1 } },
  { type: 'ppo', format: 'prompts', model: true, reward: true, hp: { total_updates: 30 } },
  { type: 'dpo', format: 'preference', model: true, project: true, hp: { epochs: 1, beta: 0.1 } },
  {
    type: 'grpo', format: 'prompts', model: true, reward: true,
    hp: { total_steps: 100, grader: { type: 'string_check', input: '{{sample.output_text}}', reference: '{{item.answer}}', operation: 'eq' } },
  },
  {
    type: 'rloo', format: 'prompts', model: true, reward: true,
    hp: { total_steps: 100, grader: { type: 'string_check', input: '{{sample.output_text}}', reference: '{{item.answer}}', operation: 'eq' } },
  },
  { type: 'ppo-control', format: null, hp: { env: 'CartPole-v1', total_steps: 100000 } },
];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const MAX_EVENTS = 300;
const MAX_SAMPLES = 50;

let active = false;
let role = null;
let refreshTimer = 0;
let jobsAfter = null; // cursor of the next page of the list
let selected = null; // {id, job, abort, charts, pollTimer}
let datasets = [];
let checkpoints = [];
let baseModels = []; // registered models (POST /v1/models) that are ready
let projects = [];

/* ---- the jobs list ---------------------------------------------------------- */

function jobsQuery(after) {
  const q = new URLSearchParams({ limit: '50' });
  if ($('f-status').value) q.set('status', $('f-status').value);
  if ($('f-type').value) q.set('type', $('f-type').value);
  if (after) q.set('after', after);
  return `/v1/jobs?${q}`;
}

function jobRow(job) {
  const tr = el(
    'tr',
    { className: 'job-row', dataset: { id: job.id, status: job.status }, tabIndex: 0 },
    el('td', {}, String(job.id)),
    el('td', {}, job.type),
    el('td', {}, el('span', { className: `badge ${job.status}` }, job.status)),
    el('td', {}, fmtTime(job.created_at)),
  );
  if (selected && selected.id === job.id) tr.classList.add('selected');
  tr.addEventListener('click', () => selectJob(job.id));
  tr.addEventListener('keydown', (e) => e.key === 'Enter' && selectJob(job.id));
  return tr;
}

async function loadJobs(append = false) {
  try {
    const page = await api('GET', jobsQuery(append ? jobsAfter : null));
    const body = $('jobs').tBodies[0];
    if (!append) clear(body);
    for (const job of page.data) body.append(jobRow(job));
    jobsAfter = page.has_more ? page.last_id : null;
    $('jobs-more').hidden = !page.has_more;
    $('jobs-empty').hidden = body.rows.length > 0;
    setText($('jobs-error'), '');
  } catch (err) {
    setText($('jobs-error'), err.describe());
  }
}

/* ---- the launch form --------------------------------------------------------- */

function typeInfo() {
  return JOB_TYPES.find((t) => t.type === $('l-type').value) || JOB_TYPES[0];
}

function fillDatasetSelect(sel, format, optional) {
  const keep = sel.value;
  clear(sel);
  sel.append(el('option', { value: '' }, optional ? '(none)' : format ? '(choose a dataset)' : '(this type takes no dataset)'));
  for (const d of datasets.filter((x) => x.format === format))
    sel.append(el('option', { value: String(d.id) }, `#${d.id} ${d.name} (${d.n_rows} rows)`));
  sel.disabled = !format;
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

// Checkpoints of jobs of the given types (a policy for model, a reward job's
// for reward_model), after the registered base models when withBases (their
// names are models too: a lineage starts there).
function fillCheckpointSelect(sel, types, withBases = false) {
  const keep = sel.value;
  clear(sel);
  sel.append(el('option', { value: '' }, '(none)'));
  for (const m of withBases ? baseModels : [])
    sel.append(el('option', { value: m.id }, `${m.id}: registered ${m.family || ''} model`));
  for (const c of checkpoints.filter((x) => types.includes(x.job_type)))
    sel.append(el('option', { value: String(c.id) }, `#${c.id}: ${c.job_type} job ${c.job_id}, step ${c.step_number} (${c.kind})`));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

function fillProjectSelect(sel) {
  const keep = sel.value;
  clear(sel);
  sel.append(el('option', { value: '' }, '(none)'));
  for (const p of projects) sel.append(el('option', { value: String(p.id) }, `#${p.id} ${p.name}`));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

function onTypeChange() {
  const t = typeInfo();
  fillDatasetSelect($('l-train'), t.format, t.project);
  fillDatasetSelect($('l-valid'), t.format, true);
  fillProjectSelect($('l-project'));
  fillCheckpointSelect($('l-model'), ['sft', 'ppo', 'dpo', 'grpo', 'rloo'], true);
  fillCheckpointSelect($('l-reward'), ['reward']);
  $('l-model').disabled = !t.model;
  for (const n of document.querySelectorAll('.ppo-only')) n.hidden = !t.reward;
  for (const n of document.querySelectorAll('.reward-only')) n.hidden = !t.project;
  const hp = $('l-hp');
  if (!hp.dataset.edited) hp.value = JSON.stringify(t.hp, null, 2);
  markInvalid(null);
}

async function loadLaunchChoices() {
  try {
    datasets = await listAll('/v1/datasets', 500);
    projects = await listAll('/v1/projects', 500);
    baseModels = (await api('GET', '/v1/models')).data.filter((m) => m.source && m.status === 'ready');
    // Checkpoints of the most recent finished jobs.
    const jobs = await api('GET', '/v1/jobs?status=succeeded&limit=20');
    const lists = await Promise.all(jobs.data.map((j) => api('GET', `/v1/jobs/${j.id}/checkpoints?limit=20`)));
    checkpoints = lists.flatMap((l, i) => l.data.map((c) => ({ ...c, job_type: jobs.data[i].type })));
  } catch (err) {
    setText($('launch-error'), err.describe());
  }
  onTypeChange();
}

function markInvalid(param) {
  for (const n of $('launch').querySelectorAll('[data-param]')) {
    const p = n.dataset.param;
    const bad = param !== null && (param === p || param.startsWith(`${p}.`) || param.startsWith(`${p}[`));
    n.classList.toggle('invalid', bad);
    n.setAttribute('aria-invalid', bad ? 'true' : 'false');
  }
}

async function launch(event) {
  event.preventDefault();
  setText($('launch-error'), '');
  markInvalid(null);
  const t = typeInfo();
  const body = { type: t.type };
  const text = $('l-hp').value.trim();
  if (text) {
    try {
      body.hyperparameters = JSON.parse(text);
    } catch (err) {
      setText($('launch-error'), `hyperparameters: not valid JSON (${err.message})`);
      markInvalid('hyperparameters');
      return;
    }
  }
  const num = (id) => ($(id).value ? Number($(id).value) : null);
  if (num('l-train') !== null) body.training_file = num('l-train');
  if (num('l-valid') !== null) body.validation_file = num('l-valid');
  if (t.project && num('l-project') !== null) body.training_project = num('l-project');
  // a checkpoint id, or a registered model's name
  const model = $('l-model').value;
  if (t.model && model) body.model = /^\d+$/.test(model) ? Number(model) : model;
  if (t.reward && num('l-reward') !== null) body.reward_model = num('l-reward');
  if (num('l-attempts') !== null) body.max_attempts = num('l-attempts');
  if (num('l-ranks') !== null) body.ranks = num('l-ranks');
  $('l-submit').disabled = true;
  try {
    const job = await api('POST', '/v1/jobs', body, { idempotent: true });
    await loadJobs();
    selectJob(job.id);
  } catch (err) {
    setText($('launch-error'), err instanceof ApiError ? err.describe() : String(err));
    if (err.param) markInvalid(err.param);
  } finally {
    $('l-submit').disabled = false;
  }
}

/* ---- one job ---------------------------------------------------------------- */

function renderJob(job) {
  const firstRender = !selected.job;
  selected.job = job;
  setText($('job-title'), `Job ${job.id} · ${job.type}`);
  const badge = $('job-status');
  setText(badge, job.status + (job.cancel_requested && !TERMINAL.has(job.status) ? ' (cancelling)' : ''));
  badge.className = `badge ${job.status}`;
  const info = [`attempt ${job.attempts}/${job.max_attempts}`, `created ${fmtTime(job.created_at)}`];
  if (job.started_at) info.push(`started ${fmtTime(job.started_at)}`);
  if (job.finished_at) info.push(`finished ${fmtTime(job.finished_at)}`);
  if (job.training_file) info.push(`training_file ${job.training_file}`);
  if (job.validation_file) info.push(`validation_file ${job.validation_file}`);
  for (const key of ['training_project', 'model', 'reward_model', 'fine_tuned_model'])
    if (job[key] !== undefined && job[key] !== null) info.push(`${key} ${job[key]}`);
  setText($('job-info'), info.join(' · '));
  setText($('job-error'), job.error ? job.error.message : '');
  $('job-cancel').hidden = role !== 'admin';
  $('gen-box').hidden = job.type === 'ppo-control'; // its checkpoints are not language models
  $('rollouts-box').hidden = !ROLLOUT_TYPES.has(job.type);
  $('job-cancel').disabled = TERMINAL.has(job.status) || job.cancel_requested;
  if (firstRender) loadRollouts();
  for (const tr of $('jobs').tBodies[0].rows) {
    if (Number(tr.dataset.id) !== job.id) continue;
    tr.dataset.status = job.status;
    const b = tr.querySelector('.badge');
    setText(b, job.status);
    b.className = `badge ${job.status}`;
  }
}

async function refreshJob() {
  if (!selected) return;
  const id = selected.id;
  try {
    const job = await api('GET', `/v1/jobs/${id}`);
    if (selected && selected.id === id) renderJob(job);
  } catch (err) {
    if (selected && selected.id === id) setText($('job-error'), err.describe());
  }
}

async function loadCheckpoints() {
  if (!selected) return;
  const id = selected.id;
  let list;
  try {
    list = await listAll(`/v1/jobs/${id}/checkpoints`, 200);
  } catch (err) {
    return;
  }
  if (!selected || selected.id !== id) return;
  const sel = $('g-ckpt');
  const keep = sel.value;
  clear(sel);
  for (const c of list) sel.append(el('option', { value: String(c.id) }, `#${c.id}, step ${c.step_number} (${c.kind})`));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  $('g-submit').disabled = list.length === 0;
  const body = $('checkpoints').tBodies[0];
  clear(body);
  for (const c of list) {
    const button = el('button', { type: 'button', className: 'link' }, 'download');
    button.addEventListener('click', () => download(c));
    body.append(el('tr', {}, el('td', {}, String(c.id)), el('td', {}, String(c.step_number)), el('td', {}, c.kind), el('td', {}, fmtBytes(c.size_bytes)), el('td', {}, button)));
  }
}

// The policy-gradient jobs keep rollouts token by token (rollouts.js).
const ROLLOUT_TYPES = new Set(['ppo', 'grpo', 'rloo']);

async function loadRollouts() {
  if (!selected || !selected.job || !ROLLOUT_TYPES.has(selected.job.type)) return;
  const id = selected.id;
  let page;
  try {
    page = await api('GET', `/v1/jobs/${id}/rollouts?limit=10`);
  } catch (err) {
    return;
  }
  if (!selected || selected.id !== id) return;
  selected.rollouts = page.data;
  renderRollouts($('rollouts'), page.data, $('r-quantity').value);
}

// The content route needs the Authorization header, so a plain link will
// not do: fetch it and hand the browser a blob.
async function download(c) {
  const resp = await fetch(`/v1/checkpoints/${c.id}/content`, { headers: { Authorization: `Bearer ${getToken()}` } });
  if (!resp.ok) return setText($('job-error'), `checkpoint ${c.id}: HTTP ${resp.status}`);
  const url = URL.createObjectURL(await resp.blob());
  const a = el('a', { href: url, download: `job${c.job_id}-step${c.step_number}.safetensors` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function addLogItem(list, item, max) {
  list.prepend(item);
  while (list.children.length > max) list.lastChild.remove();
}

function onEvent(type, ev) {
  if (!selected) return;
  if (type === 'metrics' && ev.data && ev.data.metrics) {
    const step = ev.data.step;
    for (const [name, value] of Object.entries(ev.data.metrics)) selected.charts.add(name, step, value);
    return;
  }
  const when = el('time', {}, fmtTime(ev.created_at));
  if (ev.code === 'sample') {
    addLogItem($('samples'), el('li', { className: 'sample' }, when, el('pre', {}, ev.message)), MAX_SAMPLES);
  }
  addLogItem($('events'), el('li', { className: `event ${ev.level}`, dataset: { id: ev.id, code: ev.code } }, when, ' ', el('code', {}, ev.code || ev.type), ' ', ev.message), MAX_EVENTS);
  if (ev.code === 'checkpoint' || /checkpoint/.test(ev.message || '')) loadCheckpoints();
  if (['started', 'resumed', 'requeued', 'succeeded', 'failed', 'cancelled', 'cancel_requested'].includes(ev.code)) refreshJob();
}

function closeJob() {
  if (!selected) return;
  selected.abort.abort();
  clearInterval(selected.pollTimer);
  selected.charts.destroy();
  selected = null;
}

function selectJob(id) {
  closeJob();
  const abort = new AbortController();
  selected = { id, job: null, abort, charts: new MetricCharts($('charts')), pollTimer: 0, rollouts: [] };
  for (const tr of $('jobs').tBodies[0].rows) tr.classList.toggle('selected', Number(tr.dataset.id) === id);
  $('job-pane').hidden = false;
  $('job-none').hidden = true;
  clear($('samples'));
  clear($('rollouts'));
  clear($('events'));
  clear($('checkpoints').tBodies[0]);
  clear($('g-ckpt'));
  clear($('gen-out'));
  setText($('gen-error'), '');
  setText($('job-error'), '');
  refreshJob();
  loadCheckpoints();
  // The status also changes without events of its own (queued -> running).
  selected.pollTimer = setInterval(() => {
    if (selected && selected.job && !TERMINAL.has(selected.job.status)) {
      refreshJob();
      loadRollouts();
    }
  }, 3000);
  const me = selected;
  followJob(id, {
    signal: abort.signal,
    onEvent,
    onState: (s) => me === selected && setText($('job-stream'), `stream: ${s}`),
    onEnd: () => {
      if (me !== selected) return;
      refreshJob();
      loadCheckpoints();
      loadRollouts();
      loadJobs();
    },
  });
}

// POST /v1/checkpoints/{id}/generate: completions from one checkpoint.
async function generate(event) {
  event.preventDefault();
  const out = $('gen-out');
  setText($('gen-error'), '');
  for (const n of $('gen').querySelectorAll('[data-param]')) n.classList.remove('invalid');
  const id = Number($('g-ckpt').value);
  if (!id) return;
  const body = { prompt: $('g-prompt').value };
  for (const [field, key] of [['g-n', 'n'], ['g-max', 'max_tokens'], ['g-temp', 'temperature'], ['g-seed', 'seed']])
    if ($(field).value !== '') body[key] = Number($(field).value);
  $('g-submit').disabled = true;
  try {
    const reply = await api('POST', `/v1/checkpoints/${id}/generate`, body);
    clear(out);
    for (const c of reply.choices)
      out.append(el('li', { className: 'choice', dataset: { index: c.index } }, el('pre', {}, c.text), el('span', { className: 'meta' }, `${c.finish_reason} · seed ${reply.seed}`)));
  } catch (err) {
    setText($('gen-error'), err instanceof ApiError ? err.describe() : String(err));
    const bad = err.param && $('gen').querySelector(`[data-param="${CSS.escape(err.param.replace(/\[.*$/, ''))}"]`);
    if (bad) bad.classList.add('invalid');
  } finally {
    $('g-submit').disabled = false;
  }
}

async function cancelJob() {
  if (!selected) return;
  try {
    renderJob(await api('POST', `/v1/jobs/${selected.id}/cancel`));
  } catch (err) {
    setText($('job-error'), err.describe());
  }
}

/* ---- the view ---------------------------------------------------------------- */

export function init() {
  for (const t of JOB_TYPES) {
    $('l-type').append(el('option', { value: t.type }, t.type));
    $('f-type').append(el('option', { value: t.type }, t.type));
  }
  $('l-type').value = 'ppo-control';
  $('l-type').addEventListener('change', onTypeChange);
  $('l-hp').addEventListener('input', () => ($('l-hp').dataset.edited = '1'));
  $('launch').addEventListener('submit', launch);
  $('f-status').addEventListener('change', () => loadJobs());
  $('f-type').addEventListener('change', () => loadJobs());
  $('jobs-refresh').addEventListener('click', () => loadJobs());
  $('loops-box').addEventListener('toggle', () => $('loops-box').open && loadLoops());
  $('jobs-more').addEventListener('click', () => loadJobs(true));
  $('job-cancel').addEventListener('click', cancelJob);
  for (const q of QUANTITIES) $('r-quantity').append(el('option', { value: q }, q));
  $('r-quantity').addEventListener('change', () => selected && selected.rollouts && renderRollouts($('rollouts'), selected.rollouts, $('r-quantity').value));
  $('gen').addEventListener('submit', generate);
}

export function show(r) {
  role = r;
  $('launch-box').hidden = role !== 'admin';
  if (active) return;
  active = true;
  loadJobs();
  loadLoops();
  if (role === 'admin') loadLaunchChoices();
  refreshTimer = setInterval(() => {
    if (!active || document.hidden) return;
    loadJobs();
    if ($('loops-box').open) loadLoops();
  }, 5000);
}

export function hide() {
  if (!active) return;
  active = false;
  clearInterval(refreshTimer);
  closeJob();
  $('job-pane').hidden = true;
  $('job-none').hidden = false;
}
