"""End-to-end tests of the management web UI in headless Chromium (Playwright).

Starts a private Warren with the management listener (which serves the UI at /), or, when
WARREN_UI_URL is set, drives that URL instead (e.g. tests/python/ui_dev_proxy.py in front of
a running Warren; WARREN_UI_AMQP_PORT is then its AMQP port).

Needs Debian's /usr/bin/chromium and the `playwright` package (no `playwright install`).
Without them the module is skipped, unless WARREN_UI_REQUIRED=1 (CI), where that is an error.
Full-page screenshots go to WARREN_UI_ARTIFACTS (default target/ui-screenshots).

    .venv/bin/pip install -r tests/python/requirements.txt   # and: apt-get install -y chromium
    WARREN_UI_REQUIRED=1 .venv/bin/pytest -q tests/python/test_ui.py
    # without rebuilding Warren: the UI files from the work tree in front of a running broker
    .venv/bin/python tests/python/ui_dev_proxy.py --port 8099 --upstream http://127.0.0.1:15672 &
    WARREN_UI_URL=http://127.0.0.1:8099 WARREN_UI_AMQP_PORT=5672 .venv/bin/pytest -q tests/python/test_ui.py
"""

import json
import os
import re
import time
import uuid

import pika
import pytest
import requests

from conftest import REPO_ROOT, _start_warren, stop_warren

CHROMIUM = os.environ.get("WARREN_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The UI polls every 5 s by default; `?refresh=` makes it poll fast enough for the tests.
REFRESH_MS = 300
WAIT_MS = 10_000
ADMIN = ("guest", "guest")


def _missing():
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r tests/python/requirements.txt)"
    return None


_why = _missing()
if _why:
    if os.environ.get("WARREN_UI_REQUIRED") == "1":
        raise RuntimeError(f"UI tests are required (WARREN_UI_REQUIRED=1) but cannot run: {_why}")
    pytest.skip(f"UI tests skipped: {_why}", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

expect.set_options(timeout=WAIT_MS)
ARTIFACTS = os.environ.get("WARREN_UI_ARTIFACTS") or os.path.join(REPO_ROOT, "target", "ui-screenshots")


def uniq(prefix):
    return f"ui-{prefix}-{uuid.uuid4().hex[:8]}"


def enc(s):
    return requests.utils.quote(s, safe="")


class Api:
    """The management API over requests, for setup, cleanup and checking what the UI did."""

    def __init__(self, base):
        self.base = base.rstrip("/") + "/api"
        self.s = requests.Session()

    def req(self, method, path, body=None, auth=ADMIN, ok=True):
        r = self.s.request(method, self.base + path, auth=auth, timeout=15,
                           json=body if body is not None else None)
        if ok:
            assert r.status_code in (200, 201, 204), (method, path, r.status_code, r.text)
        return r

    def get(self, path, **kw):
        r = self.req("GET", path, **kw)
        return r.json() if r.content else None

    def put(self, path, body=None, **kw):
        return self.req("PUT", path, body if body is not None else {}, **kw)

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body if body is not None else {}, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, ok=False, **kw)

    def queue(self, name, vhost="/"):
        return self.get(f"/queues/{enc(vhost)}/{enc(name)}")

    def queue_exists(self, name, vhost="/"):
        return self.req("GET", f"/queues/{enc(vhost)}/{enc(name)}", ok=False).status_code == 200

    def publish(self, queue, payload, vhost="/", **props):
        r = self.post(f"/exchanges/{enc(vhost)}/amq.default/publish",
                      {"properties": props, "routing_key": queue, "payload": payload, "payload_encoding": "string"})
        assert r.json() == {"routed": True}

    def wait_messages(self, queue, expected, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            n = self.queue(queue)["messages"]
            if n == expected or time.monotonic() >= deadline:
                return n
            time.sleep(0.1)


class Env:
    def __init__(self, base, amqp_host, amqp_port):
        self.base = base.rstrip("/")
        self.api = Api(self.base)
        self.amqp_host = amqp_host
        self.amqp_port = amqp_port

    def url(self, route):
        return f"{self.base}/?refresh={REFRESH_MS}#/{route}"


@pytest.fixture(scope="module")
def env():
    url = os.environ.get("WARREN_UI_URL")
    broker = None
    if url:
        e = Env(url, "127.0.0.1", int(os.environ.get("WARREN_UI_AMQP_PORT", "5672")))
    else:
        broker, _ = _start_warren(extra_args=["--management-listen", "127.0.0.1:0", "--stats-interval", "500"])
        assert broker.http_port, "Warren printed no HTTP listening line"
        e = Env(f"http://127.0.0.1:{broker.http_port}", broker.host, broker.port)
    try:
        r = requests.get(e.base + "/", timeout=10)
        assert r.status_code == 200 and "Warren" in r.text and "app.js" in r.text, \
            f"the UI is not served at {e.base}/: {r.status_code} {r.headers.get('content-type')} {r.text[:200]!r}"
        yield e
    finally:
        if broker is not None:
            stop_warren(broker)


@pytest.fixture(scope="module")
def browser():
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None)
    yield pg
    ctx.close()
    assert not errors, f"uncaught JavaScript errors in the page: {errors}"


