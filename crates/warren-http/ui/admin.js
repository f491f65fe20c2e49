// Administrator pages: users and permissions, virtual hosts, policies, limits, definitions.

import { get, put, post, del, enc, say, tagList } from './api.js';
import {
  h, field, select, section, table, num, parseObject, onSubmit, button, confirmDialog, json, userError,
} from './dom.js';
import { vhostNames } from './lists.js';

export function renderAdmin(main, ctx) {
  ({ users, vhosts, policies, limits, definitions })[ctx.page](main, ctx);
}

// A select of virtual hosts (or users), filled when the list arrives and again on refresh().
function namesSelect(load, attrs, first) {
  const sel = select(first ? [first] : [], attrs);
  sel.refresh = () => load().then((names) => {
    const keep = sel.value || (first ? first[0] : '/');
    sel.replaceChildren(...(first ? [h('option', { value: first[0] }, first[1])] : []),
      ...names.map((n) => h('option', { value: n, selected: n === keep }, n)));
  }).catch(() => {});
  sel.refresh();
  return sel;
}
const vhostSelect = (attrs, first) => namesSelect(vhostNames, { name: 'vhost', ...attrs }, first);
const userSelect = (attrs) => namesSelect(() => get('users').then((l) => l.map((u) => u.name)), { name: 'user', ...attrs });

function deleteButton(what, path, reload, testid) {
  return button('Delete', async () => {
    if (!(await confirmDialog(`Delete ${what}?`))) return;
    await del(path);
    say(`Deleted ${what}.`);
    reload();
  }, { class: 'danger small', 'data-testid': testid, 'aria-label': `Delete ${what}` });
}

// ---- users and permissions ----

