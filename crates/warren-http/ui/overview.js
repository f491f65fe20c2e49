// Overview: live message charts, object totals, nodes (memory, disk, alarms) and listeners.

import { get, hasTag } from './api.js';
import { h, section, table, num, fmtBytes, rate } from './dom.js';
import { lineChart } from './charts.js';

const RATES = [
  ['publish', 'Publish'], ['confirm', 'Publisher confirm'], ['deliver_get', 'Deliver / get'],
  ['ack', 'Consumer ack'], ['redeliver', 'Redelivered'], ['get_empty', 'Get (empty)'],
  ['return_unroutable', 'Unroutable (return)'], ['drop_unroutable', 'Unroutable (drop)'],
];
const TOTALS = [['connections', 'Connections'], ['channels', 'Channels'], ['exchanges', 'Exchanges'], ['queues', 'Queues'], ['consumers', 'Consumers']];

export function renderOverview(main, ctx) {
  const version = h('p', { class: 'muted', 'data-testid': 'version' });
  main.append(h('h1', {}, 'Overview'), version);

  const charts = h('div', { class: 'charts' });
  main.append(section('Queued messages and message rates', charts));
  const queued = lineChart(charts, {
    title: 'Queued messages', testid: 'overview-queued',
    series: [{ key: 'ready', label: 'Ready' }, { key: 'unacked', label: 'Unacked' }, { key: 'total', label: 'Total' }],
  });
  const rates = lineChart(charts, { title: 'Message rates', testid: 'overview-rates', kind: 'rate', series: RATES.map(([key, label]) => ({ key, label })) });
  ctx.onCleanup(() => { queued.destroy(); rates.destroy(); });

  const totals = h('dl', { class: 'totals', 'data-testid': 'totals' });
  const totalCells = Object.fromEntries(TOTALS.map(([k, label]) => {
    const dd = h('dd', { 'data-testid': `total-${k}` }, '–');
    totals.append(h('div', {}, h('dt', {}, label), dd));
    return [k, dd];
  }));
  main.append(section('Totals', totals));

  const monitor = hasTag('administrator', 'monitoring');
  const nodes = h('div', { 'data-testid': 'nodes' }, monitor ? h('p', { class: 'muted' }, 'Loading…') : h('p', { class: 'muted' }, 'Node details need the monitoring or administrator tag.'));
  main.append(section('Nodes', nodes));
  const listeners = h('div', { 'data-testid': 'listeners' });
  main.append(section('Listeners', listeners));

  ctx.poll(async () => {
    const o = await get('overview', { alertKey: 'poll-overview' });
    version.textContent = `${o.product_name || 'Warren'} ${o.product_version || ''} · RabbitMQ ${o.rabbitmq_version} compatible · node ${o.node} · cluster ${o.cluster_name}`;
    const qt = o.queue_totals || {};
    queued.push([qt.messages_ready, qt.messages_unacknowledged, qt.messages]);
    rates.push(RATES.map(([k]) => rate(o, k)));
    for (const [k] of TOTALS) totalCells[k].textContent = num(o.object_totals?.[k] ?? 0);
    listeners.replaceChildren(table([
      { key: 'protocol', label: 'Protocol' },
      { label: 'Bound to', render: (l) => l.ip_address },
      { key: 'port', label: 'Port', num: true },
      { key: 'node', label: 'Node' },
    ], o.listeners || [], { caption: 'Listeners' }));
    if (monitor) {
      const list = await get('nodes', { alertKey: 'poll-nodes' });
      nodes.replaceChildren(table([
        { key: 'name', label: 'Name' },
        { label: 'Memory', render: (n) => usage(n.mem_used, n.mem_limit, n.mem_alarm, 'used', 'high watermark') },
        { label: 'Disk space', render: (n) => usage(n.disk_free, n.disk_free_limit, n.disk_free_alarm, 'free', 'low watermark') },
        { label: 'File descriptors', render: (n) => (n.fd_used != null ? `${num(n.fd_used)} / ${num(n.fd_total)}` : '–') },
        { label: 'Alarms', render: alarms },
        { label: 'Uptime', render: (n) => uptime(n.uptime) },
        { label: 'Processors', render: (n) => num(n.processors), num: true },
      ], list, { caption: 'Nodes', testid: 'nodes-table' }));
    }
  });
}

function usage(value, limit, alarm, verb, limitName) {
  return h('span', { class: alarm ? 'alarm' : null }, `${fmtBytes(value)} ${verb}`, h('br'), h('small', {}, `${limitName} ${fmtBytes(limit)}`));
}

function alarms(n) {
  const list = [];
  if (n.mem_alarm) list.push('memory');
  if (n.disk_free_alarm) list.push('disk');
  return list.length
    ? h('strong', { class: 'alarm', 'data-testid': 'node-alarm' }, `Alarm: ${list.join(' and ')}`)
    : h('span', { class: 'ok', 'data-testid': 'node-alarm' }, 'None');
}

function uptime(ms) {
  if (ms == null) return '–';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${mm}m` : `${mm}m ${s % 60}s`;
}
