// One exchange: details, rate chart, bindings from it, publishing, deletion. Also the
// publish form and binding helpers the queue page shares.

import { get, post, del, enc, say } from './api.js';
import {
  h, field, select, section, table, dl, features, args, parseObject, onSubmit, button, confirmDialog,
  renderIfChanged, rate, yesNo, uid,
} from './dom.js';
import { lineChart } from './charts.js';

export const exchangePath = (name) => enc(name || 'amq.default');

// The properties_key is already percent-encoded by the server; it is encoded once more as a
// path segment, as RabbitMQ's own UI does.
export function unbind(b) {
  const kind = b.destination_type === 'exchange' ? 'e' : 'q';
  return del(`bindings/${enc(b.vhost)}/e/${exchangePath(b.source)}/${kind}/${enc(b.destination)}/${enc(b.properties_key)}`);
}

// A text input whose suggestions (a datalist of names) are loaded on first focus, so a
// broker with many objects costs nothing until the user wants them. Clearing the list's
// `loaded` flag makes the next focus load again.
export function nameInput(attrs, loadNames) {
  const listId = uid('names');
  const list = h('datalist', { id: listId });
  const input = h('input', { autocomplete: 'off', list: listId, ...attrs });
  input.addEventListener('focus', () => {
    if (list.dataset.loaded) return;
    list.dataset.loaded = '1';
    loadNames().then((names) => list.replaceChildren(...names.map((n) => h('option', { value: n })))).catch(() => {});
  });
  return [input, list];
}

export const queueNames = (vhost) => get(`queues/${enc(vhost)}?page=1&page_size=500&sort=name`).then((r) => r.items.map((q) => q.name));
export const exchangeNames = (vhost) => get(`exchanges/${enc(vhost)}?page=1&page_size=500&sort=name`).then((r) => r.items.map((x) => x.name).filter(Boolean));

