"""The chat page as an installed app on a phone (issue #24), in Chromium with a Pixel 7's
emulation: the web app manifest and its icons are valid and Chromium finds the page installable;
the service worker keeps the page's files, so with the network cut the app opens, shows the
conversations kept in the browser and says plainly that the server cannot be reached; a question
typed offline stays (as a draft, also across a reload); API answers are never cached; a new
server's files are offered as "reload to update" and taken only when asked.

Screenshots: web-app-light.png, web-app-dark.png (the phone view)."""
import http.client
import http.server
import json
import pathlib
import socketserver
import struct
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_web_page import admin, ask, browser, goto, local, new_page, serve, shot, sign_up, stop_server  # noqa: E402,F401
from test_web_page import wait_answered  # noqa: E402
from test_web_render import answer_with  # noqa: E402

PHONE = {"viewport": {"width": 412, "height": 839}, "screen": {"width": 412, "height": 915}, "device_scale_factor": 2.625,
         "is_mobile": True, "has_touch": True,
         "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 "
                       "Mobile Safari/537.36"}


def controlled(page):
    """Until the service worker controls the page (its files are cached by then)."""
    page.wait_for_function("() => navigator.serviceWorker && navigator.serviceWorker.controller !== null")


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_installable_and_offline(browser, local):  # noqa: F811
    page = new_page(browser, local, **PHONE)
    page.set_default_timeout(30_000)  # (nothing here waits for a model)
    goto(page, "/")
    controlled(page)
    # the manifest and its icons
    man = page.evaluate("fetch('/manifest.webmanifest').then(r => r.json())")
    assert man["display"] == "standalone" and man["start_url"] == "/" and man["name"] == "Whale"
    purposes = set()
    for icon in man["icons"]:
        if icon["type"] != "image/png":
            continue
        data = bytes(page.evaluate("(u) => fetch(u).then(r => r.arrayBuffer()).then(b => [...new Uint8Array(b)])",
                                   icon["src"]))
        w, h = png_size(data)
        assert f"{w}x{h}" == icon["sizes"], icon
        purposes.add(icon["purpose"])
    assert purposes == {"any", "maskable"}
    cdp = page.context.new_cdp_session(page)
    assert cdp.send("Page.getAppManifest")["errors"] == []
    errors = [e["errorId"] for e in cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]]
    assert errors in ([], ["in-incognito"]), errors  # (Playwright's contexts are private windows: nothing else missing)

    # a conversation kept in this browser (local mode), and the app's look on a phone
    answer_with(page, "Whales breathe air through a blowhole.")
    ask(page, "How do whales breathe?")
    wait_answered(page)
    page.unroute("**/v1/chat/completions")
    shot(page, "app-light")
    page.emulate_media(color_scheme="dark")
    shot(page, "app-dark")
    page.emulate_media(color_scheme="light")

    # the network cut: the app opens from its cache, with the conversation, and says why
    page.context.set_offline(True)
    page.reload()
    page.wait_for_selector("body[data-ready]", state="attached")
    page.wait_for_selector("#banner:visible")
    assert "cannot be reached" in page.inner_text("#banner-text")
    page.click("#menu")
    page.click("#conv-list .conv a:text('How do whales breathe?')")
    page.wait_for_selector("#messages .msg.assistant .answer:has-text('blowhole')")
    # a question typed offline is kept, also across a reload
    page.click("#new-chat")
    page.fill("#input", "Do whales sleep?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#banner-text:text('You are offline')")
    assert page.input_value("#input") == "Do whales sleep?"
    page.reload()
    page.wait_for_selector("body[data-ready]", state="attached")
    assert page.input_value("#input") == "Do whales sleep?"
    # the cache holds the page's files only: no API answer, no configuration, no conversation
    cached = page.evaluate("""async () => { const out = [];
        for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
        return out; }""")
    assert "/app.js" in cached and "/" in cached
    assert not [p for p in cached if p.startswith(("/v1", "/web/config", "/user", "/shared", "/api", "/health"))], cached
    # back online: Retry, and the question goes
    page.context.set_offline(False)
    page.click("#banner-retry")
    page.wait_for_selector("#banner", state="hidden")
    answer_with(page, "They rest one half of the brain at a time.")
    page.keyboard.press("Enter") if page.is_visible("#input:focus") else page.click("#send")
    wait_answered(page)
    assert "half of the brain" in page.inner_text("#messages")
    assert page.input_value("#input") == ""
    assert not page.errors
    page.context.close()


