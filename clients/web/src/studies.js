// studies.js — studies (a base job over a grid or list of variations ×
// seeds, docs/api.md "Studies"): the list, and one study at a time: its
// curves overlaid (per variation the mean over seeds as a line and the
// min/max band around it, one colour per variation), the summary table
// (final and best value of the metric, wall time: mean ± std over seeds)
// and its jobs. Refreshed every few seconds while the study runs.
import uPlot from './uPlot.esm.js';
import { api } from './api.js';
import { $, clear, el, fmtTime, setText } from './dom.js';

// One colour per variation (Tableau 10).
const COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const colour = (i) => COLOURS[i % COLOURS.length];
const UNFINISHED = new Set(['queued', 'running']);
const REFRESH_MS = 3000;

let active = false;
let role = null;
let selected = null; // {id, study, chart, timer}

// "#4e79a7" → "rgba(78,121,167,a)"
function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
}

function fmt(v, digits = 4) {
  return typeof v === 'number' && Number.isFinite(v) ? String(Number(v.toPrecision(digits))) : '–';
}

function meanStd(row, name) {
  const m = row[`${name}_mean`];
  const s = row[`${name}_std`];
  if (typeof m !== 'number') return '–';
  return typeof s === 'number' ? `${fmt(m)} ± ${fmt(s, 2)}` : fmt(m);
}

/* ---- the list ------------------------------------------------------------------ */

function studyRow(study) {
  const tr = el(
    'tr',
    { className: 'study-row', dataset: { id: study.id, status: study.status }, tabIndex: 0 },
    el('td', {}, String(study.id)),
    el('td', {}, study.name),
    el('td', {}, study.type),
    el('td', {}, el('span', { className: `badge ${study.status}` }, study.status)),
    el('td', {}, fmtTime(study.created_at)),
  );
  if (selected && selected.id === study.id) tr.classList.add('selected');
  tr.addEventListener('click', () => selectStudy(study.id));
  tr.addEventListener('keydown', (e) => e.key === 'Enter' && selectStudy(study.id));
  return tr;
}

async function loadStudies() {
  try {
    const page = await api('GET', '/v1/studies?limit=100');
    const body = $('studies-list').tBodies[0];
    clear(body);
    for (const s of page.data) body.append(studyRow(s));
    $('studies-empty').hidden = page.data.length > 0;
    setText($('studies-error'), '');
  } catch (err) {
    setText($('studies-error'), err.describe());
  }
}

/* ---- one study ------------------------------------------------------------------- */

// curves {variations: [{variation, label, steps: [{step, mean, min, max}]}]}
// → uPlot data on the union of the steps (null where a variation has no
// point: the line spans the gap) and its series: per variation mean, min,
// max, the band filled between min and max.
function chartData(curves) {
  const steps = [...new Set(curves.variations.flatMap((v) => v.steps.map((p) => p.step)))].sort((a, b) => a - b);
  const at = new Map(steps.map((s, i) => [s, i]));
  const data = [Float64Array.from(steps)];
  const series = [{ label: 'step' }];
  const bands = [];
  for (const v of curves.variations) {
    const cols = ['mean', 'min', 'max'].map(() => new Array(steps.length).fill(null));
    for (const p of v.steps) {
      const i = at.get(p.step);
      cols[0][i] = p.mean;
      cols[1][i] = p.min;
      cols[2][i] = p.max;
    }
    const c = colour(v.variation);
    const base = series.length;
    series.push({ label: v.label, stroke: c, width: 2, spanGaps: true, points: { show: false } });
    series.push({ label: `${v.label} min`, stroke: alpha(c, 0.35), width: 1, spanGaps: true, points: { show: false } });
    series.push({ label: `${v.label} max`, stroke: alpha(c, 0.35), width: 1, spanGaps: true, points: { show: false } });
    bands.push({ series: [base + 2, base + 1], fill: alpha(c, 0.15) });
    data.push(...cols);
  }
  return { data, series, bands, points: steps.length };
}