export function publishForm({ vhost, exchange, routingKey, testid = 'publish' }) {
  const form = h('form', { class: 'grid-form', 'data-testid': `${testid}-form` },
    routingKey == null ? field('Routing key', h('input', { name: 'routing_key', 'data-testid': `${testid}-routing-key`, autocomplete: 'off' })) : null,
    field('Delivery mode', select([['1', '1 - Non-persistent'], ['2', '2 - Persistent']], { name: 'delivery_mode', 'data-testid': `${testid}-delivery-mode` })),
    field('Headers (JSON object)', h('textarea', { name: 'headers', rows: 2, placeholder: '{"x-trace": "abc"}', 'data-testid': `${testid}-headers` })),
    field('Other properties (JSON object)', h('textarea', { name: 'properties', rows: 2, placeholder: '{"content_type": "text/plain", "expiration": "60000"}', 'data-testid': `${testid}-properties` }),
      'content_type, content_encoding, priority, correlation_id, reply_to, expiration, message_id, timestamp, type, user_id, app_id'),
    field('Payload', h('textarea', { name: 'payload', rows: 4, 'data-testid': `${testid}-payload` })),
    field('Payload encoding', select([['string', 'String'], ['base64', 'Base64']], { name: 'payload_encoding', 'data-testid': `${testid}-encoding` })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': `${testid}-submit` }, 'Publish message')));
  onSubmit(form, async (fd) => {
    const properties = parseObject(fd.get('properties'), 'Other properties');
    const headers = parseObject(fd.get('headers'), 'Headers');
    properties.delivery_mode = Number(fd.get('delivery_mode'));
    if (Object.keys(headers).length) properties.headers = headers;
    const res = await post(`exchanges/${enc(vhost)}/${exchangePath(exchange)}/publish`, {
      properties, routing_key: routingKey ?? String(fd.get('routing_key')), payload: String(fd.get('payload')),
      payload_encoding: fd.get('payload_encoding'),
    });
    if (res?.routed) say('Message published.');
    else say('Message published, but not routed.', 'warn');
  });
  return form;
}

export function renderExchange(main, ctx, { vhost, name }) {
  const xname = name === 'amq.default' ? '' : name;
  const base = `exchanges/${enc(vhost)}/${exchangePath(xname)}`;
  main.append(h('h1', {}, 'Exchange ', h('span', { class: 'name', 'data-testid': 'exchange-name' }, xname || '(AMQP default)')),
    h('p', { class: 'muted' }, 'Virtual host ', h('strong', {}, vhost)));

  const details = h('div', { 'data-testid': 'exchange-details' });
  const charts = h('div', { class: 'charts' });
  main.append(section('Details', details, charts));
  const rates = lineChart(charts, {
    title: 'Message rates', testid: 'exchange-rates', kind: 'rate',
    series: [{ key: 'publish_in', label: 'Publish (in)' }, { key: 'publish_out', label: 'Publish (out)' }],
  });
  ctx.onCleanup(() => rates.destroy());

  const bindings = h('div', { 'data-testid': 'exchange-bindings' });
  const loadBindings = async () => {
    const list = await get(`${base}/bindings/source`, { alertKey: 'poll-bindings' });
    renderIfChanged(bindings, list, (rows) => table([
      { label: 'To', render: (b) => h('a', { href: `#/${b.destination_type === 'exchange' ? 'exchanges' : 'queues'}/${enc(b.vhost)}/${enc(b.destination)}` }, b.destination) },
      { label: 'Type', render: (b) => b.destination_type },
      { label: 'Routing key', render: (b) => h('code', {}, b.routing_key) },
      { label: 'Arguments', render: (b) => args(b.arguments) },
      { label: 'Action', rowHeader: false, render: (b) => (b.source === '' ? h('span', { class: 'muted' }, 'Default binding') : button('Unbind', async () => {
        await unbind(b);
        say(`Unbound ${b.destination}.`);
        await loadBindings();
      }, { 'data-testid': 'unbind' })) },
    ], rows, { caption: 'Bindings from this exchange', empty: 'No bindings.' }));
  };

  const typeSel = select([['q', 'Queue'], ['e', 'Exchange']], { name: 'type', 'data-testid': 'bind-type' });
  const [destInput, destList] = nameInput({ name: 'destination', required: true, 'data-testid': 'bind-destination' },
    () => (typeSel.value === 'e' ? exchangeNames(vhost) : queueNames(vhost)));
  typeSel.addEventListener('change', () => { delete destList.dataset.loaded; destList.replaceChildren(); });
  const bindForm = h('form', { class: 'grid-form', 'data-testid': 'bind-form' },
    field('Destination type', typeSel),
    field('Destination', destInput), destList,
    field('Routing key', h('input', { name: 'routing_key', 'data-testid': 'bind-routing-key', autocomplete: 'off' })),
    field('Arguments (JSON object)', h('textarea', { name: 'arguments', rows: 2 })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': 'bind-submit' }, 'Bind')));
  onSubmit(bindForm, async (fd) => {
    const dest = String(fd.get('destination')).trim();
    await post(`bindings/${enc(vhost)}/e/${exchangePath(xname)}/${fd.get('type')}/${enc(dest)}`, {
      routing_key: String(fd.get('routing_key')), arguments: parseObject(fd.get('arguments'), 'Arguments'),
    });
    say(`Bound to ${dest}.`);
    await loadBindings();
  });
  main.append(section('Bindings from this exchange', bindings, h('h3', {}, 'Add binding'), bindForm));
  if (xname === '') bindForm.hidden = true;

  main.append(section('Publish message', publishForm({ vhost, exchange: xname })));

  const isSystem = xname === '' || xname.startsWith('amq.');
  main.append(section('Delete this exchange', button('Delete exchange', async () => {
    if (!(await confirmDialog(`Delete exchange ${xname || '(AMQP default)'} in virtual host ${vhost}?`))) return;
    await del(base);
    say(`Exchange ${xname} deleted.`, 'ok');
    document.getElementById('status').dataset.keep = '1';
    location.hash = '#/exchanges';
  }, { class: 'danger', 'data-testid': 'delete-exchange', title: isSystem ? 'System exchanges cannot be deleted' : null })));

  ctx.poll(async () => {
    const x = await get(base, { alertKey: 'poll-exchange' });
    details.replaceChildren(dl([
      ['Type', x.type],
      ['Features', features(x)],
      ['Durable', yesNo(x.durable)],
      ['Auto delete', yesNo(x.auto_delete)],
      ['Internal', yesNo(x.internal)],
      ['Policy', x.policy || '–'],
      ['Arguments', args(x.arguments) || '–'],
    ]));
    rates.push([rate(x, 'publish_in'), rate(x, 'publish_out')]);
    await loadBindings();
  });
}
