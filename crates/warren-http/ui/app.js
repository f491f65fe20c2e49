// Entry point: login, navigation by tags, and the hash router (#/page/arg/arg?query).

import { get, session, basicToken, tagList, hasTag, setLoginLostHandler, showAlert, clearAlerts, say } from './api.js';
import { h, field, onSubmit, refreshMs } from './dom.js';
import { renderOverview } from './overview.js';
import { renderList } from './lists.js';
import { renderQueue } from './queue.js';
import { renderExchange } from './exchange.js';
import { renderAdmin } from './admin.js';

const NEXT_KEY = 'warren.next';
const main = document.getElementById('main');
let cleanups = [];
let loginMessage = '';

const routes = [
  [['login'], renderLogin],
  [['overview'], renderOverview],
  [['connections'], renderList],
  [['channels'], renderList],
  [['exchanges'], renderList],
  [['queues'], renderList],
  [['queues', ':vhost', ':name'], renderQueue],
  [['exchanges', ':vhost', ':name'], renderExchange],
  [['users'], renderAdmin],
  [['vhosts'], renderAdmin],
  [['policies'], renderAdmin],
  [['limits'], renderAdmin],
  [['definitions'], renderAdmin],
];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  // Names are percent-encoded in the hash, so a "/" inside a name never splits it.
  const parts = path.split('/').filter((p, i) => p !== '' || i > 0).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, query };
}

function match(parts) {
  for (const [pattern, fn] of routes) {
    if (pattern.length !== parts.length) continue;
    const params = {};
    if (pattern.every((p, i) => (p.startsWith(':') ? ((params[p.slice(1)] = parts[i]), true) : p === parts[i]))) {
      return { fn, params, page: pattern[0] };
    }
  }
  return null;
}

function route() {
  cleanups.forEach((fn) => { try { fn(); } catch { /* a page's teardown must not block the next page */ } });
  cleanups = [];
  clearAlerts();
  const status = document.getElementById('status');
  if (status.dataset.keep) delete status.dataset.keep; else say('');

  const { parts, query } = parseHash();
  const auth = session.get();
  if (!auth && parts[0] !== 'login') {
    if (parts.length && parts[0]) sessionStorage.setItem(NEXT_KEY, location.hash);
    location.replace('#/login');
    return;
  }
  if (!parts.length || !parts[0]) {
    location.replace('#/overview');
    return;
  }
  updateChrome(parts[0]);
  main.replaceChildren();
  const m = match(parts);
  const ctx = {
    query,
    page: m?.page,
    onCleanup: (fn) => cleanups.push(fn),
    // Polls run one at a time (the next starts when the previous answered) and stop when
    // the page is left.
    poll(fn, ms = refreshMs()) {
      let stopped = false;
      let timer = null;
      const tick = async () => {
        try { await fn(); } catch (e) { if (!e.shown) showAlert(`Error: ${e.message || e}`, 'poll-bug'); }
        if (!stopped) timer = setTimeout(tick, ms);
      };
      cleanups.push(() => { stopped = true; clearTimeout(timer); });
      tick();
    },
    // Updates the query part of the URL without re-rendering the page.
    setQuery(params) {
      const s = params.toString();
      history.replaceState(null, '', `#/${parts.map(encodeURIComponent).join('/')}${s ? `?${s}` : ''}`);
    },
  };
  if (!m) {
    document.title = 'Not found · Warren';
    main.append(h('h1', {}, 'Page not found'), h('p', {}, 'No page at ', h('code', {}, location.hash), '. ', h('a', { href: '#/overview' }, 'Go to the overview'), '.'));
    return;
  }
  const title = m.params.name ?? m.page;
  document.title = `${title.charAt(0).toUpperCase()}${title.slice(1)} · Warren`;
  try {
    m.fn(main, ctx, m.params);
  } catch (e) {
    showAlert(`Error: this page failed to render (${e.message || e})`);
  }
}

function updateChrome(page) {
  const auth = session.get();
  const loggedIn = Boolean(auth) && page !== 'login';
  document.getElementById('nav').hidden = !loggedIn;
  document.getElementById('who').hidden = !loggedIn;
  if (!loggedIn) return;
  document.getElementById('who-name').textContent = auth.user;
  document.getElementById('who-tags').textContent = auth.tags.length ? `(${auth.tags.join(', ')})` : '(no tags)';
  for (const li of document.querySelectorAll('#nav li[data-need]')) {
    li.hidden = !hasTag(...li.dataset.need.split(' '));
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!document.getElementById('cluster-name').textContent) {
    get('cluster-name', { alertKey: 'cluster' }).then((c) => {
      document.getElementById('cluster-name').textContent = c?.name || '';
    }).catch(() => { /* already shown in the alert region */ });
  }
}

function renderLogin(root) {
  document.getElementById('cluster-name').textContent = '';
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, 'data-testid': 'login-username' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', 'data-testid': 'login-password' });
  const form = h('form', { class: 'login', 'data-testid': 'login-form', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in to Warren'),
    field('Username', user),
    field('Password', pass),
    h('button', { type: 'submit', class: 'primary', 'data-testid': 'login-submit' }, 'Log in'));
  onSubmit(form, async (fd) => {
    const username = String(fd.get('username'));
    const token = basicToken(username, String(fd.get('password')));
    let who;
    try {
      who = await get('whoami', { auth: token, silent: true });
    } catch (e) {
      // A wrong password answers 401 "Login failed"; other refusals (say, a user without a
      // management tag) keep the API's reason after it.
      const msg = e.status === 401 && e.reason && e.reason !== 'Login failed' ? `Login failed: ${e.reason}` : e.status === 401 ? 'Login failed' : `Login failed: ${e.describe()}`;
      showAlert(msg, 'login');
      pass.select();
      return;
    }
    session.set({ user: who.name || username, token, tags: tagList(who.tags) });
    const next = sessionStorage.getItem(NEXT_KEY);
    sessionStorage.removeItem(NEXT_KEY);
    location.hash = next && !next.startsWith('#/login') ? next : '#/overview';
  });
  root.append(form);
  if (loginMessage) showAlert(loginMessage, 'login');
  loginMessage = '';
  user.focus();
}

function logout(message) {
  session.clear();
  document.getElementById('cluster-name').textContent = '';
  // Shown by the login page, after the router has cleared the old page's alerts.
  loginMessage = message || '';
  location.hash = '#/login';
}

setLoginLostHandler((err) => {
  if (!session.get()) return;
  sessionStorage.setItem(NEXT_KEY, location.hash);
  logout(`Logged out: ${err.reason || 'the server no longer accepts these credentials'}`);
});

document.getElementById('logout').addEventListener('click', () => logout());
// The skip link must not go through the hash router.
document.getElementById('skip-link').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});
window.addEventListener('unhandledrejection', (ev) => {
  if (!ev.reason?.shown) showAlert(`Error: ${ev.reason?.message || ev.reason}`);
});
window.addEventListener('hashchange', route);
route();