A11Y_PROBLEMS = """() => {
  const name = (e) => (e.getAttribute('aria-label') || e.textContent || '').trim();
  const out = [];
  for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    if (!e.labels || !e.labels.length) out.push(`unlabelled ${e.tagName} ${e.name}`);
  for (const e of document.querySelectorAll('th')) if (!e.getAttribute('scope')) out.push(`th without scope: ${name(e)}`);
  for (const e of document.querySelectorAll('button, a[href]')) if (!name(e)) out.push(`nameless ${e.tagName}`);
  for (const e of document.querySelectorAll('img')) if (!e.hasAttribute('alt')) out.push(`img without alt ${e.src}`);
  for (const e of document.querySelectorAll('.plot[role=img]')) if (!name(e)) out.push('chart without text');
  return out;
}"""


def shot(page, name):
    """Saves a full-page screenshot, and checks the page's basic accessibility on the way."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)
    problems = page.evaluate(A11Y_PROBLEMS)
    assert not problems, f"accessibility problems on {name}: {problems}"


def login(page, env, user="guest", password="guest", route="overview"):
    page.goto(env.url("login"))
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#nav")).to_be_visible()
    if route != "overview":
        page.goto(env.url(route))
    expect(page.get_by_test_id("who-name")).to_have_text(user)


def alerts(page):
    return page.get_by_test_id("alerts")


def expect_no_alert(page):
    expect(alerts(page)).to_be_empty(timeout=1000)


def wait_status(page, pattern):
    """Waits for a success message or an error alert; fails with the alert's text."""
    status = page.get_by_test_id("status")
    loc = page.locator('[data-testid="status"]:not(:empty), [data-testid="alerts"]:not(:empty)')
    expect(loc.first).to_be_visible()
    text = alerts(page).locator(".alert > span").all_inner_texts()
    assert not text, f"the UI showed an error: {text}"
    expect(status).to_have_text(re.compile(pattern))


@pytest.fixture
def cleanup(env):
    todo = []
    yield todo
    for path in reversed(todo):
        env.api.delete(path)


# --------------------------------------------------------------------------------- tests


def test_login_and_overview(env, page):
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        env.amqp_host, env.amqp_port, credentials=pika.PlainCredentials(*ADMIN),
        socket_timeout=5, stack_timeout=10, connection_attempts=1))
    try:
        conn.channel()
        page.goto(env.url("overview"))
        # Not logged in yet: any page leads to the login form.
        expect(page).to_have_url(re.compile(r"#/login$"))
        shot(page, "login")
        login(page, env)
        expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        expect(page.get_by_test_id("total-connections")).to_have_text(re.compile(r"^[1-9]\d*$"))
        expect(page.get_by_test_id("total-channels")).to_have_text(re.compile(r"^[1-9]\d*$"))
        expect(page.get_by_test_id("total-exchanges")).to_have_text(re.compile(r"^[1-9]\d*$"))
        expect(page.get_by_test_id("total-queues")).to_have_text(re.compile(r"^\d+$"))
        node = env.api.get("/nodes")[0]
        nodes = page.get_by_test_id("nodes-table")
        expect(nodes).to_contain_text(node["name"])
        expect(nodes).to_contain_text("MiB")
        expect(page.get_by_test_id("node-alarm")).to_have_text("None" if not (node["mem_alarm"] or node["disk_free_alarm"]) else re.compile("Alarm"))
        expect(page.get_by_test_id("listeners")).to_contain_text(str(env.amqp_port))
        # The charts' text alternative carries the current numbers.
        expect(page.get_by_test_id("overview-queued").locator(".plot")).to_have_attribute("aria-label", re.compile(r"Queued messages, now: Ready \d"))
        expect(page.locator('#nav a[aria-current="page"]')).to_have_text("Overview")
        page.wait_for_timeout(1200)  # a few polls, so the charts have lines in the screenshot
        shot(page, "overview")
        expect_no_alert(page)

        # Every read page renders with its table, the connection and its channel included.
        for route, heading, testid in [("connections", "Connections", "connections-table"),
                                       ("channels", "Channels", "channels-table"),
                                       ("exchanges", "Exchanges", "exchanges-table")]:
            page.get_by_role("link", name=heading, exact=True).click()
            expect(page.get_by_role("heading", name=re.compile(f"^{heading}"), level=1)).to_be_visible()
            expect(page.get_by_test_id(testid).locator("tbody tr").first).not_to_have_text(re.compile("^No "))
            shot(page, route)
            expect_no_alert(page)
        expect(page.get_by_test_id("exchanges-table")).to_contain_text("amq.topic")
        page.get_by_test_id("logout").click()
        expect(page).to_have_url(re.compile(r"#/login$"))
        assert page.evaluate("sessionStorage.getItem('warren.auth')") is None
    finally:
        conn.close()


