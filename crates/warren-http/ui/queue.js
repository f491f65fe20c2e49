// One queue: details, depth and rate charts, consumers, bindings, publish, get, move,
// purge and delete.

import { get, post, del, enc, say } from './api.js';
import {
  h, field, select, section, table, dl, num, fmtBytes, rate, features, args, parseObject, onSubmit, button,
  confirmDialog, renderIfChanged, yesNo,
} from './dom.js';
import { lineChart } from './charts.js';
import { publishForm, unbind, nameInput, queueNames, exchangeNames } from './exchange.js';

const ACK_MODES = [
  ['ack_requeue_true', 'Nack, requeue (keep)'],
  ['ack_requeue_false', 'Ack (remove)'],
  ['reject_requeue_true', 'Reject, requeue (keep)'],
  ['reject_requeue_false', 'Reject (dead-letter or drop)'],
];

export function renderQueue(main, ctx, { vhost, name }) {
  const base = `queues/${enc(vhost)}/${enc(name)}`;
  main.append(h('h1', {}, 'Queue ', h('span', { class: 'name', 'data-testid': 'queue-name' }, name)),
    h('p', { class: 'muted' }, 'Virtual host ', h('strong', {}, vhost)));

  const charts = h('div', { class: 'charts' });
  const details = h('div', { 'data-testid': 'queue-details' });
  main.append(section('Overview', charts, details));
  const depth = lineChart(charts, {
    title: 'Queued messages', testid: 'queue-depth',
    series: [{ key: 'ready', label: 'Ready' }, { key: 'unacked', label: 'Unacked' }, { key: 'total', label: 'Total' }],
  });
  const rates = lineChart(charts, {
    title: 'Message rates', testid: 'queue-rates', kind: 'rate',
    series: [{ key: 'publish', label: 'Incoming' }, { key: 'deliver_get', label: 'Deliver / get' }, { key: 'ack', label: 'Consumer ack' }, { key: 'redeliver', label: 'Redelivered' }],
  });
  ctx.onCleanup(() => { depth.destroy(); rates.destroy(); });

  const consumers = h('div', { 'data-testid': 'queue-consumers' });
  main.append(section('Consumers', consumers));

  // ---- bindings ----
  const bindings = h('div', { 'data-testid': 'queue-bindings' });
  const loadBindings = async () => {
    const list = await get(`${base}/bindings`, { alertKey: 'poll-bindings' });
    renderIfChanged(bindings, list, (rows) => table([
      { label: 'From', render: (b) => (b.source === '' ? h('span', {}, '(Default exchange binding)') : h('a', { href: `#/exchanges/${enc(b.vhost)}/${enc(b.source)}` }, b.source)) },
      { label: 'Routing key', render: (b) => h('code', {}, b.routing_key) },
      { label: 'Arguments', render: (b) => args(b.arguments) },
      { label: 'Action', rowHeader: false, render: (b) => (b.source === '' ? h('span', { class: 'muted' }, 'Cannot be removed') : button('Unbind', async () => {
        await unbind(b);
        say(`Unbound from ${b.source}.`);
        await loadBindings();
      }, { 'data-testid': 'unbind' })) },
    ], rows, { caption: 'Bindings', testid: 'bindings-table', empty: 'No bindings.' }));
  };
  const [srcInput, srcList] = nameInput({ name: 'source', required: true, 'data-testid': 'bind-source' }, () => exchangeNames(vhost));
  const bindForm = h('form', { class: 'grid-form', 'data-testid': 'bind-form' },
    field('From exchange', srcInput), srcList,
    field('Routing key', h('input', { name: 'routing_key', 'data-testid': 'bind-routing-key', autocomplete: 'off' })),
    field('Arguments (JSON object)', h('textarea', { name: 'arguments', rows: 2 })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': 'bind-submit' }, 'Bind')));
  onSubmit(bindForm, async (fd) => {
    const src = String(fd.get('source')).trim();
    await post(`bindings/${enc(vhost)}/e/${enc(src)}/q/${enc(name)}`, {
      routing_key: String(fd.get('routing_key')), arguments: parseObject(fd.get('arguments'), 'Arguments'),
    });
    say(`Bound from ${src}.`);
    await loadBindings();
  });
  main.append(section('Bindings', bindings, h('h3', {}, 'Add binding to this queue'), bindForm));

  main.append(section('Publish message', h('p', { class: 'muted' }, 'Published through the default exchange with the queue name as routing key.'),
    publishForm({ vhost, exchange: '', routingKey: name })));

  // ---- get messages ----
  const results = h('div', { 'data-testid': 'get-result', class: 'messages' });
  const getForm = h('form', { class: 'grid-form', 'data-testid': 'get-form' },
    field('Ack mode', select(ACK_MODES, { name: 'ackmode', 'data-testid': 'get-ackmode' }), 'Requeued messages are marked redelivered.'),
    field('Encoding', select([['auto', 'Automatic string/base64'], ['base64', 'Base64']], { name: 'encoding', 'data-testid': 'get-encoding' })),
    field('Messages', h('input', { name: 'count', type: 'number', min: 1, value: '1', required: true, 'data-testid': 'get-count' })),
    field('Truncate payload at (bytes)', h('input', { name: 'truncate', type: 'number', min: 1, value: '50000', 'data-testid': 'get-truncate' })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': 'get-submit' }, 'Get messages')));
  onSubmit(getForm, async (fd) => {
    const body = { count: Number(fd.get('count')), ackmode: fd.get('ackmode'), encoding: fd.get('encoding') };
    if (fd.get('truncate')) body.truncate = Number(fd.get('truncate'));
    results.replaceChildren();
    const msgs = await post(`${base}/get`, body);
    results.replaceChildren(...(msgs.length ? msgs.map(messageView) : [h('p', { 'data-testid': 'get-empty' }, 'Queue is empty.')]));
    say(`Got ${msgs.length} message${msgs.length === 1 ? '' : 's'}.`);
  });
  main.append(section('Get messages', h('p', { class: 'muted' }, 'Getting messages is a destructive action unless they are requeued.'), getForm, results));

  // ---- move (Warren's own endpoint; RabbitMQ's UI uses a shovel for this) ----
  const [destInput, destList] = nameInput({ name: 'destination', required: true, 'data-testid': 'move-destination' }, () => queueNames(vhost).then((n) => n.filter((x) => x !== name)));
  const moveForm = h('form', { class: 'grid-form', 'data-testid': 'move-form' },
    field('Destination queue', destInput, 'In the same virtual host.'), destList,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': 'move-submit' }, 'Move messages')));
  onSubmit(moveForm, async (fd) => {
    const dest = String(fd.get('destination')).trim();
    const res = await post(`${base}/move`, { destination: dest });
    say(`Moved ${num(res?.moved ?? 0)} message${res?.moved === 1 ? '' : 's'} to ${dest}.`);
  });
  main.append(section('Move messages', moveForm));

  // ---- purge and delete ----
  main.append(section('Purge and delete',
    h('div', { class: 'buttons' },
      button('Purge messages', async () => {
        if (!(await confirmDialog(`Purge all ready messages from queue ${name}?`))) return;
        await del(`${base}/contents`);
        say(`Queue ${name} purged.`);
      }, { class: 'danger', 'data-testid': 'purge-queue' }),
      button('Delete queue', async () => {
        if (!(await confirmDialog(`Delete queue ${name} in virtual host ${vhost}? Its messages are lost.`))) return;
        await del(base);
        say(`Queue ${name} deleted.`);
        document.getElementById('status').dataset.keep = '1';
        location.hash = '#/queues';
      }, { class: 'danger', 'data-testid': 'delete-queue' }))));

  ctx.poll(async () => {
    const q = await get(base, { alertKey: 'poll-queue' });
    details.replaceChildren(dl([
      ['Type', q.type],
      ['Features', features(q)],
      ['State', q.state, 'queue-state'],
      ['Consumers', num(q.consumers), 'queue-consumer-count'],
      ['Ready', num(q.messages_ready), 'queue-ready'],
      ['Unacked', num(q.messages_unacknowledged), 'queue-unacked'],
      ['Total', num(q.messages), 'queue-messages'],
      ['Message bytes', fmtBytes(q.message_bytes)],
      ['Policy', q.policy || '–'],
      q.operator_policy ? ['Operator policy', q.operator_policy] : null,
      ['Effective policy definition', args(q.effective_policy_definition) || '–'],
      q.exclusive ? ['Exclusive consumer', q.exclusive_consumer_tag || '–'] : null,
      ['Arguments', args(q.arguments) || '–'],
    ]));
    depth.push([q.messages_ready, q.messages_unacknowledged, q.messages]);
    rates.push([rate(q, 'publish'), rate(q, 'deliver_get'), rate(q, 'ack'), rate(q, 'redeliver')]);
    renderIfChanged(consumers, q.consumer_details || [], (rows) => table([
      { label: 'Consumer tag', render: (c) => c.consumer_tag },
      { label: 'Channel', render: (c) => c.channel_details?.name || '–' },
      { label: 'Ack required', render: (c) => yesNo(c.ack_required) },
      { label: 'Exclusive', render: (c) => yesNo(c.exclusive) },
      { label: 'Prefetch', num: true, render: (c) => num(c.prefetch_count) },
      { label: 'Active', render: (c) => yesNo(c.active ?? true) },
      { label: 'Arguments', render: (c) => args(c.arguments) },
    ], rows, { caption: 'Consumers', empty: 'No consumers.' }));
    await loadBindings();
  });
}

function messageView(m, i) {
  const props = Object.entries(m.properties || {});
  return h('article', { class: 'message', 'data-testid': 'message' },
    h('h3', {}, `Message ${i + 1}`),
    dl([
      ['Exchange', m.exchange || '(AMQP default)'],
      ['Routing key', m.routing_key],
      ['Redelivered', yesNo(m.redelivered), 'message-redelivered'],
      ['Messages left in queue', num(m.message_count)],
      ['Properties', props.length ? h('ul', { class: 'kv' }, props.map(([k, v]) => h('li', {}, h('code', {}, k), ' = ',
        k === 'headers' ? args(v) : typeof v === 'object' ? JSON.stringify(v) : String(v)))) : '–', 'message-properties'],
      ['Payload', `${num(m.payload_bytes)} bytes, encoding ${m.payload_encoding}`],
    ]),
    h('pre', { class: 'payload', 'data-testid': 'message-payload', tabindex: 0, 'aria-label': `Payload of message ${i + 1}` }, m.payload));
}
