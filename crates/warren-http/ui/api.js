// HTTP client for the management API, the stored login, and the alert/status regions.

const AUTH_KEY = 'warren.auth';

export const session = {
  get() {
    try { return JSON.parse(sessionStorage.getItem(AUTH_KEY)); } catch { return null; }
  },
  set(value) { sessionStorage.setItem(AUTH_KEY, JSON.stringify(value)); },
  clear() { sessionStorage.removeItem(AUTH_KEY); },
};

export function basicToken(user, password) {
  // btoa only takes Latin-1; names and passwords may be any UTF-8.
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function tagList(tags) {
  if (Array.isArray(tags)) return tags.map(String).filter(Boolean);
  return String(tags || '').split(',').map((t) => t.trim()).filter(Boolean);
}

export function hasTag(...wanted) {
  const tags = session.get()?.tags || [];
  return wanted.some((t) => tags.includes(t));
}

// One path segment. "." and ".." would be collapsed by URL parsing, so their dots are encoded too.
export function enc(s) {
  const e = encodeURIComponent(s);
  return e === '.' || e === '..' ? e.replace(/\./g, '%2E') : e;
}

export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error || `HTTP ${status}`);
    this.status = status;
    this.error = error || '';
    this.reason = reason || '';
  }
  describe() {
    if (this.status === 0) return this.message;
    const what = [this.status, this.error].filter(Boolean).join(' ');
    return `${this.reason || this.error || 'Request failed'} (${what})${this.request ? ` · ${this.request}` : ''}`;
  }
}

let onLoginLost = () => {};
export function setLoginLostHandler(fn) { onLoginLost = fn; }

// Every call shows its failure in the alert region unless the caller asks for silence
// (and then handles it itself), so no error goes unseen.
export async function api(method, path, body, { auth, silent = false, alertKey } = {}) {
  const headers = { Accept: 'application/json' };
  const token = auth ?? session.get()?.token;
  if (token) headers.Authorization = `Basic ${token}`;
  // credentials 'omit': the browser must neither add cached Basic credentials nor pop up its
  // own login dialog on a 401; the Authorization header above is ours and still goes out.
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`api/${path}`, init);
  } catch (e) {
    throw report(new ApiError(0, 'network_error', `Network error: cannot reach the server (${method} /api/${path}: ${e.message})`), silent, alertKey);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!resp.ok) {
    const obj = data && typeof data === 'object' ? data : {};
    const reason = obj.reason ?? (typeof data === 'string' ? data.slice(0, 300) : resp.statusText);
    const err = new ApiError(resp.status, obj.error, typeof reason === 'string' ? reason : JSON.stringify(reason));
    err.request = `${method} /api/${path.split('?')[0]}`;
    // A 401 without a body, or "Login failed", means our stored credentials are no longer good.
    if (resp.status === 401 && !auth && (!text || err.reason === 'Login failed')) onLoginLost(err);
    throw report(err, silent, alertKey);
  }
  if (alertKey) clearAlert(alertKey);
  return data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const put = (path, body = {}, opts) => api('PUT', path, body, opts);
export const post = (path, body = {}, opts) => api('POST', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

function report(err, silent, key) {
  if (!silent) {
    showAlert(err.describe(), key);
    err.shown = true;
  }
  return err;
}

// ---- alert and status regions ----

export function showAlert(text, key) {
  const box = document.getElementById('alerts');
  if (!box) return;
  const k = key || text;
  // Polls repeat the same failure every few seconds: replace it in place, do not stack it.
  for (const el of box.children) if (el.dataset.key === k) el.remove();
  const item = document.createElement('div');
  item.className = 'alert';
  item.dataset.key = k;
  const msg = document.createElement('span');
  msg.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'link';
  close.textContent = 'Dismiss';
  close.setAttribute('aria-label', 'Dismiss this message');
  close.addEventListener('click', () => item.remove());
  item.append(msg, close);
  box.append(item);
}

export function clearAlert(key) {
  for (const el of [...(document.getElementById('alerts')?.children || [])]) {
    if (el.dataset.key === key) el.remove();
  }
}

export function clearAlerts() {
  const box = document.getElementById('alerts');
  if (box) box.replaceChildren();
}

export function say(text, kind = 'ok') {
  const box = document.getElementById('status');
  if (!box) return;
  box.className = kind;
  box.textContent = text;
}
