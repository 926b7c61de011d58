// models.js — the models page (#models): the base and fine-tuned models
// GET /v1/models lists, and a playground that streams the same prompt from
// two of them side by side (POST /v1/chat/completions or /v1/completions
// with stream: true), e.g. the SFT and the PPO checkpoint of a run.
import { ApiError, api, postStream } from './api.js';
import { $, clear, el, fmtTime, setText } from './dom.js';

let models = [];
let running = null; // the AbortController of the playground's run

async function load() {
  setText($('models-error'), '');
  try {
    models = (await api('GET', '/v1/models')).data;
  } catch (err) {
    setText($('models-error'), err.describe());
    return;
  }
  const body = $('models-table').tBodies[0];
  clear(body);
  for (const m of models) {
    body.append(el('tr', { dataset: { id: m.id } },
      el('td', {}, m.id), el('td', {}, m.status || ''), el('td', {}, m.family || ''),
      el('td', {}, m.chat_format || ''), el('td', {}, m.parent || ''), el('td', {}, fmtTime(m.created))));
  }
  setText($('models-empty'), models.length ? '' : 'No models yet: register one (rlhfctl models add DIR) or train a job.');
  for (const id of ['p-left', 'p-right']) {
    const select = $(id);
    const keep = select.value;
    clear(select);
    for (const m of models.filter((x) => !x.status || x.status === 'ready')) select.append(el('option', { value: m.id }, m.id));
    if (keep && models.some((m) => m.id === keep)) select.value = keep;
  }
  if (!$('p-right').value || $('p-right').value === $('p-left').value) {
    const other = [...$('p-right').options].find((o) => o.value !== $('p-left').value);
    if (other) $('p-right').value = other.value;
  }
}

function markInvalid(param) {
  for (const input of $('playground').querySelectorAll('[data-param]'))
    input.classList.toggle('invalid', param !== null && input.dataset.param === param);
}

// One side: streams into its <pre>; resolves with its finish reason.
async function runSide(model, request, out, status, signal) {
  clear(out);
  setText(status, 'streaming…');
  const chat = request.chat;
  const body = { ...request.params, model, stream: true };
  if (chat) body.messages = [{ role: 'user', content: request.prompt }];
  else body.prompt = request.prompt;
  let finish = null;
  try {
    await postStream(chat ? '/v1/chat/completions' : '/v1/completions', body, (chunk) => {
      const c = chunk.choices[0];
      if (!c) return;
      const piece = chat ? c.delta.content : c.text;
      if (piece) out.append(document.createTextNode(piece));
      if (c.finish_reason) finish = c.finish_reason;
    }, signal);
    setText(status, `done: ${finish}`);
  } catch (err) {
    if (err.name === 'AbortError') return;
    setText(status, 'failed');
    throw err;
  }
}

async function run(event) {
  event.preventDefault();
  if (running) running.abort();
  running = new AbortController();
  setText($('play-error'), '');
  markInvalid(null);
  const params = { max_tokens: Number($('p-max').value), temperature: Number($('p-temp').value) };
  if ($('p-seed').value !== '') params.seed = Number($('p-seed').value);
  const request = { chat: $('p-chat').checked, prompt: $('p-prompt').value, params };
  const sides = [
    runSide($('p-left').value, request, $('p-out-left'), $('p-status-left'), running.signal),
    runSide($('p-right').value, request, $('p-out-right'), $('p-status-right'), running.signal),
  ];
  const results = await Promise.allSettled(sides);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    const err = failed.reason;
    setText($('play-error'), err instanceof ApiError ? err.describe() : String(err));
    if (err instanceof ApiError) markInvalid(err.param);
  }
}

export function init() {
  $('models-refresh').addEventListener('click', load);
  $('playground').addEventListener('submit', run);
}

export function show() {
  load();
}

export function hide() {
  if (running) running.abort();
  running = null;
}