function renderCurves(curves) {
  const box = $('study-chart');
  if (selected.chart) selected.chart.destroy();
  selected.chart = null;
  clear(box);
  const { data, series, bands, points } = chartData(curves);
  box.dataset.metric = curves.metric;
  box.dataset.points = String(points);
  box.dataset.variations = String(curves.variations.length);
  clear($('study-legend'));
  for (const v of curves.variations)
    $('study-legend').append(el('span', { className: 'legend-item', dataset: { variation: v.variation } }, el('span', { className: 'swatch', style: `background:${colour(v.variation)}` }), v.label));
  if (points === 0) {
    box.append(el('p', { className: 'hint' }, `No values of ${curves.metric} yet.`));
    return;
  }
  selected.chart = new uPlot(
    {
      width: Math.max(300, box.clientWidth || 640),
      height: 320,
      legend: { show: false },
      scales: { x: { time: false } },
      axes: [{ size: 28 }, { size: 60 }],
      series,
      bands,
    },
    data,
    box,
  );
}

// The body of table: one row per item, cells(item) = [the row's props, td...].
function fillTable(table, items, cells) {
  const body = table.tBodies[0];
  clear(body);
  for (const item of items) {
    const [props, ...tds] = cells(item);
    body.append(el('tr', props, ...tds));
  }
}

function renderStudy(study) {
  selected.study = study;
  setText($('study-title'), `Study ${study.id} · ${study.name}`);
  const badge = $('study-status');
  badge.className = `badge ${study.status}`;
  setText(badge, study.status);
  const counts = Object.entries(study.job_counts).filter(([, n]) => n > 0).map(([s, n]) => `${s} ${n}`).join(', ');
  setText($('study-info'), `${study.type} · ${study.variations.length} variations × ${(study.seeds || [1]).length} seeds · jobs: ${counts} · goal: ${study.goal} ${study.metric}`);
  $('study-cancel').hidden = role !== 'admin' || !UNFINISHED.has(study.status);
  if (!$('study-metric').value) $('study-metric').value = study.metric;
  fillTable($('study-summary'), study.summary, (row) => [
    { dataset: { variation: row.variation } },
    el('td', {}, el('span', { className: 'swatch', style: `background:${colour(row.variation)}` }), row.label),
    el('td', {}, String(row.runs)),
    el('td', { className: 'final' }, meanStd(row, 'final')),
    el('td', { className: 'best' }, meanStd(row, 'best')),
    el('td', {}, meanStd(row, 'wall_s')),
  ]);
  setText($('study-summary-metric'), study.metric);
  fillTable($('study-jobs'), study.jobs, (j) => [
    {},
    el('td', {}, String(j.id)),
    el('td', {}, study.variations[j.variation].label),
    el('td', {}, String(j.seed)),
    el('td', {}, el('span', { className: `badge ${j.status}` }, j.status)),
    el('td', {}, fmt(j.final)),
    el('td', {}, fmt(j.best)),
  ]);
}

async function refresh() {
  if (!selected) return;
  const id = selected.id;
  try {
    const metric = $('study-metric').value.trim();
    const q = metric ? `?metric=${encodeURIComponent(metric)}` : '';
    const [study, curves] = await Promise.all([api('GET', `/v1/studies/${id}`), api('GET', `/v1/studies/${id}/curves${q}`)]);
    if (!selected || selected.id !== id) return;
    renderStudy(study);
    renderCurves(curves);
    setText($('study-error'), '');
    clearTimeout(selected.timer);
    if (UNFINISHED.has(study.status)) selected.timer = setTimeout(() => active && refresh(), REFRESH_MS);
  } catch (err) {
    setText($('study-error'), err.describe());
  }
}

function closeStudy() {
  if (!selected) return;
  clearTimeout(selected.timer);
  if (selected.chart) selected.chart.destroy();
  selected = null;
}

function selectStudy(id) {
  closeStudy();
  selected = { id, study: null, chart: null, timer: 0 };
  $('study-metric').value = '';
  for (const tr of $('studies-list').tBodies[0].rows) tr.classList.toggle('selected', Number(tr.dataset.id) === id);
  $('study-pane').hidden = false;
  $('study-none').hidden = true;
  refresh();
}

async function cancelStudy() {
  if (!selected) return;
  try {
    renderStudy(await api('POST', `/v1/studies/${selected.id}/cancel`));
    loadStudies();
  } catch (err) {
    setText($('study-error'), err.describe());
  }
}

/* ---- the view ---------------------------------------------------------------------- */

export function init() {
  $('studies-refresh').addEventListener('click', () => loadStudies());
  $('study-cancel').addEventListener('click', cancelStudy);
  $('study-metric-form').addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  });
}

export function show(r) {
  role = r;
  if (active) return;
  active = true;
  loadStudies();
}

export function hide() {
  if (!active) return;
  active = false;
  closeStudy();
  $('study-pane').hidden = true;
  $('study-none').hidden = false;
}