function users(main) {
  main.append(h('h1', {}, 'Users'));
  const list = h('div', { 'data-testid': 'users' });
  const perms = h('div', { 'data-testid': 'permissions' });
  let permUser = null;
  const load = async () => {
    const [us, ps] = await Promise.all([get('users'), get('permissions')]);
    if (permUser) permUser.refresh();
    list.replaceChildren(table([
      { label: 'Name', render: (u) => u.name },
      { label: 'Tags', render: (u) => tagList(u.tags).join(', ') || '(none)' },
      { label: 'Can access virtual hosts', render: (u) => ps.filter((p) => p.user === u.name).map((p) => p.vhost).join(', ') || 'No access' },
      { label: 'Has password', render: (u) => (u.password_hash ? 'yes' : 'no') },
      { label: 'Action', rowHeader: false, render: (u) => deleteButton(`user ${u.name}`, `users/${enc(u.name)}`, load, 'delete-user') },
    ], us, { caption: 'Users', testid: 'users-table' }));
    perms.replaceChildren(table([
      { label: 'User', render: (p) => p.user },
      { label: 'Virtual host', render: (p) => p.vhost },
      { label: 'Configure', render: (p) => h('code', {}, p.configure) },
      { label: 'Write', render: (p) => h('code', {}, p.write) },
      { label: 'Read', render: (p) => h('code', {}, p.read) },
      { label: 'Action', rowHeader: false, render: (p) => deleteButton(`permissions of ${p.user} on ${p.vhost}`, `permissions/${enc(p.vhost)}/${enc(p.user)}`, load, 'clear-permission') },
    ], ps, { caption: 'Permissions', testid: 'permissions-table', empty: 'No permissions.' }));
  };

  const tagsInput = h('input', { name: 'tags', 'data-testid': 'user-tags', autocomplete: 'off' });
  const addTag = (t) => h('button', { type: 'button', class: 'small', onclick: () => {
    const cur = tagList(tagsInput.value);
    if (!cur.includes(t)) tagsInput.value = [...cur, t].join(', ');
  } }, `+ ${t}`);
  const form = h('form', { class: 'grid-form', 'data-testid': 'add-user-form' },
    field('Username', h('input', { name: 'name', required: true, autocomplete: 'off', 'data-testid': 'user-name' })),
    field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', 'data-testid': 'user-password' }), 'Leave empty for a user that cannot log in with a password.'),
    field('Tags (comma separated)', tagsInput),
    h('div', { class: 'buttons tag-buttons', role: 'group', 'aria-label': 'Add a tag' }, ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'].map(addTag)),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'add-user-submit' }, 'Add user')));
  onSubmit(form, async (fd) => {
    const name = String(fd.get('name')).trim();
    const body = { tags: tagList(fd.get('tags')).join(',') };
    if (fd.get('password')) body.password = fd.get('password'); else body.password_hash = '';
    await put(`users/${enc(name)}`, body);
    say(`User ${name} saved.`);
    form.reset();
    load();
  });

  permUser = userSelect({ 'data-testid': 'perm-user' });
  const permForm = h('form', { class: 'grid-form', 'data-testid': 'set-permission-form' },
    field('User', permUser),
    field('Virtual host', vhostSelect({ 'data-testid': 'perm-vhost' })),
    field('Configure regexp', h('input', { name: 'configure', value: '.*', 'data-testid': 'perm-configure' })),
    field('Write regexp', h('input', { name: 'write', value: '.*', 'data-testid': 'perm-write' })),
    field('Read regexp', h('input', { name: 'read', value: '.*', 'data-testid': 'perm-read' })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': 'set-permission-submit' }, 'Set permission')));
  onSubmit(permForm, async (fd) => {
    await put(`permissions/${enc(fd.get('vhost'))}/${enc(fd.get('user'))}`, {
      configure: fd.get('configure'), write: fd.get('write'), read: fd.get('read'),
    });
    say(`Permissions of ${fd.get('user')} on ${fd.get('vhost')} set.`);
    load();
  });

  main.append(section('All users', list), section('Add a user', form), section('Permissions', perms, h('h3', {}, 'Set permissions'), permForm));
  load().catch(() => {});
}

// ---- virtual hosts ----

function vhosts(main) {
  main.append(h('h1', {}, 'Virtual hosts'));
  const list = h('div', { 'data-testid': 'vhosts' });
  const load = async () => {
    const vs = await get('vhosts');
    list.replaceChildren(table([
      { label: 'Name', render: (v) => v.name },
      { label: 'Description', render: (v) => v.description || '' },
      { label: 'Tags', render: (v) => tagList(v.tags).join(', ') },
      { label: 'Default queue type', render: (v) => v.default_queue_type || 'classic' },
      { label: 'State', render: (v) => Object.values(v.cluster_state || {}).join(', ') },
      { label: 'Ready', num: true, render: (v) => num(v.messages_ready) },
      { label: 'Unacked', num: true, render: (v) => num(v.messages_unacknowledged) },
      { label: 'Total', num: true, render: (v) => num(v.messages) },
      { label: 'Action', rowHeader: false, render: (v) => deleteButton(`virtual host ${v.name}`, `vhosts/${enc(v.name)}`, load, 'delete-vhost') },
    ], vs, { caption: 'Virtual hosts', testid: 'vhosts-table' }));
  };
  const form = h('form', { class: 'grid-form', 'data-testid': 'add-vhost-form' },
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off', 'data-testid': 'vhost-name' })),
    field('Description', h('input', { name: 'description', autocomplete: 'off' })),
    field('Tags (comma separated)', h('input', { name: 'tags', autocomplete: 'off' })),
    field('Default queue type', select(['classic'], { name: 'default_queue_type' })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'add-vhost-submit' }, 'Add virtual host')));
  onSubmit(form, async (fd) => {
    const name = String(fd.get('name')).trim();
    await put(`vhosts/${enc(name)}`, { description: fd.get('description'), tags: tagList(fd.get('tags')).join(','), default_queue_type: fd.get('default_queue_type') });
    say(`Virtual host ${name} added.`);
    form.reset();
    load();
  });
  main.append(section('All virtual hosts', list), section('Add a virtual host', form));
  load().catch(() => {});
}

// ---- policies ----

function policies(main) {
  main.append(h('h1', {}, 'Policies'));
  const list = h('div', { 'data-testid': 'policies' });
  const load = async () => {
    const ps = await get('policies');
    list.replaceChildren(table([
      { label: 'Name', render: (p) => p.name },
      { label: 'Virtual host', render: (p) => p.vhost },
      { label: 'Pattern', render: (p) => h('code', {}, p.pattern) },
      { label: 'Apply to', render: (p) => p['apply-to'] },
      { label: 'Definition', render: (p) => h('code', {}, json(p.definition)) },
      { label: 'Priority', num: true, render: (p) => num(p.priority) },
      { label: 'Action', rowHeader: false, render: (p) => deleteButton(`policy ${p.name} on ${p.vhost}`, `policies/${enc(p.vhost)}/${enc(p.name)}`, load, 'delete-policy') },
    ], ps, { caption: 'Policies', testid: 'policies-table', empty: 'No policies.' }));
  };
  const form = h('form', { class: 'grid-form', 'data-testid': 'add-policy-form' },
    field('Virtual host', vhostSelect({ 'data-testid': 'policy-vhost' })),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off', 'data-testid': 'policy-name' })),
    field('Pattern (regexp)', h('input', { name: 'pattern', required: true, autocomplete: 'off', placeholder: '^amq\\.', 'data-testid': 'policy-pattern' })),
    field('Apply to', select([['all', 'Exchanges and queues'], ['queues', 'Queues'], ['exchanges', 'Exchanges']], { name: 'apply-to', value: 'queues', 'data-testid': 'policy-apply-to' })),
    field('Priority', h('input', { name: 'priority', type: 'number', value: '0', 'data-testid': 'policy-priority' })),
    field('Definition (JSON object)', h('textarea', { name: 'definition', rows: 3, required: true, placeholder: '{"max-length": 1000, "message-ttl": 60000}', 'data-testid': 'policy-definition' })),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'add-policy-submit' }, 'Add / update policy')));
  onSubmit(form, async (fd) => {
    const name = String(fd.get('name')).trim();
    await put(`policies/${enc(fd.get('vhost'))}/${enc(name)}`, {
      pattern: fd.get('pattern'), definition: parseObject(fd.get('definition'), 'Definition'),
      priority: Number(fd.get('priority')) || 0, 'apply-to': fd.get('apply-to'),
    });
    say(`Policy ${name} saved.`);
    load();
  });
  main.append(section('User policies', list), section('Add or update a policy', form));
  load().catch(() => {});
}

