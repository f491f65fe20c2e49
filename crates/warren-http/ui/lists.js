// List pages (connections, channels, exchanges, queues) on the server's paging, so a
// broker with 10,000 queues sends one page at a time; plus the add-queue and add-exchange forms.

import { get, put, enc, say, showAlert, clearAlert } from './api.js';
import {
  h, field, select, section, scrollBox, num, fmtRate, fmtBytes, rate, features, parseObject, onSubmit, uid,
} from './dom.js';

const PAGE_SIZES = [20, 50, 100, 500];
const DEFAULT_PAGE_SIZE = 100;

const link = (kind, o) => h('a', { href: `#/${kind}/${enc(o.vhost)}/${enc(o.name || 'amq.default')}` }, o.name || '(AMQP default)');
const bytesRate = (o, k) => `${fmtBytes(o[`${k}_details`]?.rate ?? 0)}/s`;

const LISTS = {
  queues: {
    title: 'Queues',
    columns: [
      { label: 'Virtual host', sort: 'vhost', render: (q) => q.vhost },
      { label: 'Name', sort: 'name', render: (q) => link('queues', q), rowHeader: true },
      { label: 'Type', sort: 'type', render: (q) => q.type },
      { label: 'Features', render: features },
      { label: 'State', sort: 'state', render: (q) => h('span', { class: `state ${q.state}` }, q.state || '') },
      { label: 'Ready', sort: 'messages_ready', num: true, render: (q) => num(q.messages_ready) },
      { label: 'Unacked', sort: 'messages_unacknowledged', num: true, render: (q) => num(q.messages_unacknowledged) },
      { label: 'Total', sort: 'messages', num: true, render: (q) => num(q.messages) },
      { label: 'Incoming', sort: 'message_stats.publish_details.rate', num: true, render: (q) => fmtRate(rate(q, 'publish')) },
      { label: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', num: true, render: (q) => fmtRate(rate(q, 'deliver_get')) },
      { label: 'Ack', sort: 'message_stats.ack_details.rate', num: true, render: (q) => fmtRate(rate(q, 'ack')) },
    ],
    form: queueForm,
  },
  exchanges: {
    title: 'Exchanges',
    columns: [
      { label: 'Virtual host', sort: 'vhost', render: (x) => x.vhost },
      { label: 'Name', sort: 'name', render: (x) => link('exchanges', x), rowHeader: true },
      { label: 'Type', sort: 'type', render: (x) => x.type },
      { label: 'Features', render: features },
      { label: 'Message rate in', sort: 'message_stats.publish_in_details.rate', num: true, render: (x) => fmtRate(rate(x, 'publish_in')) },
      { label: 'Message rate out', sort: 'message_stats.publish_out_details.rate', num: true, render: (x) => fmtRate(rate(x, 'publish_out')) },
    ],
    form: exchangeForm,
  },
  connections: {
    title: 'Connections',
    columns: [
      { label: 'Name', sort: 'name', render: (c) => c.name, rowHeader: true },
      { label: 'Virtual host', sort: 'vhost', render: (c) => c.vhost },
      { label: 'User', sort: 'user', render: (c) => c.user },
      { label: 'State', sort: 'state', render: (c) => h('span', { class: `state ${c.state}` }, c.state || '') },
      { label: 'TLS', sort: 'ssl', render: (c) => (c.ssl ? 'yes' : 'no') },
      { label: 'Protocol', sort: 'protocol', render: (c) => c.protocol },
      { label: 'Client', render: (c) => [c.client_properties?.product, c.client_properties?.version].filter(Boolean).join(' ') },
      { label: 'Channels', sort: 'channels', num: true, render: (c) => num(c.channels) },
      { label: 'From client', sort: 'recv_oct_details.rate', num: true, render: (c) => bytesRate(c, 'recv_oct') },
      { label: 'To client', sort: 'send_oct_details.rate', num: true, render: (c) => bytesRate(c, 'send_oct') },
    ],
  },
  channels: {
    title: 'Channels',
    columns: [
      { label: 'Channel', sort: 'name', render: (c) => c.name, rowHeader: true },
      { label: 'Virtual host', sort: 'vhost', render: (c) => c.vhost },
      { label: 'User', sort: 'user', render: (c) => c.user },
      { label: 'Mode', render: (c) => [c.confirm ? 'confirm' : '', c.transactional ? 'transactional' : ''].filter(Boolean).join(', ') },
      { label: 'State', sort: 'state', render: (c) => c.state },
      { label: 'Consumers', sort: 'consumer_count', num: true, render: (c) => num(c.consumer_count) },
      { label: 'Prefetch', sort: 'prefetch_count', num: true, render: (c) => num(c.prefetch_count) },
      { label: 'Unacked', sort: 'messages_unacknowledged', num: true, render: (c) => num(c.messages_unacknowledged) },
      { label: 'Unconfirmed', sort: 'messages_unconfirmed', num: true, render: (c) => num(c.messages_unconfirmed) },
      { label: 'Publish', sort: 'message_stats.publish_details.rate', num: true, render: (c) => fmtRate(rate(c, 'publish')) },
      { label: 'Confirm', sort: 'message_stats.confirm_details.rate', num: true, render: (c) => fmtRate(rate(c, 'confirm')) },
      { label: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', num: true, render: (c) => fmtRate(rate(c, 'deliver_get')) },
      { label: 'Ack', sort: 'message_stats.ack_details.rate', num: true, render: (c) => fmtRate(rate(c, 'ack')) },
    ],
  },
};

export async function vhostNames() {
  const list = await get('vhosts');
  return list.map((v) => v.name);
}

export function renderList(main, ctx) {
  const kind = ctx.page;
  const cfg = LISTS[kind];
  const q = ctx.query;
  const state = {
    vhost: q.get('vhost') || '',
    name: q.get('name') || '',
    regex: q.get('regex') === '1',
    sort: q.get('sort') || 'name',
    reverse: q.get('reverse') === '1',
    page: Math.max(1, Number(q.get('page')) || 1),
    size: PAGE_SIZES.includes(Number(q.get('size'))) ? Number(q.get('size')) : DEFAULT_PAGE_SIZE,
  };

  const count = h('span', { class: 'count', 'data-testid': 'list-count' });
  main.append(h('h1', {}, cfg.title, ' ', count));

  const vhostSel = select([['', 'All virtual hosts']], { name: 'vhost', 'data-testid': 'filter-vhost' });
  const nameInput = h('input', { type: 'search', name: 'name', value: state.name, 'data-testid': 'filter-name', autocomplete: 'off' });
  const regexBox = h('input', { type: 'checkbox', name: 'regex', checked: state.regex, 'data-testid': 'filter-regex' });
  const sizeSel = select(PAGE_SIZES.map((n) => [String(n), String(n)]), { name: 'size', value: String(state.size), 'data-testid': 'page-size' });
  const controls = h('form', { class: 'controls', role: 'search', 'aria-label': `Filter ${cfg.title.toLowerCase()}`, onsubmit: (e) => { e.preventDefault(); changed(); } },
    field('Virtual host', vhostSel), field('Filter by name', nameInput), field('Regex', regexBox), field('Page size', sizeSel));
  main.append(controls);
  vhostNames().then((names) => {
    for (const n of names) vhostSel.append(h('option', { value: n, selected: n === state.vhost }, n));
  }).catch(() => {});

  const headRow = h('tr');
  const tbody = h('tbody');
  const tableEl = h('table', { 'data-testid': `${kind}-table`, class: 'list' }, h('caption', { class: 'sr-only' }, cfg.title), h('thead', {}, headRow), tbody);
  for (const c of cfg.columns) {
    const th = h('th', { scope: 'col', class: c.num ? 'num' : null });
    if (c.sort) {
      th.append(h('button', { type: 'button', class: 'sort', 'data-sort': c.sort, onclick: () => {
        if (state.sort === c.sort) state.reverse = !state.reverse; else { state.sort = c.sort; state.reverse = false; }
        state.page = 1;
        load();
      } }, c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' })));
    } else {
      th.textContent = c.label;
    }
    headRow.append(th);
  }
  main.append(scrollBox(tableEl, `${cfg.title} table`));

  const info = h('span', { 'data-testid': 'page-info', 'aria-live': 'polite' });
  const range = h('span', { class: 'muted', 'data-testid': 'list-range' });
  const pageBtn = (label, testid, to) => h('button', { type: 'button', 'data-testid': testid, onclick: () => { state.page = to(); load(); } }, label);
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    pageBtn('First', 'page-first', () => 1),
    pageBtn('Previous', 'page-prev', () => Math.max(1, state.page - 1)),
    info,
    pageBtn('Next', 'page-next', () => Math.min(state.pageCount || 1, state.page + 1)),
    pageBtn('Last', 'page-last', () => state.pageCount || 1));
  main.append(pager);
  const [first, prev, , next, last] = pager.children;
  pager.append(range);

  if (cfg.form) main.append(cfg.form(ctx, () => load()));

  let typing = null;
  nameInput.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(changed, 300); });
  ctx.onCleanup(() => clearTimeout(typing));
  for (const el of [vhostSel, regexBox, sizeSel]) el.addEventListener('change', changed);

  function changed() {
    state.vhost = vhostSel.value;
    state.name = nameInput.value;
    state.regex = regexBox.checked;
    state.size = Number(sizeSel.value);
    state.page = 1;
    load();
  }

  // Answers can come back out of order (polls and clicks overlap): only the newest is drawn.
  let seq = 0;
  async function load() {
    const my = ++seq;
    const p = new URLSearchParams({
      page: state.page, page_size: state.size, name: state.name, use_regex: state.regex,
      sort: state.sort, sort_reverse: state.reverse,
    });
    const qs = new URLSearchParams();
    if (state.vhost) qs.set('vhost', state.vhost);
    if (state.name) qs.set('name', state.name);
    if (state.regex) qs.set('regex', '1');
    if (state.sort !== 'name') qs.set('sort', state.sort);
    if (state.reverse) qs.set('reverse', '1');
    if (state.page > 1) qs.set('page', state.page);
    if (state.size !== DEFAULT_PAGE_SIZE) qs.set('size', state.size);
    ctx.setQuery(qs);
    let res;
    try {
      res = await get(`${kind}${state.vhost ? `/${enc(state.vhost)}` : ''}?${p}`, { silent: true });
    } catch (e) {
      if (my !== seq) return;
      // The list shrank under us (queues deleted): start again from the first page.
      if (e.error === 'page_out_of_range' && state.page > 1) { state.page = 1; load(); return; }
      showAlert(e.describe(), 'poll-list');
      e.shown = true;
      throw e;
    }
    if (my !== seq) return;
    clearAlert('poll-list');
    draw(res);
  }

  function draw(res) {
    state.pageCount = Math.max(1, res.page_count || 0);
    const rows = res.items || [];
    const trs = rows.map((o) => h('tr', {}, cfg.columns.map((c) => {
      const v = c.render(o);
      return c.rowHeader ? h('th', { scope: 'row' }, v) : h('td', { class: c.num ? 'num' : null }, v);
    })));
    if (!trs.length) {
      const msg = state.name ? 'Nothing matches the filter.' : `No ${cfg.title.toLowerCase()}.`;
      trs.push(h('tr', {}, h('td', { colspan: cfg.columns.length, class: 'empty' }, msg)));
    }
    tbody.replaceChildren(...trs);
    for (const th of headRow.children) {
      const b = th.querySelector('button');
      const active = b && b.dataset.sort === state.sort;
      if (active) th.setAttribute('aria-sort', state.reverse ? 'descending' : 'ascending'); else th.removeAttribute('aria-sort');
      if (b) b.querySelector('.arrow').textContent = active ? (state.reverse ? ' ▼' : ' ▲') : '';
    }
    info.textContent = `Page ${res.page || state.page} of ${state.pageCount}`;
    const from = rows.length ? (state.page - 1) * state.size + 1 : 0;
    const to = rows.length ? from + rows.length - 1 : 0;
    const filtered = res.filtered_count !== res.total_count ? ` (filtered from ${num(res.total_count)})` : '';
    count.textContent = `(${num(res.filtered_count)})`;
    range.textContent = `${num(from)}–${num(to)} of ${num(res.filtered_count)}${filtered}`;
    first.disabled = prev.disabled = state.page <= 1;
    next.disabled = last.disabled = state.page >= state.pageCount;
  }

  // The first poll draws the list; later ones keep rates and depths live.
  ctx.poll(load);
}

function vhostSelect(ctx, attrs = {}) {
  const sel = select([['/', '/']], { name: 'vhost', ...attrs });
  vhostNames().then((names) => {
    sel.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === (ctx.query.get('vhost') || '/') }, n)));
  }).catch(() => {});
  return sel;
}

