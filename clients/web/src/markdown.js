// markdown.js — project guidelines (Markdown) made into DOM nodes, safely:
// every piece of text becomes a text node (dom.js's el), so raw HTML in the
// guidelines is shown as the characters it is and never parsed. Supports
// what guidelines need: # headings, paragraphs, - / 1. lists, ``` code
// blocks, **strong**, *emphasis*, `code` and [links](https://…) (http and
// https only; anything else stays text).
import { el } from './dom.js';

// Inline spans of one line: an array of nodes and strings.
function inline(text) {
  const out = [];
  const re = /(\*\*([^*]+)\*\*)|(\*([^*]+)\*)|(`([^`]+)`)|(\[([^\]]+)\]\(([^)\s]+)\))/g;
  let at = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > at) out.push(text.slice(at, m.index));
    if (m[2] !== undefined) out.push(el('strong', {}, m[2]));
    else if (m[4] !== undefined) out.push(el('em', {}, m[4]));
    else if (m[6] !== undefined) out.push(el('code', {}, m[6]));
    else if (/^https?:\/\//i.test(m[9])) out.push(el('a', { href: m[9], target: '_blank', rel: 'noopener noreferrer' }, m[8]));
    else out.push(m[0]);
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

// The guidelines as a DocumentFragment.
export function renderMarkdown(source) {
  const frag = document.createDocumentFragment();
  const lines = String(source || '').replace(/\r\n?/g, '\n').split('\n');
  let para = [];
  let list = null;
  const flushPara = () => {
    if (para.length) frag.append(el('p', {}, ...inline(para.join(' '))));
    para = [];
  };
  const flushList = () => {
    if (list) frag.append(list);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    let m;
    if (/^```/.test(line)) {
      flushPara();
      flushList();
      const code = [];
      for (i++; i < lines.length && !/^```/.test(lines[i]); i++) code.push(lines[i]);
      frag.append(el('pre', {}, el('code', {}, code.join('\n'))));
    } else if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
      flushPara();
      flushList();
      frag.append(el(`h${Math.min(6, m[1].length + 2)}`, {}, ...inline(m[2])));
    } else if ((m = /^\s*([-*]|\d+\.)\s+(.*)$/.exec(line))) {
      flushPara();
      const tag = /\d/.test(m[1]) ? 'ol' : 'ul';
      if (!list || list.tagName.toLowerCase() !== tag) {
        flushList();
        list = el(tag, {});
      }
      list.append(el('li', {}, ...inline(m[2])));
    } else if (line.trim() === '') {
      flushPara();
      flushList();
    } else {
      flushList();
      para.push(line.trim());
    }
  }
  flushPara();
  flushList();
  return frag;
}