class Proxy(http.server.BaseHTTPRequestHandler):
    """A proxy in front of the server, standing for the network between a phone and it: it can
    serve sw.js as a new build's (as a new server would), pass streams on slowly, and go down
    (connections cut mid-stream, new ones closed unanswered) and come back."""
    upstream = 0
    build = None
    down = False
    slow = 0.0  # seconds between the pieces of a streamed answer

    def relay(self):
        if Proxy.down:
            self.close_connection = True
            return
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "accept-encoding")}
        if "Origin" in headers:  # (the server sees the page as its own, as through a real proxy)
            headers["Origin"] = f"http://127.0.0.1:{self.upstream}"
        c = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=120)
        c.request(self.command, self.path, body=body, headers={**headers, "Host": f"127.0.0.1:{self.upstream}"})
        r = c.getresponse()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "etag"):
                self.send_header(k, v)
        if "event-stream" not in (r.getheader("Content-Type") or ""):
            data = r.read()
            if self.path == "/sw.js" and Proxy.build:
                data = data.replace(b'const BUILD = "', b'const BUILD = "' + Proxy.build.encode() + b"-")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Connection", "close")  # (HTTP/1.0: the stream ends when the connection does)
        self.end_headers()
        while not Proxy.down:
            piece = r.read1(200)
            if not piece:
                break
            self.wfile.write(piece)
            self.wfile.flush()
            time.sleep(Proxy.slow)
        c.close()  # down: the answer's connection is cut mid-stream

    do_GET = do_POST = do_DELETE = relay

    def log_message(self, *a):
        pass


def proxy(local):
    Proxy.upstream = int(local.rsplit(":", 1)[1])
    Proxy.build, Proxy.down, Proxy.slow = None, False, 0.0
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Proxy)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def test_new_server_files_are_offered_not_mixed(browser, local):  # noqa: F811
    srv, base = proxy(local)
    try:
        page = new_page(browser, base, **PHONE)
        goto(page, "/")
        controlled(page)
        first = page.evaluate("caches.keys()")
        assert len(first) == 1 and first[0].startswith("whale-")
        assert page.is_hidden("#update")
        Proxy.build = "next"  # the server was updated
        page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.update())")
        page.wait_for_selector("#update:visible")
        assert page.evaluate("caches.keys()") == first or len(page.evaluate("caches.keys()")) == 2  # not taken yet
        with page.expect_navigation():
            page.click("#update-reload")
        page.wait_for_selector("body[data-ready]", state="attached")
        page.wait_for_function("async () => { const k = await caches.keys(); return k.length === 1 && k[0].startsWith('whale-next-'); }")
        assert page.is_hidden("#update") and not page.errors
        page.context.close()
    finally:
        srv.shutdown()


def cut_and_restore(page, question):
    """Ask question with the answer coming slowly, go down mid-answer (the page says it is
    reconnecting), come back; until the page has the whole answer."""
    Proxy.slow = 0.05
    ask(page, question)
    page.wait_for_function("() => (document.querySelector('#messages .msg:last-child .answer')?.textContent || '')"
                           ".length > 5")
    Proxy.down = True  # a tunnel
    page.wait_for_selector("#messages .msg:last-child p:has-text('reconnecting')", timeout=30_000)
    page.wait_for_timeout(2000)
    Proxy.down, Proxy.slow = False, 0.0
    wait_answered(page)


def test_answer_survives_a_dropped_connection(browser, local):  # noqa: F811
    """The network goes down while an answer streams, then comes back: the page says it is
    reconnecting, reconnects by itself and shows the whole answer, the same as the same question
    answered without a cut (greedy: the page's request is given temperature 0)."""
    srv, base = proxy(local)
    try:
        page = new_page(browser, base)
        goto(page, "/")
        greedy = lambda route: route.continue_(
            post_data=json.dumps({**json.loads(route.request.post_data), "temperature": 0}))
        page.route("**/v1/chat/completions", greedy)
        question = "Write four short lines about the sea."
        ask(page, question)  # uncut: the reference
        wait_answered(page)
        want = page.inner_text("#messages .msg:last-child .answer")
        assert len(want) > 20 and not page.locator("#messages .msg.error").count(), want
        page.click("#new-chat")
        cut_and_restore(page, question)
        got = page.inner_text("#messages .msg:last-child .answer")
        assert got == want and "reconnecting" not in got and not page.locator("#messages .msg.error").count()
        assert not page.errors
        page.context.close()
    finally:
        srv.shutdown()


def test_dropped_answer_is_charged_once(browser, tmp_path):  # noqa: F811
    """With accounts: an answer read across a cut connection is one charge in the ledger."""
    db = tmp_path / "whale.db"
    p, local_base = serve("--accounts", "--db", str(db), "--ctx", "1024")
    srv, base = proxy(local_base)
    try:
        page = new_page(browser, base)
        sign_up(page, "phone@example.com", "correct horse battery")
        admin(db, "topup", "phone@example.com", "1")
        cut_and_restore(page, "Write four short lines about rain.")
        assert not page.locator("#messages .msg.error").count() and len(page.inner_text("#messages .answer")) > 20
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "py"))
        from test_accounts import sql
        for _ in range(50):  # (the charge lands as the answer ends)
            rows = sql(db, "SELECT count(*) FROM ledger WHERE kind = 'charge'")
            if int(rows[0][0]):
                break
            time.sleep(0.1)
        assert int(rows[0][0]) == 1, rows
        assert not page.errors
        page.context.close()
    finally:
        srv.shutdown()
        stop_server(p)

