// charts.js — one uPlot chart per metric of a job, fed point by point from
// the event stream and redrawn at most once per animation frame: points only
// append to plain arrays; the frame callback hands each changed series to
// its chart (uPlot draws 10,000s of points per series in a few ms).
import uPlot from './uPlot.esm.js';
import { el } from './dom.js';

// Headline metrics first (by substring), then the rest by name.
const PRIORITY = ['reward', 'score', 'return', 'kl', 'loss', 'clip', 'entropy', 'accuracy', 'perplexity', 'tokens', 'per_s', 'sps'];
const rank = (name) => {
  const i = PRIORITY.findIndex((p) => name.includes(p));
  return i < 0 ? PRIORITY.length : i;
};

// Axis labels that stay readable for tiny (KL 1e-7) and huge (tokens/s)
// values alike.
function tick(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

export class MetricCharts {
  constructor(container) {
    this.container = container;
    this.series = new Map(); // name -> {xs, ys, chart, box, dirty}
    this.frame = 0;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(container);
  }

  // A metric value at a step. A step at or before the last one (a resumed
  // job re-reports the steps it redoes) replaces the tail from that step.
  add(name, step, value) {
    if (typeof value !== 'number' || !Number.isFinite(value)) return;
    let s = this.series.get(name);
    if (!s) {
      s = { xs: [], ys: [], chart: null, box: null, dirty: true };
      this.series.set(name, s);
    }
    const n = s.xs.length;
    if (n && step <= s.xs[n - 1]) {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (s.xs[mid] < step) lo = mid + 1;
        else hi = mid;
      }
      s.xs.length = lo;
      s.ys.length = lo;
    }
    s.xs.push(step);
    s.ys.push(value);
    s.dirty = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  width() {
    const w = this.container.clientWidth;
    const cols = w > 1100 ? 3 : w > 640 ? 2 : 1;
    return Math.max(200, Math.floor((w - (cols - 1) * 12) / cols) - 2);
  }

  create(name, s) {
    const title = el('h4', {}, name);
    const latest = el('span', { className: 'latest' });
    s.box = el('div', { className: 'chart', dataset: { metric: name, points: '0' } }, el('div', { className: 'chart-head' }, title, latest));
    s.latest = latest;
    const opts = {
      width: this.width(),
      height: 170,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: [{ size: 28 }, { size: 60, values: (u, splits) => splits.map(tick) }],
      series: [{ label: 'step' }, { label: name, stroke: '#2563eb', width: 1.5, points: { show: false } }],
    };
    s.chart = new uPlot(opts, [[], []], s.box);
    // Keep the charts in priority order.
    const order = [...this.series.entries()].filter(([, o]) => o.box || o === s);
    order.sort(([a], [b]) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    for (const [, o] of order) this.container.append(o.box);
  }

  flush() {
    this.frame = 0;
    for (const [name, s] of this.series) {
      if (!s.dirty) continue;
      s.dirty = false;
      if (!s.chart) this.create(name, s);
      // uPlot keeps the arrays it is given; hand it copies so later pushes
      // do not race its cached min/max.
      s.chart.setData([Float64Array.from(s.xs), Float64Array.from(s.ys)]);
      s.box.dataset.points = String(s.xs.length);
      const last = s.ys[s.ys.length - 1];
      s.latest.textContent = ` ${Number(last.toPrecision(5))} @ ${s.xs[s.xs.length - 1]}`;
    }
  }

  fit() {
    const w = this.width();
    for (const s of this.series.values()) if (s.chart) s.chart.setSize({ width: w, height: 170 });
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.resize.disconnect();
    for (const s of this.series.values()) if (s.chart) s.chart.destroy();
    this.series.clear();
    this.container.replaceChildren();
  }

  points(name) {
    const s = this.series.get(name);
    return s ? s.xs.length : 0;
  }
}