def test_create_queue_with_the_form(env, page, cleanup):
    q = uniq("form")
    cleanup.append(f"/queues/%2F/{q}")
    login(page, env, route="queues")
    form = page.get_by_test_id("add-queue-form")
    form.get_by_label("Name").fill(q)
    form.get_by_label("Arguments (JSON object)").fill('{"x-max-length": 10}')
    form.get_by_role("button", name="Add queue").click()
    wait_status(page, f"Queue {q} added")
    got = env.api.queue(q)
    assert got["durable"] is True and got["auto_delete"] is False and got["arguments"] == {"x-max-length": 10}
    page.get_by_label("Filter by name").fill(q)
    rows = page.get_by_test_id("queues-table").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(q)
    expect(rows.first).to_contain_text("classic")
    expect(page.get_by_test_id("list-count")).to_have_text("(1)")
    # The filter is part of the URL, so the filtered list can be bookmarked.
    # (Waited for: on a broker with only this queue the table has one row before the
    # debounced filter runs.)
    expect(page).to_have_url(re.compile(r"name=" + re.escape(q)))
    page.get_by_label("Filter by name").fill(q + "-nothing")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_text("Nothing matches the filter.")


def test_publish_on_the_queue_page(env, page, cleanup):
    q = uniq("pub")
    env.api.put(f"/queues/%2F/{q}", {"durable": True, "auto_delete": False, "arguments": {}})
    cleanup.append(f"/queues/%2F/{q}")
    login(page, env, route=f"queues/%2F/{q}")
    expect(page.get_by_test_id("queue-name")).to_have_text(q)
    expect(page.get_by_test_id("queue-messages")).to_have_text("0")
    # Published at once: a queue's first statistics sample counts from zero at the
    # previous sample, so a message sent before it still shows as a rate.
    form = page.get_by_test_id("publish-form")
    form.get_by_label("Delivery mode").select_option("2")
    form.get_by_label("Headers (JSON object)").fill('{"x-origin": "ui-test"}')
    form.get_by_label("Payload", exact=True).fill("hello from the UI")
    form.get_by_role("button", name="Publish message").click()
    wait_status(page, "^Message published\\.$")
    expect(page.get_by_test_id("queue-messages")).to_have_text("1")
    expect(page.get_by_test_id("queue-depth-total")).to_have_text("1")
    # The rate lives for about one statistics interval: watch for it on every poll.
    page.wait_for_function(
        "() => parseFloat(document.querySelector('[data-testid=\"queue-rates-publish\"]').textContent) > 0",
        timeout=WAIT_MS, polling=50)
    assert env.api.queue(q)["messages"] == 1
    shot(page, "queue")
    expect_no_alert(page)


def test_get_message_acks_it(env, page, cleanup):
    q = uniq("get")
    env.api.put(f"/queues/%2F/{q}", {"durable": False, "arguments": {}})
    cleanup.append(f"/queues/%2F/{q}")
    env.api.publish(q, "payload-to-get", delivery_mode=2, headers={"k": "v"})
    login(page, env, route=f"queues/%2F/{q}")
    expect(page.get_by_test_id("queue-messages")).to_have_text("1")
    form = page.get_by_test_id("get-form")
    form.get_by_label("Ack mode").select_option("ack_requeue_false")
    form.get_by_role("button", name="Get messages").click()
    wait_status(page, "^Got 1 message\\.$")
    msg = page.get_by_test_id("message")
    expect(msg).to_have_count(1)
    expect(msg.get_by_test_id("message-payload")).to_have_text("payload-to-get")
    expect(msg.get_by_test_id("message-redelivered")).to_have_text("no")
    expect(msg.get_by_test_id("message-properties")).to_contain_text("delivery_mode = 2")
    expect(msg.get_by_test_id("message-properties")).to_contain_text("k = v")
    expect(page.get_by_test_id("queue-messages")).to_have_text("0")
    assert env.api.wait_messages(q, 0) == 0
    shot(page, "queue-get")