// ---- limits ----

function limits(main) {
  main.append(h('h1', {}, 'Limits'));
  const vlist = h('div', { 'data-testid': 'vhost-limits' });
  const ulist = h('div', { 'data-testid': 'user-limits' });
  const flatten = (rows, who) => rows.flatMap((r) => Object.entries(r.value || {}).map(([limit, value]) => ({ who: r[who], limit, value })));
  const load = async () => {
    const [vl, ul] = await Promise.all([get('vhost-limits'), get('user-limits')]);
    const cols = (whoLabel, path) => [
      { label: whoLabel, render: (r) => r.who },
      { label: 'Limit', render: (r) => r.limit },
      { label: 'Value', num: true, render: (r) => num(r.value) },
      { label: 'Action', rowHeader: false, render: (r) => button('Clear', async () => {
        await del(`${path}/${enc(r.who)}/${enc(r.limit)}`);
        say(`Cleared ${r.limit} of ${r.who}.`);
        load();
      }, { class: 'small', 'aria-label': `Clear ${r.limit} of ${r.who}` }) },
    ];
    vlist.replaceChildren(table(cols('Virtual host', 'vhost-limits'), flatten(vl, 'vhost'), { caption: 'Virtual host limits', testid: 'vhost-limits-table', empty: 'No virtual host limits.' }));
    ulist.replaceChildren(table(cols('User', 'user-limits'), flatten(ul, 'user'), { caption: 'User limits', testid: 'user-limits-table', empty: 'No user limits.' }));
  };
  const limitForm = (testid, whoField, path, names) => {
    const form = h('form', { class: 'grid-form', 'data-testid': testid },
      whoField,
      field('Limit', select(names, { name: 'limit' })),
      field('Value', h('input', { name: 'value', type: 'number', required: true, 'data-testid': `${testid}-value` }), 'A negative value means no limit.'),
      h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-testid': `${testid}-submit` }, 'Set limit')));
    onSubmit(form, async (fd) => {
      const who = fd.get(whoField.querySelector('select').name);
      await put(`${path}/${enc(who)}/${enc(fd.get('limit'))}`, { value: Number(fd.get('value')) });
      say(`Set ${fd.get('limit')} of ${who} to ${fd.get('value')}.`);
      load();
    });
    return form;
  };
  main.append(
    section('Virtual host limits', vlist, h('h3', {}, 'Set a virtual host limit'),
      limitForm('vhost-limit-form', field('Virtual host', vhostSelect({})), 'vhost-limits', ['max-connections', 'max-queues'])),
    section('User limits', ulist, h('h3', {}, 'Set a user limit'),
      limitForm('user-limit-form', field('User', userSelect({})), 'user-limits', ['max-connections', 'max-channels'])));
  load().catch(() => {});
}

// ---- definitions ----

function definitions(main) {
  main.append(h('h1', {}, 'Definitions'),
    h('p', {}, 'Users, virtual hosts, permissions, parameters, exchanges, queues, bindings and policies, as JSON (the same format as RabbitMQ).'));
  const dlForm = h('form', { class: 'grid-form', 'data-testid': 'download-form' },
    field('Virtual host', vhostSelect({ 'data-testid': 'download-vhost' }, ['', 'All'])),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'download-submit' }, 'Download broker definitions')));
  onSubmit(dlForm, async (fd) => {
    const vhost = fd.get('vhost');
    const defs = await get(vhost ? `definitions/${enc(vhost)}` : 'definitions');
    const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `warren_${location.hostname || 'broker'}_${new Date().toISOString().slice(0, 10)}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    say('Definitions downloaded.');
  });

  const file = h('input', { type: 'file', name: 'file', accept: '.json,application/json', required: true, 'data-testid': 'upload-file' });
  const upForm = h('form', { class: 'grid-form', 'data-testid': 'upload-form' },
    field('Definitions file (JSON)', file),
    field('Virtual host', vhostSelect({ 'data-testid': 'upload-vhost' }, ['', 'All'])),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'upload-submit' }, 'Upload broker definitions')));
  onSubmit(upForm, async (fd) => {
    const f = file.files[0];
    if (!f) throw userError('Choose a definitions file first.');
    const text = await f.text();
    try { JSON.parse(text); } catch (e) { throw userError(`${f.name} is not valid JSON (${e.message})`); }
    const vhost = fd.get('vhost');
    await post(vhost ? `definitions/${enc(vhost)}` : 'definitions', text);
    say(`Definitions from ${f.name} imported.`);
  });
  main.append(section('Export definitions', dlForm), section('Import definitions', upForm));
}