function queueForm(ctx, reload) {
  const form = h('form', { class: 'grid-form', 'data-testid': 'add-queue-form' },
    field('Virtual host', vhostSelect(ctx, { 'data-testid': 'add-queue-vhost' })),
    field('Name', h('input', { name: 'name', required: true, 'data-testid': 'add-queue-name', autocomplete: 'off' })),
    field('Type', select([['', 'Default for virtual host'], 'classic'], { name: 'type', 'data-testid': 'add-queue-type' })),
    field('Durability', select([['true', 'Durable'], ['false', 'Transient']], { name: 'durable', 'data-testid': 'add-queue-durable' })),
    field('Auto delete', select([['false', 'No'], ['true', 'Yes']], { name: 'auto_delete', 'data-testid': 'add-queue-autodelete' })),
    field('Arguments (JSON object)', h('textarea', { name: 'arguments', rows: 2, placeholder: '{"x-message-ttl": 60000}', 'data-testid': 'add-queue-args' }), 'For example x-message-ttl, x-max-length, x-dead-letter-exchange.'),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'add-queue-submit' }, 'Add queue')));
  onSubmit(form, async (fd) => {
    const name = String(fd.get('name')).trim();
    const argsObj = parseObject(fd.get('arguments'), 'Arguments');
    if (fd.get('type')) argsObj['x-queue-type'] = fd.get('type');
    await put(`queues/${enc(fd.get('vhost'))}/${enc(name)}`, {
      durable: fd.get('durable') === 'true', auto_delete: fd.get('auto_delete') === 'true', arguments: argsObj,
    });
    say(`Queue ${name} added.`);
    form.elements.name.value = '';
    reload();
  });
  return section('Add a new queue', form);
}