def test_move_messages(env, page, cleanup):
    a, b = uniq("move-a"), uniq("move-b")
    for q in (a, b):
        env.api.put(f"/queues/%2F/{q}", {"durable": True, "arguments": {}})
        cleanup.append(f"/queues/%2F/{q}")
    for i in range(3):
        env.api.publish(a, f"m{i}")
    assert env.api.wait_messages(a, 3) == 3
    login(page, env, route=f"queues/%2F/{a}")
    form = page.get_by_test_id("move-form")
    form.get_by_label("Destination queue").fill(b)
    form.get_by_role("button", name="Move messages").click()
    wait_status(page, f"^Moved 3 messages to {b}\\.$")
    assert env.api.wait_messages(b, 3) == 3
    assert env.api.wait_messages(a, 0) == 0
    expect(page.get_by_test_id("queue-messages")).to_have_text("0")


def test_refused_delete_shows_the_api_error(env, page, cleanup):
    user, password, q = uniq("mon"), "mon-pass", uniq("keep")
    env.api.put(f"/users/{user}", {"password": password, "tags": "monitoring"})
    cleanup.append(f"/users/{user}")
    # RabbitMQ (and Warren) let any management user delete a queue that its configure
    # permission covers, monitoring tag or not: so this user may read and write, not configure.
    env.api.put(f"/permissions/%2F/{user}", {"configure": "^$", "write": ".*", "read": ".*"})
    env.api.put(f"/queues/%2F/{q}", {"durable": True, "arguments": {}})
    cleanup.append(f"/queues/%2F/{q}")
    login(page, env, user, password, route=f"queues/%2F/{q}")
    # Navigation follows the tags: no administrator pages.
    nav = page.locator("#nav")
    expect(nav.get_by_role("link", name="Queues")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_be_hidden()
    expect(nav.get_by_role("link", name="Definitions")).to_be_hidden()
    expect(page.get_by_test_id("queue-name")).to_have_text(q)
    page.get_by_test_id("delete-queue").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(q)
    dialog.get_by_role("button", name="OK").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Access refused.")
    expect(alert).to_contain_text("401 not_authorised")
    shot(page, "queue-refused")
    assert env.api.queue_exists(q), "the queue was deleted although the API refused"
    expect(page).to_have_url(re.compile(f"#/queues/%2F/{q}$"))
    # An administrator page typed into the address bar shows the API's refusal too.
    page.goto(env.url("users"))
    expect(page.get_by_role("alert")).to_contain_text("Not administrator user")


def test_wrong_password(env, page):
    page.goto(env.url("login"))
    page.get_by_label("Username").fill("guest")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text(re.compile("^Login failed"))
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.get_by_test_id("logout")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"#/login$"))
    assert page.evaluate("sessionStorage.getItem('warren.auth')") is None


def test_keyboard_and_narrow_window(env, page, cleanup):
    q = uniq("narrow-with-a-rather-long-name-to-stretch-the-table")
    env.api.put(f"/queues/%2F/{q}", {"durable": True, "arguments": {"x-message-ttl": 60000}})
    cleanup.append(f"/queues/%2F/{q}")
    page.goto(env.url("login"))
    # Only the keyboard from here: the username field has the focus.
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("guest")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("guest")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    # Tab through the header and navigation to the Queues link.
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Queues":
            break
    focused = page.locator("#nav a", has_text="Queues")
    expect(focused).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "keyboard focus is not visible"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("^Queues"), level=1)).to_be_visible()
    # Sorting is a button in the column header, so Enter on it sorts.
    page.get_by_role("button", name="Ready").focus()
    page.keyboard.press("Enter")
    expect(page.locator("th[aria-sort]")).to_have_text(re.compile("^Ready"))

    page.set_viewport_size({"width": 400, "height": 800})
    for route, name in [(f"queues?name={q}", "queues-narrow"), ("overview", "overview-narrow"), (f"queues/%2F/{q}", "queue-narrow")]:
        page.goto(env.url(route))
        expect(page.locator("main h1")).to_be_visible()
        if route.startswith("queues?"):
            expect(page.get_by_test_id("queues-table").locator("tbody tr")).to_contain_text(q)
        page.wait_for_timeout(300)
        sizes = page.evaluate("""() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
                                        win: window.innerWidth})""")
        assert sizes["doc"] <= sizes["win"] and sizes["body"] <= sizes["win"], (route, sizes)
        # All navigation links are on screen (wrapped, not cut off).
        for box in page.locator("#nav a:visible").evaluate_all("els => els.map(e => e.getBoundingClientRect().right)"):
            assert box <= sizes["win"], (route, box)
        expect(page.get_by_role("link", name="Queues", exact=True)).to_be_in_viewport()
        shot(page, name)
    page.goto(env.url(f"queues?name={q}"))
    wrap = page.get_by_test_id("queues-table").locator("xpath=..")
    expect(wrap).to_have_css("overflow-x", "auto")
    assert wrap.evaluate("e => e.scrollWidth > e.clientWidth"), "the queues table should scroll in its box at 400 px"


