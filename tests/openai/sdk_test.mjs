// The official `openai` npm package (tests/npm) against a real rlhfd: the
// calls a client of OpenAI's fine-tuning API makes, with their answers
// checked as that client reads them. tests/api/test_openai.c starts the
// daemon, runs this script and cross-checks its summary against the native
// API; it is not meant to be run by hand, but can be:
//
//   RLHFD_URL=http://127.0.0.1:8080/v1 RLHFD_TOKEN=... RLHFD_SFT_FILE=sft.jsonl \
//     NODE_PATH=tests/npm/node_modules node tests/openai/sdk_test.mjs
//
// RLHFD_CHAT_MODEL names a registered model with a chat template (the
// chat calls below), when set.
//
// Prints one JSON line (the summary) on stdout; any failed check throws
// (exit 1, the reason on stderr).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The SDK lives in tests/npm/node_modules, beside the tokenizer reference.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'npm', 'package.json'));
const { default: OpenAI, toFile, BadRequestError, NotFoundError } = await import(
  require.resolve('openai'));

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const client = new OpenAI({
  baseURL: process.env.RLHFD_URL,
  apiKey: process.env.RLHFD_TOKEN,
  maxRetries: 0,
  timeout: 30000,
});
const sftPath = process.env.RLHFD_SFT_FILE;
const sftBytes = fs.readFileSync(sftPath);
const summary = {};

