// GPT-2 BPE encode throughput: engine/tokenizer.c (bench/tokenizer_bench.c)
// against the npm package gpt-3-encoder 1.1.4, on the same corpus, same ids
// (checked by checksum), one core each, side by side in one run.
//
//   make                       # build/libengine.a
//   cd tests/reference && npm install --no-save gpt-3-encoder@1.1.4 && cd ../..
//   node bench/tokenizer_bench.js [--reps 5] [--passes 3] [--markdown]
//
// Corpus: every file in /usr/share/common-licenses (English prose, ~270 KB
// on Debian) followed by the texts of tests/fixtures/gpt2_tokenizer/expected.json.
// Both sides encode it line by line (each line on its own, no newline): the
// package's encode() appends with Array.concat, quadratic in the ids of one
// call (0.02 MB/s on the whole corpus as one text), so one call per line is
// its best use. Each sample is a fresh process that encodes the corpus
// `passes` times:
// pass 1 is cold (the package's word cache empty, its JIT cold), the last
// pass is its best case (every word cached). Our tokenizer has no cache, so
// its passes do the same work. Samples alternate C, JS, C, JS after one
// warm-up pair; the table gives medians, min-max and the median of the
// pair-by-pair ratios. Nothing here is pass/fail.
'use strict';
const {execFileSync} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const FIXTURE_DIR = path.join(ROOT, 'tests', 'fixtures', 'gpt2_tokenizer');
const PACKAGE = path.join(ROOT, 'tests', 'reference', 'node_modules', 'gpt-3-encoder');
const BINARY = path.join(ROOT, 'build', 'tokenizer-bench');
const LICENSES = '/usr/share/common-licenses';

function option(name, fallback) {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

// One sample of the package, run as `node tokenizer_bench.js --js-sample CORPUS PASSES`.
function jsSample(corpusPath, passes) {
    const gpt3 = require(PACKAGE);
    const text = fs.readFileSync(corpusPath, 'utf-8');
    const lines = text.split('\n');
    for (let pass = 1; pass <= passes; pass++) {
        const t0 = process.hrtime.bigint();
        const ids = [];
        for (const line of lines)
            for (const id of gpt3.encode(line))
                ids.push(id);
        const seconds = Number(process.hrtime.bigint() - t0) * 1e-9;
        let checksum = 0;
        for (let i = 0; i < ids.length; i++)
            checksum = (checksum + Math.imul(ids[i], i + 1)) >>> 0;
        console.log(JSON.stringify({side: 'js', pass, bytes: Buffer.byteLength(text), ids: ids.length,
            checksum, seconds}));
    }
}

function writeCorpus() {
    const parts = fs.readdirSync(LICENSES).sort()
        .map(name => path.join(LICENSES, name))
        .filter(p => fs.statSync(p).isFile())
        .map(p => fs.readFileSync(p, 'utf-8'));
    const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, 'expected.json'), 'utf-8'));
    // Texts where gpt-3-encoder differs from encoder.py would make the checksums differ.
    parts.push(...fixture.filter(e => !e.ids_gpt3_encoder).map(e => e.text));
    const file = path.join(os.tmpdir(), `tokenizer-bench-corpus-${process.pid}.txt`);
    fs.writeFileSync(file, parts.join('\n'));
    return file;
}

function buildBinary() {
    execFileSync('cc', ['-std=c11', '-O2', '-march=x86-64-v2', '-D_GNU_SOURCE', '-Iengine',
        'bench/tokenizer_bench.c', 'build/libengine.a', '-ljansson', '-o', BINARY], {cwd: ROOT});
}

function sample(side, corpus, passes) {
    const out = side === 'c'
        ? execFileSync(BINARY, [path.join(FIXTURE_DIR, 'encoder.json'),
            path.join(FIXTURE_DIR, 'vocab.bpe'), corpus, String(passes)])
        : execFileSync(process.execPath, [__filename, '--js-sample', corpus, String(passes)]);
    return out.toString().trim().split('\n').map(line => JSON.parse(line));
}

const median = xs => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mbps = r => r.bytes / r.seconds / 1e6;

function main() {
    const reps = option('--reps', 5), passes = option('--passes', 3);
    buildBinary();
    const corpus = writeCorpus();
    const results = {c: [], js: []};
    for (let rep = 0; rep <= reps; rep++) {
        for (const side of ['c', 'js']) {
            const passesOut = sample(side, corpus, passes);
            if (rep > 0) /* rep 0 is the warm-up pair */
                results[side].push(passesOut);
        }
    }
    fs.unlinkSync(corpus);
    const first = results.c[0][0];
    for (const side of ['c', 'js'])
        for (const s of results[side])
            for (const r of s)
                if (r.ids !== first.ids || r.checksum !== first.checksum)
                    throw new Error(`${side} produced different ids (${r.ids}, ${r.checksum}) ` +
                        `than C (${first.ids}, ${first.checksum})`);
    const cpu = os.cpus()[0].model;
    const lines = [];
    lines.push(`GPT-2 encode, ${first.bytes} bytes -> ${first.ids} ids (identical on both sides), ` +
        `one core each, ${reps} alternating samples after a warm-up pair, ${passes} passes per sample`);
    lines.push(`machine: ${cpu}, ${os.cpus().length} cores; node ${process.version}`);
    lines.push('');
    lines.push('| pass | ours MB/s median (min-max) | gpt-3-encoder MB/s median (min-max) | ratio ours/js (median of pairs) |');
    lines.push('| --- | --- | --- | --- |');
    for (const [label, index] of [['first (cold)', 0], [`last (#${passes}, js cache warm)`, passes - 1]]) {
        const c = results.c.map(s => mbps(s[index])), js = results.js.map(s => mbps(s[index]));
        const ratio = c.map((x, i) => x / js[i]);
        const fmt = xs => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
        lines.push(`| ${label} | ${fmt(c)} | ${fmt(js)} | ${median(ratio).toFixed(1)}x |`);
    }
    if (process.argv.includes('--markdown')) {
        console.log(`### Tokenizer encode throughput (${new Date().toISOString().slice(0, 10)})\n`);
        console.log('    node bench/tokenizer_bench.js ' + process.argv.slice(2).join(' ') + '\n');
    }
    console.log(lines.join('\n'));
}

if (process.argv[2] === '--js-sample')
    jsSample(process.argv[3], Number(process.argv[4]));
else
    main();