def test_queue_list_paging_and_sorting(env, page, cleanup):
    prefix = uniq("page")
    names = [f"{prefix}-{i:03d}" for i in range(120)]
    api = env.api
    try:
        for n in names:
            api.put(f"/queues/%2F/{n}", {"durable": False, "arguments": {}})
        login(page, env, route=f"queues?name={prefix}")
        table = page.get_by_test_id("queues-table")
        rows = table.locator("tbody tr")
        info = page.get_by_test_id("page-info")
        expect(page.get_by_test_id("page-size")).to_have_value("100")
        expect(info).to_have_text("Page 1 of 2")
        expect(rows).to_have_count(100)
        expect(rows.first).to_contain_text(names[0])
        expect(page.get_by_test_id("list-count")).to_have_text("(120)")
        expect(page.get_by_test_id("page-prev")).to_be_disabled()
        shot(page, "queues")
        page.get_by_test_id("page-next").click()
        expect(info).to_have_text("Page 2 of 2")
        expect(rows).to_have_count(20)
        expect(rows.first).to_contain_text(names[100])
        expect(rows.last).to_contain_text(names[119])
        expect(page.get_by_test_id("page-next")).to_be_disabled()
        # Sorting by name, reversed: a click on the (already sorted) Name header.
        name_header = table.locator("thead").get_by_role("button", name="Name")
        name_header.click()
        expect(table.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
        expect(info).to_have_text("Page 1 of 2")
        expect(rows.first).to_contain_text(names[119])
        expect(rows.nth(99)).to_contain_text(names[20])
        assert "reverse=1" in page.url
        page.get_by_test_id("page-size").select_option("20")
        expect(info).to_have_text("Page 1 of 6")
        expect(rows).to_have_count(20)
        expect_no_alert(page)
    finally:
        for n in names:
            api.delete(f"/queues/%2F/{n}")


def test_exchange_page_bind_and_publish(env, page, cleanup):
    x, q = uniq("x"), uniq("xq")
    env.api.put(f"/exchanges/%2F/{x}", {"type": "direct", "durable": True})
    cleanup.append(f"/exchanges/%2F/{x}")
    env.api.put(f"/queues/%2F/{q}", {"durable": True, "arguments": {}})
    cleanup.append(f"/queues/%2F/{q}")
    login(page, env, route=f"exchanges/%2F/{x}")
    expect(page.get_by_test_id("exchange-name")).to_have_text(x)
    expect(page.get_by_test_id("exchange-details")).to_contain_text("direct")
    bind = page.get_by_test_id("bind-form")
    bind.get_by_label("Destination", exact=True).fill(q)
    bind.get_by_label("Routing key").fill("rk.1")
    bind.get_by_role("button", name="Bind").click()
    wait_status(page, f"Bound to {q}")
    expect(page.get_by_test_id("exchange-bindings")).to_contain_text("rk.1")
    pub = page.get_by_test_id("publish-form")
    pub.get_by_label("Routing key").fill("rk.1")
    pub.get_by_label("Payload", exact=True).fill("via exchange")
    pub.get_by_role("button", name="Publish message").click()
    wait_status(page, "^Message published\\.$")
    assert env.api.wait_messages(q, 1) == 1
    pub.get_by_label("Routing key").fill("nowhere")
    pub.get_by_role("button", name="Publish message").click()
    expect(page.get_by_test_id("status")).to_have_text("Message published, but not routed.")
    shot(page, "exchange")
    page.get_by_test_id("exchange-bindings").get_by_role("button", name="Unbind").click()
    wait_status(page, f"Unbound {q}")
    expect(page.get_by_test_id("exchange-bindings")).to_contain_text("No bindings.")
    assert env.api.get(f"/exchanges/%2F/{x}/bindings/source") == []


def test_admin_pages(env, page, cleanup, tmp_path):
    user, vhost, policy = uniq("user"), uniq("vh"), uniq("pol")
    cleanup.append(f"/users/{user}")
    cleanup.append(f"/vhosts/{vhost}")
    login(page, env, route="users")
    form = page.get_by_test_id("add-user-form")
    form.get_by_label("Username").fill(user)
    form.get_by_label("Password").fill("secret")
    form.get_by_role("button", name="+ monitoring").click()
    form.get_by_role("button", name="Add user").click()
    wait_status(page, f"User {user} saved")
    expect(page.get_by_test_id("users-table")).to_contain_text(user)
    assert env.api.get(f"/users/{user}")["tags"] in (["monitoring"], "monitoring")
    perm = page.get_by_test_id("set-permission-form")
    perm.get_by_label("User").select_option(user)
    perm.get_by_label("Read regexp").fill("^amq\\.")
    perm.get_by_role("button", name="Set permission").click()
    wait_status(page, f"Permissions of {user} on / set")
    assert env.api.get(f"/permissions/%2F/{user}")["read"] == "^amq\\."
    shot(page, "users")

    page.get_by_role("link", name="Virtual hosts").click()
    form = page.get_by_test_id("add-vhost-form")
    form.get_by_label("Name").fill(vhost)
    form.get_by_label("Description").fill("made by the UI test")
    form.get_by_role("button", name="Add virtual host").click()
    wait_status(page, f"Virtual host {vhost} added")
    expect(page.get_by_test_id("vhosts-table")).to_contain_text("made by the UI test")
    shot(page, "vhosts")

    page.get_by_role("link", name="Policies").click()
    form = page.get_by_test_id("add-policy-form")
    form.get_by_label("Virtual host").select_option(vhost)
    form.get_by_label("Name").fill(policy)
    form.get_by_label("Pattern (regexp)").fill("^ui-")
    form.get_by_label("Definition (JSON object)").fill('{"max-length": 5}')
    form.get_by_role("button", name="Add / update policy").click()
    wait_status(page, f"Policy {policy} saved")
    got = env.api.get(f"/policies/{enc(vhost)}/{policy}")
    assert got["definition"] == {"max-length": 5} and got["apply-to"] == "queues" and got["pattern"] == "^ui-"
    expect(page.get_by_test_id("policies-table")).to_contain_text(policy)
    shot(page, "policies")
    form.get_by_label("Definition (JSON object)").fill("{not json")
    form.get_by_role("button", name="Add / update policy").click()
    expect(page.get_by_role("alert")).to_contain_text("Definition: not valid JSON")

    page.get_by_role("link", name="Limits").click()
    form = page.get_by_test_id("vhost-limit-form")
    form.get_by_label("Virtual host").select_option(vhost)
    form.get_by_label("Value").fill("7")
    form.get_by_role("button", name="Set limit").click()
    wait_status(page, f"Set max-connections of {vhost} to 7")
    expect(page.get_by_test_id("vhost-limits-table")).to_contain_text(vhost)
    assert any(l["vhost"] == vhost and l["value"] == {"max-connections": 7} for l in env.api.get("/vhost-limits"))
    shot(page, "limits")

    page.get_by_role("link", name="Definitions").click()
    with page.expect_download(timeout=WAIT_MS) as dl:
        page.get_by_role("button", name="Download broker definitions").click()
    defs = json.loads(open(dl.value.path()).read())
    assert any(v["name"] == vhost for v in defs["vhosts"]) and any(u["name"] == user for u in defs["users"])
    wait_status(page, "Definitions downloaded")
    # Import: a definitions file with one new queue in the test's vhost.
    imported = uniq("imported")
    path = tmp_path / "import-definitions.json"
    with open(path, "w") as f:
        json.dump({"queues": [{"name": imported, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {}}]}, f)
    up = page.get_by_test_id("upload-form")
    up.get_by_label("Definitions file (JSON)").set_input_files(path)
    up.get_by_role("button", name="Upload broker definitions").click()
    wait_status(page, "Definitions from import-definitions.json imported")
    assert env.api.queue_exists(imported, vhost)
    shot(page, "definitions")
