// rollouts.js — the sampled responses a ppo, grpo or rloo job kept
// (GET /v1/jobs/{id}/rollouts), token by token: the response text with each
// token's background coloured by the chosen quantity (blue below zero, red
// above, the strongest of the shown tokens at full strength) and its numbers
// in the tooltip. Reward hacking shows as the reward, KL or advantage
// piling onto a few tokens.
import { el } from './dom.js';

export const QUANTITIES = ['advantage', 'reward', 'kl', 'logprob', 'ref_logprob', 'value'];
const NUMBERS = ['logprob', 'ref_logprob', 'kl', 'value', 'reward', 'advantage'];

function fmt(x) {
  return x === null || x === undefined ? '—' : Number(x).toPrecision(4);
}

// rgba of a value on the diverging scale, given the largest |value| shown.
export function tokenColour(value, scale) {
  if (value === null || value === undefined || !(scale > 0)) return '';
  const a = Math.min(1, Math.abs(value) / scale) * 0.75;
  return value < 0 ? `rgba(37, 99, 235, ${a.toFixed(3)})` : `rgba(220, 38, 38, ${a.toFixed(3)})`;
}

export function tokenTitle(tok) {
  return [JSON.stringify(tok.text), ...NUMBERS.map((k) => `${k} ${fmt(tok[k])}`)].join('\n');
}

// One <li> per rollout into list, coloured by quantity.
export function renderRollouts(list, rollouts, quantity) {
  let scale = 0;
  for (const r of rollouts) for (const t of r.tokens) if (t[quantity] !== null) scale = Math.max(scale, Math.abs(t[quantity]));
  list.replaceChildren();
  for (const r of rollouts) {
    const spans = r.tokens.map((t, i) => {
      const span = el('span', { className: 'tok', title: tokenTitle(t), dataset: { index: i, value: t[quantity] === null ? '' : String(t[quantity]) } }, t.text);
      span.style.backgroundColor = tokenColour(t[quantity], scale);
      return span;
    });
    list.append(
      el(
        'li',
        { className: 'rollout', dataset: { id: r.id, step: r.step, sample: r.sample } },
        el('div', { className: 'meta' }, `step ${r.step} · sample ${r.sample} · score ${fmt(r.score)}`),
        el('div', { className: 'rollout-text' }, el('span', { className: 'prompt' }, r.prompt), el('span', { className: 'response' }, ...spans)),
      ),
    );
  }
}
