// Small DOM, formatting and form helpers shared by the pages.

import { showAlert, clearAlerts, say } from './api.js';

// Pages poll every 5 s, as RabbitMQ's UI does. `?refresh=ms` in the page URL or the
// localStorage key below overrides it (the end-to-end tests poll every few hundred ms).
export const REFRESH_MS = 5000;
export const REFRESH_KEY = 'warren.refresh';

export function refreshMs() {
  const fromUrl = new URLSearchParams(location.search).get('refresh');
  let stored = null;
  try { stored = localStorage.getItem(REFRESH_KEY); } catch { /* storage may be disabled */ }
  const ms = Number(fromUrl || stored);
  return Number.isFinite(ms) && ms >= 200 ? ms : REFRESH_MS;
}

const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'required', 'readOnly', 'multiple']);

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let ids = 0;
export const uid = (p = 'f') => `${p}-${++ids}`;

// A labelled form control: the label's `for` always points at the control.
export function field(label, control, help) {
  if (!control.id) control.id = uid();
  const parts = [h('label', { for: control.id }, label), control];
  if (help) {
    const hid = uid('help');
    control.setAttribute('aria-describedby', hid);
    parts.push(h('small', { id: hid, class: 'help' }, help));
  }
  return h('div', { class: control.type === 'checkbox' ? 'field check' : 'field' }, parts);
}

export function select(options, attrs = {}) {
  return h('select', attrs, options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value, selected: attrs.value === value }, label);
  }));
}

export function section(title, ...children) {
  const id = uid('sec');
  return h('section', { 'aria-labelledby': id, class: 'panel' }, h('h2', { id }, title), children);
}

export function table(columns, rows, { caption, empty = 'Nothing to show.', testid } = {}) {
  const t = h('table', { 'data-testid': testid },
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.length
      ? rows.map((r) => h('tr', {}, columns.map((c, i) => {
        const v = c.render ? c.render(r) : r[c.key];
        return i === 0 && c.rowHeader !== false
          ? h('th', { scope: 'row', class: c.num ? 'num' : null }, v)
          : h('td', { class: c.num ? 'num' : null }, v);
      })))
      : h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty))));
  return scrollBox(t, caption);
}

// Wide tables scroll inside their own box so the page body never scrolls sideways.
export function scrollBox(tableEl, label) {
  return h('div', { class: 'table-wrap', role: 'region', tabindex: 0, 'aria-label': label || 'Table' }, tableEl);
}

export function dl(pairs, attrs = {}) {
  return h('dl', { class: 'details', ...attrs }, pairs.filter(Boolean).map(([k, v, testid]) => [
    h('dt', {}, k), h('dd', { 'data-testid': testid }, v)]));
}

// ---- formatting ----

export const num = (n) => (n == null || Number.isNaN(n) ? '–' : Number(n).toLocaleString('en'));

export function fmtRate(r) {
  const v = Number(r) || 0;
  return `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)}/s`;
}

export function fmtBytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export const rate = (obj, key) => obj?.message_stats?.[`${key}_details`]?.rate ?? 0;
export const yesNo = (b) => (b ? 'yes' : 'no');
export const json = (v) => (v && typeof v === 'object' && Object.keys(v).length ? JSON.stringify(v) : '');

export function args(a) {
  const entries = Object.entries(a || {});
  if (!entries.length) return '';
  return h('ul', { class: 'kv' }, entries.map(([k, v]) => h('li', {}, h('code', {}, k), ' = ', typeof v === 'object' ? JSON.stringify(v) : String(v))));
}

export function features(o) {
  const f = [];
  if (o.durable) f.push(['D', 'durable']);
  if (o.auto_delete) f.push(['AD', 'auto-delete']);
  if (o.exclusive) f.push(['Excl', 'exclusive']);
  if (o.internal) f.push(['I', 'internal']);
  const a = Object.keys(o.arguments || {});
  if (a.length) f.push(['Args', `arguments: ${a.join(', ')}`]);
  if (!f.length && !o.policy) return '–';
  return h('span', { class: 'features' }, f.map(([s, t]) => h('abbr', { title: t, class: 'badge' }, s)),
    o.policy ? h('span', { class: 'badge policy', title: 'policy' }, o.policy) : null);
}

// ---- forms ----

// Parses a JSON-object field, telling the user which field is wrong instead of failing silently.
export function parseObject(text, what) {
  const t = String(text || '').trim();
  if (!t) return {};
  let v;
  try { v = JSON.parse(t); } catch (e) {
    throw userError(`${what}: not valid JSON (${e.message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw userError(`${what}: must be a JSON object like {"key": "value"}`);
  return v;
}

export function userError(message) {
  const e = new Error(message);
  e.userFacing = true;
  return e;
}

// Wraps a submit handler: the button is disabled while the request runs, and any failure
// that the API layer has not already shown is shown here.
export function onSubmit(form, fn) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    // Messages left from an earlier action would be mistaken for this one's outcome.
    clearAlerts();
    say('');
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await fn(new FormData(form), ev);
    } catch (e) {
      if (!e.shown) showAlert(e.userFacing ? e.message : `Error: ${e.message || e}`);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}

export function button(label, onclick, attrs = {}) {
  return h('button', { type: 'button', ...attrs, onclick: async (ev) => {
    const b = ev.currentTarget;
    clearAlerts();
    say('');
    b.disabled = true;
    try { await onclick(ev); } catch (e) { if (!e.shown) showAlert(`Error: ${e.message || e}`); } finally { b.disabled = false; }
  } }, label);
}

export function confirmDialog(text) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = 'cancel';
    dlg.showModal();
  });
}

// Re-renders a container only when its data changed, so polling does not steal focus
// from a button the user is on.
export function renderIfChanged(container, data, build) {
  const key = JSON.stringify(data);
  if (container.dataset.rendered === key) return;
  container.dataset.rendered = key;
  container.replaceChildren(build(data));
}
