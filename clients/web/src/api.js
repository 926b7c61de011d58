// api.js — the token, JSON requests, and the job event stream.
//
// The token lives in sessionStorage (this tab only, gone when it closes) and
// travels only in the Authorization header, never in a URL. That is also why
// the stream is read with fetch() + ReadableStream instead of EventSource,
// which cannot send headers; reconnects resume with Last-Event-ID.

const TOKEN_KEY = 'rlhfd.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}
export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// An error reply of the API ({error: {message, type, param, code}}) or a
// network failure (status 0).
export class ApiError extends Error {
  constructor(status, code, param, message) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
  // "param: message" when the server named a field.
  describe() {
    return this.param ? `${this.param}: ${this.message}` : this.message;
  }
}

// Called on any 401 (unknown or revoked token); app.js logs out.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

async function errorFrom(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON
  }
  const e = body && body.error;
  if (e && typeof e.message === 'string')
    return new ApiError(resp.status, e.code || null, e.param || null, e.message);
  return new ApiError(resp.status, null, null, `HTTP ${resp.status} ${resp.statusText}`);
}

// An Idempotency-Key: 128 random bits (getRandomValues works outside secure
// contexts too, unlike randomUUID).
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// One request. A 429 (the per-token write rate limit) is retried after its
// Retry-After, up to 3 times; writes carry one Idempotency-Key across the
// retries, so a retry can never apply twice.
export async function api(method, path, body, { idempotent = false } = {}) {
  const headers = { Authorization: `Bearer ${getToken()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotent) headers['Idempotency-Key'] = newIdempotencyKey();
  for (let attempt = 0; ; attempt++) {
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, 'network_error', null, `cannot reach rlhfd: ${err.message}`);
    }
    if (resp.status === 429 && attempt < 3) {
      const wait = Math.min(Number(resp.headers.get('Retry-After')) || 1, 30);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    if (!resp.ok) {
      const err = await errorFrom(resp);
      if (resp.status === 401) onUnauthorized(err);
      throw err;
    }
    return resp.status === 204 ? null : resp.json();
  }
}

// Every page of a list route (newest first), up to max items.
export async function listAll(path, max = 1000) {
  const out = [];
  let after = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', `${path}${sep}limit=100${after ? `&after=${after}` : ''}`);
    out.push(...page.data);
    if (!page.has_more || out.length >= max) return out;
    after = page.last_id;
  }
}

// Splits SSE text into events; returns [events, rest]. Each event is
// {id, event, data} (data joined over its data: lines).
export function parseSse(text) {
  const events = [];
  text = text.replace(/\r\n?/g, '\n');
  let end;
  while ((end = text.indexOf('\n\n')) >= 0) {
    const block = text.slice(0, end);
    text = text.slice(end + 2);
    const ev = { id: null, event: 'message', data: [] };
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') ev.id = value;
      else if (field === 'event') ev.event = value;
      else if (field === 'data') ev.data.push(value);
    }
    if (ev.data.length || ev.id !== null) events.push({ ...ev, data: ev.data.join('\n') });
  }
  return [events, text];
}

// Follows GET /v1/jobs/{id}/stream until the job ends or signal aborts.
// onEvent(type, object) per event in order; onEnd({status}); onState(text)
// for the connection state. Reconnects with Last-Event-ID after a drop,
// backing off 0.25 s .. 5 s.
export async function followJob(jobId, { onEvent, onEnd, onState, signal }) {
  let lastId = null;
  let delay = 250;
  while (!signal.aborted) {
    const headers = { Authorization: `Bearer ${getToken()}` };
    if (lastId !== null) headers['Last-Event-ID'] = lastId;
    try {
      onState(lastId === null ? 'connecting' : 'reconnecting');
      const resp = await fetch(`/v1/jobs/${jobId}/stream`, { headers, signal, cache: 'no-store' });
      if (!resp.ok) {
        const err = await errorFrom(resp);
        if (resp.status === 401) onUnauthorized(err);
        if (resp.status < 500) throw err; // not worth retrying
      } else {
        onState('live');
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let events;
          [events, buf] = parseSse(buf);
          for (const ev of events) {
            if (ev.event === 'end') {
              onState('ended');
              onEnd(JSON.parse(ev.data));
              return;
            }
            if (ev.id !== null) lastId = ev.id;
            delay = 250;
            onEvent(ev.event, JSON.parse(ev.data));
          }
        }
      }
    } catch (err) {
      if (signal.aborted || err.name === 'AbortError') return;
      if (err instanceof ApiError) {
        onState(`error: ${err.describe()}`);
        return;
      }
    }
    if (signal.aborted) return;
    onState('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

// POST path with body (stream: true) and read its SSE chunks until
// data: [DONE]: onChunk(object) for each; resolves when done. An error
// before the stream starts throws an ApiError; an error event in the stream
// throws one too.
export async function postStream(path, body, onChunk, signal) {
  const resp = await fetch(path, {
    method: 'POST',
    headers: { Authorization: `Bearer ${getToken()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
    signal,
  });
  if (!resp.ok) {
    const err = await errorFrom(resp);
    if (resp.status === 401) onUnauthorized(err);
    throw err;
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new ApiError(0, 'network_error', null, 'the stream ended before [DONE]');
    buf += value;
    let events;
    [events, buf] = parseSse(buf);
    for (const ev of events) {
      if (ev.data === '[DONE]') return;
      const chunk = JSON.parse(ev.data);
      if (chunk.error) throw new ApiError(200, chunk.error.code, chunk.error.param, chunk.error.message);
      onChunk(chunk);
    }
  }
}