function exchangeForm(ctx, reload) {
  const typeSel = select(['direct', 'fanout', 'headers', 'topic'], { name: 'type', 'data-testid': 'add-exchange-type' });
  get('overview').then((o) => {
    const types = (o.exchange_types || []).filter((t) => t.enabled !== false).map((t) => t.name);
    if (types.length) typeSel.replaceChildren(...types.map((t) => h('option', { value: t }, t)));
  }).catch(() => {});
  const form = h('form', { class: 'grid-form', 'data-testid': 'add-exchange-form' },
    field('Virtual host', vhostSelect(ctx, { 'data-testid': 'add-exchange-vhost' })),
    field('Name', h('input', { name: 'name', required: true, 'data-testid': 'add-exchange-name', autocomplete: 'off' })),
    field('Type', typeSel),
    field('Durability', select([['true', 'Durable'], ['false', 'Transient']], { name: 'durable' })),
    field('Auto delete', select([['false', 'No'], ['true', 'Yes']], { name: 'auto_delete' })),
    field('Internal', select([['false', 'No'], ['true', 'Yes']], { name: 'internal' })),
    field('Arguments (JSON object)', h('textarea', { name: 'arguments', rows: 2, placeholder: '{"alternate-exchange": "my-ae"}', id: uid('xargs') })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'add-exchange-submit' }, 'Add exchange')));
  onSubmit(form, async (fd) => {
    const name = String(fd.get('name')).trim();
    await put(`exchanges/${enc(fd.get('vhost'))}/${enc(name)}`, {
      type: fd.get('type'), durable: fd.get('durable') === 'true', auto_delete: fd.get('auto_delete') === 'true',
      internal: fd.get('internal') === 'true', arguments: parseObject(fd.get('arguments'), 'Arguments'),
    });
    say(`Exchange ${name} added.`);
    form.elements.name.value = '';
    reload();
  });
  return section('Add a new exchange', form);
}