// Polls retrieve until the job reaches one of `want` (30 s bound), keeping
// every status seen in order.
async function waitJob(id, want, seen) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const job = await client.fineTuning.jobs.retrieve(id);
    if (seen[seen.length - 1] !== job.status) seen.push(job.status);
    if (want.includes(job.status)) return job;
    check(Date.now() < deadline, `job ${id} still ${job.status} after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// The statuses seen must follow OpenAI's order (a subsequence of it).
const ORDER = ['validating_files', 'queued', 'running', 'succeeded|failed|cancelled'];
function rank(status) {
  return ORDER.findIndex((s) => s.split('|').includes(status));
}
function checkOrder(seen) {
  for (let i = 0; i < seen.length; i++) {
    check(rank(seen[i]) >= 0, `unknown status ${seen[i]}`);
    if (i > 0) check(rank(seen[i]) > rank(seen[i - 1]), `status order ${seen.join(' → ')}`);
  }
}

// ---- files ----------------------------------------------------------------
const file = await client.files.create({
  file: fs.createReadStream(sftPath),
  purpose: 'fine-tune',
});
check(/^file-\d+$/.test(file.id), `file id ${file.id}`);
check(file.object === 'file' && file.purpose === 'fine-tune', JSON.stringify(file));
check(file.bytes === sftBytes.length, `bytes ${file.bytes} != ${sftBytes.length}`);
check(file.filename === path.basename(sftPath), `filename ${file.filename}`);
check((await client.files.retrieve(file.id)).id === file.id, 'files.retrieve');
const content = Buffer.from(await (await client.files.content(file.id)).arrayBuffer());
check(content.equals(sftBytes), 'files.content gives the bytes uploaded');
// A second file, from memory, purpose given first.
const second = await client.files.create({
  purpose: 'fine-tune',
  file: await toFile(Buffer.from(sftBytes), 'again.jsonl'),
});
const fileIds = [];
for await (const f of client.files.list({ limit: 1 })) fileIds.push(f.id);
check(fileIds.includes(file.id) && fileIds.includes(second.id), `files.list ${fileIds}`);
summary.file = file.id;
summary.files_listed = fileIds.length;

// A bad line is refused with the line's field, as OpenAI's client sees it.
try {
  await client.files.create({
    file: await toFile(Buffer.from('{"messages":[{"role":"user","content":"hi"}]}\n'), 'bad.jsonl'),
    purpose: 'fine-tune',
  });
  check(false, 'a bad file was accepted');
} catch (e) {
  check(e instanceof BadRequestError && e.param === 'messages', `bad file: ${e}`);
}

// ---- a supervised job to success --------------------------------------------
let job = await client.fineTuning.jobs.create({
  model: 'scratch',
  training_file: file.id,
  suffix: 'sdk',
  seed: 3,
  metadata: { run: 'sdk-test' },
  method: {
    type: 'supervised',
    supervised: { hyperparameters: { n_epochs: 2, batch_size: 2, learning_rate_multiplier: 'auto' } },
  },
});
check(/^ftjob-\d+$/.test(job.id) && job.object === 'fine_tuning.job', JSON.stringify(job));
check(job.method.type === 'supervised' && job.hyperparameters.n_epochs === 2, 'hyperparameters');
check(job.hyperparameters.learning_rate_multiplier === 1, 'auto multiplier is 1');
check(job.metadata.run === 'sdk-test' && job.seed === 3, 'metadata, seed');
const seen = [job.status];
job = await waitJob(job.id, ['succeeded', 'failed', 'cancelled'], seen);
check(job.status === 'succeeded', `job ended ${job.status}: ${JSON.stringify(job.error)}`);
checkOrder(seen);
check(job.fine_tuned_model === `ft:scratch:sdk:${job.id}`, `fine_tuned_model ${job.fine_tuned_model}`);
check(job.trained_tokens > 0 && job.error === null && job.finished_at >= job.created_at, 'done');
summary.job = job.id;
summary.statuses = seen;
summary.trained_tokens = job.trained_tokens;

// Events, two a page, walked by the SDK's paginator (after = last id).
const events = [];
for await (const ev of client.fineTuning.jobs.listEvents(job.id, { limit: 2 })) events.push(ev);
check(events.length >= 3, `events ${events.length}`);
for (let i = 0; i < events.length; i++) {
  check(events[i].object === 'fine_tuning.job.event' && /^ftevent-\d+$/.test(events[i].id), 'event');
  const n = Number(events[i].id.slice(8));
  if (i > 0) check(n < Number(events[i - 1].id.slice(8)), 'events newest first, each once');
}
summary.events = events.length;

const checkpoints = [];
for await (const c of client.fineTuning.jobs.checkpoints.list(job.id)) checkpoints.push(c);
check(checkpoints.length >= 1, 'checkpoints');
for (const c of checkpoints) {
  check(c.object === 'fine_tuning.job.checkpoint' && c.fine_tuning_job_id === job.id, 'checkpoint');
  check(c.fine_tuned_model_checkpoint === `ft:scratch:sdk:${job.id}:${c.id}`, c.fine_tuned_model_checkpoint);
  check(typeof c.metrics.train_loss === 'number' && c.metrics.step === c.step_number, 'metrics');
}
summary.checkpoints = checkpoints.map((c) => c.id);

// ---- a second job from the first one's model, cancelled ------------------
let next = await client.fineTuning.jobs.create({
  model: job.fine_tuned_model,
  training_file: file.id,
  hyperparameters: { n_epochs: 10000 }, // the legacy place: long enough to be cancelled
});
check(next.model === job.fine_tuned_model, 'a fine-tuned model is a model');
const cancelled = await client.fineTuning.jobs.cancel(next.id);
check(['queued', 'running', 'cancelled'].includes(cancelled.status), `cancel: ${cancelled.status}`);
const seenNext = [next.status];
next = await waitJob(next.id, ['cancelled', 'succeeded', 'failed'], seenNext);
check(next.status === 'cancelled', `cancelled job ended ${next.status}`);
checkOrder(seenNext);
summary.cancelled = next.id;

// Jobs, one a page: both, newest first.
const jobIds = [];
for await (const j of client.fineTuning.jobs.list({ limit: 1 })) jobIds.push(j.id);
check(jobIds[0] === next.id && jobIds.includes(job.id), `jobs.list ${jobIds}`);
summary.jobs_listed = jobIds.length;

// ---- errors as the SDK raises them -------------------------------------------
async function expectError(cls, code, param, call) {
  try {
    await call();
  } catch (e) {
    check(e instanceof cls && e.code === code && e.param === param,
      `want ${code} (${param}), got ${e.status} ${e.code} (${e.param}): ${e.message}`);
    return;
  }
  check(false, `want ${code}: the call succeeded`);
}
// dpo runs as the dpo job type, which starts from a policy: not from scratch
await expectError(BadRequestError, 'missing_required_parameter', 'model', () =>
  client.fineTuning.jobs.create({ model: 'scratch', training_file: file.id, method: { type: 'dpo' } }));
await expectError(BadRequestError, 'model_not_found', 'model', () =>
  client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file.id }));
await expectError(NotFoundError, 'job_not_found', null, () =>
  client.fineTuning.jobs.retrieve('ftjob-999999'));

// ---- models, completions and chat --------------------------------------------
const modelIds = [];
for await (const m of client.models.list()) {
  check(m.object === 'model' && typeof m.created === 'number' && typeof m.owned_by === 'string',
    `model object ${JSON.stringify(m)}`);
  modelIds.push(m.id);
}
check(modelIds.includes(job.fine_tuned_model), `models.list ${modelIds} lacks ${job.fine_tuned_model}`);
summary.models = modelIds;
check((await client.models.retrieve(job.fine_tuned_model)).id === job.fine_tuned_model,
  'models.retrieve');

const completion = await client.completions.create({
  model: job.fine_tuned_model, prompt: 'What is 2+2?', max_tokens: 8, temperature: 0, seed: 1,
});
check(completion.object === 'text_completion' && completion.choices.length === 1, 'completion');
check(['stop', 'length'].includes(completion.choices[0].finish_reason), 'finish_reason');
check(completion.usage.total_tokens ===
  completion.usage.prompt_tokens + completion.usage.completion_tokens, 'usage adds up');
summary.completion = completion.choices[0].text;

const chatModel = process.env.RLHFD_CHAT_MODEL;
if (chatModel) {
  check(modelIds.includes(chatModel), `models.list ${modelIds} lacks ${chatModel}`);
  const request = {
    model: chatModel,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }],
    max_tokens: 10,
    temperature: 0.7,
    seed: 11,
  };
  const chat = await client.chat.completions.create(request);
  check(chat.object === 'chat.completion' && /^chatcmpl-/.test(chat.id), 'chat.completion');
  const message = chat.choices[0].message;
  check(message.role === 'assistant' && typeof message.content === 'string', 'message');
  check(chat.usage.completion_tokens > 0, 'usage');
  // the same seed, streamed: the deltas add up to the same message
  const stream = await client.chat.completions.create({
    ...request, stream: true, stream_options: { include_usage: true } });
  let streamed = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    check(chunk.object === 'chat.completion.chunk', `chunk ${JSON.stringify(chunk)}`);
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      streamed += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(streamed === message.content, `streamed '${streamed}' != '${message.content}'`);
  check(finish === chat.choices[0].finish_reason, `stream finish ${finish}`);
  check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'stream usage');
  await expectError(BadRequestError, 'invalid_value', 'messages[0].role', () =>
    client.chat.completions.create({ model: chatModel, messages: [{ role: 'bot', content: 'x' }] }));
  await expectError(NotFoundError, 'model_not_found', 'model', () =>
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }));
  summary.chat = message.content;
  summary.chat_chunks = chunks;
}

// ---- dpo and reinforcement (method.type → job type dpo / grpo) ---------------
// One function, so other blocks of this script merge beside it.
async function dpoAndReinforcement(base) {
  const prefs = await client.files.create({
    purpose: 'fine-tune',
    file: await toFile(Buffer.from(['hi', 'hey', 'hello', 'yo', 'hi there', 'good day', 'howdy', 'greetings']
      .map((w) => JSON.stringify({
        input: { messages: [{ role: 'user', content: w }] },
        preferred_output: [{ role: 'assistant', content: 'hello' }],
        non_preferred_output: [{ role: 'assistant', content: 'go away' }],
      })).join('\n')), 'prefs.jsonl'),
  });
  const dpo = await client.fineTuning.jobs.create({
    model: base,
    training_file: prefs.id,
    method: { type: 'dpo', dpo: { hyperparameters: { beta: 0.25, n_epochs: 1, batch_size: 'auto' } } },
  });
  check(dpo.method.type === 'dpo' && dpo.method.dpo.hyperparameters.beta === 0.25, JSON.stringify(dpo.method));
  check(dpo.hyperparameters.n_epochs === 1 && dpo.hyperparameters.batch_size === 8, 'dpo auto batch_size');
  const dpoDone = await waitJob(dpo.id, ['succeeded', 'failed', 'cancelled'], [dpo.status]);
  check(dpoDone.status === 'succeeded', `dpo ended ${dpoDone.status}: ${JSON.stringify(dpoDone.error)}`);

  const prompts = await client.files.create({
    purpose: 'fine-tune',
    file: await toFile(Buffer.from(['1+1=|2', '2+2=|4', '3+3=|6'].map((r) => {
      const [prompt, answer] = r.split('|');
      return JSON.stringify({ prompt, answer });
    }).join('\n')), 'prompts.jsonl'),
  });
  const grader = {
    type: 'multi',
    graders: {
      exact: { type: 'string_check', name: 'exact', input: '{{sample.output_text}}', reference: '{{item.answer}}', operation: 'eq' },
      close: { type: 'text_similarity', name: 'close', input: '{{sample.output_text}}', reference: '{{item.answer}}', evaluation_metric: 'fuzzy_match' },
    },
    calculate_output: '0.5 * exact + 0.5 * close',
  };
  const rft = await client.fineTuning.jobs.create({
    model: dpoDone.fine_tuned_model,
    training_file: prompts.id,
    method: {
      type: 'reinforcement',
      reinforcement: {
        grader,
        hyperparameters: { n_epochs: 1, batch_size: 1, compute_multiplier: 0.25, eval_samples: 'auto', reasoning_effort: 'default' },
      },
    },
  });
  check(rft.method.type === 'reinforcement', JSON.stringify(rft.method));
  check(JSON.stringify(rft.method.reinforcement.grader) === JSON.stringify(grader), 'the grader as given');
  check(rft.hyperparameters.compute_multiplier === 0.25 && rft.hyperparameters.n_epochs === 1, JSON.stringify(rft.hyperparameters));
  const rftDone = await waitJob(rft.id, ['succeeded', 'failed', 'cancelled'], [rft.status]);
  check(rftDone.status === 'succeeded', `reinforcement ended ${rftDone.status}: ${JSON.stringify(rftDone.error)}`);
  check(rftDone.fine_tuned_model === `ft:scratch::${rft.id}`, rftDone.fine_tuned_model);

  // A grader rlhfd cannot run: OpenAI's error shape, param naming the field.
  const refused = (badGrader, param) => expectError(BadRequestError, 'unsupported_grader', param, () =>
    client.fineTuning.jobs.create({
      model: base,
      training_file: prompts.id,
      method: { type: 'reinforcement', reinforcement: { grader: badGrader } },
    }));
  await refused({ type: 'python', name: 'p', source: 'def grade(sample, item):\n  return 1.0' },
    'method.reinforcement.grader.type');
  await refused({
    type: 'multi',
    graders: { judge: { type: 'label_model', name: 'judge', model: 'gpt-4o', input: [], labels: ['a'], passing_labels: ['a'] } },
    calculate_output: 'judge',
  }, 'method.reinforcement.grader.graders.judge.type');
  return { dpo: dpo.id, reinforcement: rft.id };
}
summary.methods = await dpoAndReinforcement(job.fine_tuned_model);

console.log(JSON.stringify(summary));
