// dom.js — building elements. Every string the server sends is inserted as a
// text node (textContent), never parsed as HTML: this file has no innerHTML.

export const $ = (id) => document.getElementById(id);

// el('td', {className: 'x', dataset: {id: 3}}, 'text', childNode, ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
}

export function setText(node, text) {
  node.textContent = text === null || text === undefined ? '' : String(text);
}

export function fmtTime(seconds) {
  if (!seconds) return '';
  const d = new Date(seconds * 1000);
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(1)} ${units[u]}`;
}

// Whether a key event comes from a field where typing must not trigger
// shortcuts.
export function typingIn(event) {
  const t = event.target;
  return t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
}

// Refills a <select> with one option per item (value: its id, text:
// label(item)), keeping the selection if that item is still there.
export function fillSelect(sel, items, label) {
  const keep = sel.value;
  clear(sel);
  for (const item of items) sel.append(el('option', { value: String(item.id) }, label(item)));
  if (keep && items.some((item) => String(item.id) === keep)) sel.value = keep;
}
