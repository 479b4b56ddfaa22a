"""The chat page's side of `whale serve`, over raw HTTP: the embedded files with their security
headers (CSP, no framing, no sniffing) and ETags; no CORS anywhere, and cross-origin changes
refused; the page's script free of markup sinks; and, with --accounts on SQLite and PostgreSQL,
conversations kept per user (a user never reaches another's, CSRF rules hold, bad input gets
the right 4xx, deleting the account deletes them) and chats over the session charged under the
ledger's "web" key."""
import http.client
import json
import re
import subprocess


from conftest import REPO, WHALE
from test_accounts import admin, env, sql, web  # noqa: F401  (env: one server per store backend)
from test_serve import server  # noqa: F401  (the local-mode server)


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()


def test_page_files_and_their_headers(server):  # noqa: F811
    st, h, body = request(server, "GET", "/")
    assert st == 200 and h["content-type"].startswith("text/html") and b"/app.js" in body
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    st, h2, _ = request(server, "GET", "/", headers={"If-None-Match": h["etag"]})
    assert st == 304
    for path, kind in (("/app.js", "text/javascript"), ("/app.css", "text/css"), ("/icon.svg", "image/svg+xml")):
        st, h, body = request(server, "GET", path)
        assert st == 200 and h["content-type"].startswith(kind) and len(body) > 100
    # the page's libraries, from Debian's packages, with their licences
    for path, marker in (("/vendor/markdown-it.js", b"markdownit"), ("/vendor/purify.js", b"DOMPurify"),
                         ("/vendor/katex.js", b"katex"), ("/vendor/highlight.js", b"hljs"),
                         ("/render.js", b"WhaleRender")):
        st, h, body = request(server, "GET", path)
        assert st == 200 and h["content-type"].startswith("text/javascript") and marker in body, path
    st, h, body = request(server, "GET", "/vendor/LICENSES.txt")
    assert st == 200 and h["content-type"].startswith("text/plain")
    for pkg in (b"libjs-markdown-it", b"node-dompurify", b"libjs-katex", b"libjs-highlight.js"):
        assert b"==== " + pkg in body, pkg
    st, h, _ = request(server, "HEAD", "/app.js")
    assert st == 200
    assert request(server, "GET", "/nothing.js")[0] == 404
    assert request(server, "GET", "/../web/app.js")[0] == 404
    st, _, body = request(server, "GET", "/web/config")
    cfg = json.loads(body)
    assert st == 200 and cfg["accounts"] is False and cfg["reasoning"] is False and cfg["user"] is None


def test_page_files_are_gzipped_for_clients_that_take_it(server):  # noqa: F811
    """A phone's first load: the page's text files gzip'd (about a quarter of the bytes) when the
    request takes gzip, each form with its own ETag; as they are otherwise, and images always."""
    import gzip
    first = ("/", "/app.js", "/app.css", "/render.js", "/vendor/markdown-it.js", "/vendor/purify.js")
    plain_bytes = zipped_bytes = 0
    for path in first:
        st, h, plain = request(server, "GET", path)
        st2, hz, zipped = request(server, "GET", path, headers={"Accept-Encoding": "br, gzip;q=0.8, deflate"})
        assert st == st2 == 200 and "content-encoding" not in h and hz["content-encoding"] == "gzip"
        assert gzip.decompress(zipped) == plain and hz["etag"] != h["etag"] and "Accept-Encoding" in hz["vary"]
        assert request(server, "GET", path, headers={"Accept-Encoding": "gzip", "If-None-Match": hz["etag"]})[0] == 304
        plain_bytes, zipped_bytes = plain_bytes + len(plain), zipped_bytes + len(zipped)
    print(f"first load: {plain_bytes} bytes, {zipped_bytes} gzip'd")
    assert zipped_bytes < 0.4 * plain_bytes
    for path, ae in (("/app.js", "gzip;q=0"), ("/app.js", "identity"), ("/icon-192.png", "gzip")):
        st, h, _ = request(server, "GET", path, headers={"Accept-Encoding": ae})
        assert st == 200 and "content-encoding" not in h, (path, ae)


def test_no_cors_and_cross_origin_changes_refused(server):  # noqa: F811
    evil = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    st, h, _ = request(server, "OPTIONS", "/v1/chat/completions",
                       headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert not any(k.startswith("access-control-") for k in h)
    body = json.dumps({"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    st, h, b = request(server, "POST", "/v1/chat/completions", body, evil)
    assert st == 403 and "cross-origin" in json.loads(b)["error"]["message"]
    assert not any(k.startswith("access-control-") for k in h)
    # the page itself (same origin) and clients that send no Origin are served
    host = f"127.0.0.1:{server}"
    st, _, _ = request(server, "POST", "/v1/chat/completions", body,
                       {"Origin": f"http://{host}", "Content-Type": "application/json"})
    assert st == 200
    st, h, _ = request(server, "GET", "/v1/models", headers={"Origin": "http://evil.example"})
    assert st == 200 and not any(k.startswith("access-control-") for k in h)


SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
         "createContextualFragment", "DOMParser", "srcdoc")


def test_page_script_has_no_markup_sinks():
    """All text reaches the page as text nodes: the script never parses strings as markup or code.
    The one exception, an answer's markdown (web/render.js), becomes nodes only through DOMPurify."""
    src = (REPO / "web" / "app.js").read_text()
    code = re.sub(r"/\*.*?\*/", "", src, flags=re.S)  # the comments may name what is forbidden
    for sink in SINKS:
        assert sink not in code, sink
    render = re.sub(r"/\*.*?\*/", "", (REPO / "web" / "render.js").read_text(), flags=re.S)
    for sink in SINKS:
        assert sink not in render, sink
    # markdown-it's output goes nowhere but into DOMPurify, which returns a cleaned fragment
    assert re.findall(r"\.render\(", render) == [".render("]
    assert "window.DOMPurify.sanitize(m.render(src, {}), PURIFY)" in render
    assert "RETURN_DOM_FRAGMENT: true" in render and "html: false" in render
    allowed = re.search(r"const TAGS = \[(.*?)\];", render, flags=re.S).group(1)
    for tag in ("script", "style", "img", "iframe", "svg", "object", "embed", "form", "input", "link", "meta"):
        assert f'"{tag}"' not in allowed, tag
    attrs = re.search(r"const ATTRS = \[(.*?)\];", render, flags=re.S).group(1)
    assert '"style"' not in attrs and '"src"' not in attrs and not re.search(r'"on', attrs)
    html = (REPO / "web" / "index.html").read_text()
    # no inline script, style or event handler attribute (the CSP would refuse them anyway)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html
    assert not re.search(r"<[^>]*\s(on[a-z]+|style)\s*=", html, flags=re.I)


def sign_up(port, email):
    st = web(port, "/auth/register", {"email": email, "password": "a long enough password"})[0]
    assert st == 201, st
    st, _, cookie, _ = web(port, "/auth/login", {"email": email, "password": "a long enough password"})
    assert st == 200, st
    return cookie


MSGS = [{"role": "user", "content": "hello <b>there</b>"},
        {"role": "assistant", "content": "hi", "reasoning": "they said hello", "thought_s": 2, "extra": "dropped"}]


def test_conversations_are_per_user(env):  # noqa: F811
    port, db = env["port"], env["db"]
    a, b = sign_up(port, "web-a@example.com"), sign_up(port, "web-b@example.com")
    st, j, _, _ = web(port, "/user/conversations/abc-1", {"title": "First", "messages": MSGS}, a, method="PUT")
    assert st == 200 and j == {"id": "abc-1"}
    st, j, _, _ = web(port, "/user/conversations/abc-2", {"title": "Second", "messages": MSGS[:1]}, a, method="PUT")
    assert st == 200
    st, j, _, _ = web(port, "/user/conversations", cookie=a)
    assert st == 200 and sorted(c["id"] for c in j["conversations"]) == ["abc-1", "abc-2"]
    assert all("messages" not in c for c in j["conversations"])
    st, j, _, _ = web(port, "/user/conversations/abc-1", cookie=a)
    assert st == 200 and j["title"] == "First" and j["messages"][0] == MSGS[0]
    assert j["messages"][1] == {"role": "assistant", "content": "hi", "reasoning": "they said hello", "thought_s": 2}
    st, j, _, _ = web(port, "/user/conversations/export", cookie=a)
    assert st == 200 and len(j["conversations"]) == 2 and all("messages" in c for c in j["conversations"])

    # the other user: nothing listed, nothing readable or deletable, and the same id is their own
    st, j, _, _ = web(port, "/user/conversations", cookie=b)
    assert st == 200 and j["conversations"] == []
    assert web(port, "/user/conversations/abc-1", cookie=b)[0] == 404
    assert web(port, "/user/conversations/abc-1", cookie=b, method="DELETE", ctype=None)[0] == 404
    st, _, _, _ = web(port, "/user/conversations/abc-1", {"title": "Bob's", "messages": []}, b, method="PUT")
    assert st == 200
    assert web(port, "/user/conversations/abc-1", cookie=a)[1]["title"] == "First"
    assert web(port, "/user/conversations/export", cookie=b)[1]["conversations"][0]["title"] == "Bob's"

    # no session, or an API key instead of one: 401
    assert web(port, "/user/conversations")[0] == 401
    st, _ = request(port, "GET", "/user/conversations",
                    headers={"Authorization": f"Bearer {env['keys']['alice']}"})[:2]
    assert st == 401
    # CSRF: a cookie-carrying change must be JSON, from this origin
    assert web(port, "/user/conversations/abc-1", {"title": "x", "messages": []}, a, ctype="text/plain",
               method="PUT")[0] == 403
    st, _, _ = request(port, "PUT", "/user/conversations/abc-1", json.dumps({"title": "x", "messages": []}),
                       {"Cookie": f"whale_session={a}", "Content-Type": "application/json",
                        "Origin": "http://evil.example"})
    assert st == 403
    # bad input: the right 4xx, nothing stored
    for body, want in ((["not", "an", "object"], 400), ({"title": "x"}, 422), ({"title": 5, "messages": []}, 422),
                       ({"title": "x" * 201, "messages": []}, 422),
                       ({"title": "x", "messages": [{"role": "system", "content": "x"}]}, 422),
                       ({"title": "x", "messages": [{"role": "user", "content": 5}]}, 422),
                       ({"title": "x", "messages": [{"role": "user", "content": "y" * (1 << 20)}]}, 413)):
        assert web(port, "/user/conversations/abc-9", body, a, method="PUT")[0] == want, body
    for bad in ("/user/conversations/../conversations", "/user/conversations/a%2Fb", "/user/conversations/" + "x" * 65,
                "/user/conversations/a b"):
        assert request(port, "GET", bad.replace(" ", "%20"), headers={"Cookie": f"whale_session={a}"})[0] == 404
    assert web(port, "/user/conversations/abc-1", cookie=a, method="POST", ctype="application/json")[0] == 405
    assert web(port, "/user/conversations/abc-9", cookie=a)[0] == 404

    # delete one, then the account: its conversations go with it
    assert web(port, "/user/conversations/abc-2", cookie=a, method="DELETE", ctype=None)[0] == 200
    assert [c["id"] for c in web(port, "/user/conversations", cookie=a)[1]["conversations"]] == ["abc-1"]
    uid = sql(db, "SELECT id FROM users WHERE email = ?", "web-a@example.com")[0][0]
    assert web(port, "/auth/delete", {"password": "a long enough password"}, a)[0] == 200
    assert int(sql(db, "SELECT count(*) FROM conversations WHERE user_id = ?", uid)[0][0]) == 0
    assert int(sql(db, "SELECT count(*) FROM conversations")[0][0]) == 1  # bob's


def test_conversation_versions_are_kept_and_checked(env):  # noqa: F811
    """An edited question keeps its versions, each earlier one with what followed it (DeepSeek's
    < 1/2 >), nested inside earlier versions too; the server checks their shape and bounds."""
    port = env["port"]
    a = sign_up(port, "versions@example.com")
    inner = {"role": "user", "content": "q2b", "v": 1,
             "versions": [{"content": "q2", "tail": [{"role": "assistant", "content": "a2"}]}, {"content": "q2b"}]}
    msgs = [{"role": "user", "content": "q1b", "v": 1, "extra": "dropped",
             "versions": [{"content": "q1", "tail": [{"role": "assistant", "content": "a1"}, inner,
                                                    {"role": "assistant", "content": "a2b", "versions": None}]},
                          {"content": "q1b", "tail": None, "more": "dropped"}]},
            {"role": "assistant", "content": "a1b"}]
    assert web(port, "/user/conversations/v-1", {"title": "Versions", "messages": msgs}, a, method="PUT")[0] == 200
    st, j, _, _ = web(port, "/user/conversations/v-1", cookie=a)
    assert st == 200
    want = [{"role": "user", "content": "q1b", "v": 1,
             "versions": [{"content": "q1", "tail": [{"role": "assistant", "content": "a1"}, inner,
                                                    {"role": "assistant", "content": "a2b"}]},
                          {"content": "q1b"}]},
            {"role": "assistant", "content": "a1b"}]
    assert j["messages"] == want

    def versions(vs, v):
        return {"title": "x", "messages": [{"role": "user", "content": "q", "versions": vs, "v": v}]}
    two = [{"content": "a"}, {"content": "b"}]
    deep = {"role": "user", "content": "q"}
    for _ in range(10):  # versions inside versions, 10 deep (past CONV_MAX_DEPTH, inside the JSON depth cap)
        deep = {"role": "user", "content": "q", "v": 0, "versions": [{"content": "q", "tail": [deep]}, {"content": "r"}]}
    for body in (versions(two, 2), versions(two, -1), versions(two, 0.5), versions(two, "0"), versions(two, 1e300),
                 versions(two, None), versions([{"content": "a"}], 0), versions([{"content": 5}, {"content": "b"}], 0),
                 versions({"content": "a"}, 0), versions([{"content": "a"}] * 65, 0),
                 versions([{"content": "a", "tail": "no"}, {"content": "b"}], 0),
                 versions([{"content": "a", "tail": [{"role": "system", "content": "s"}]}, {"content": "b"}], 0),
                 versions([{"content": "a", "tail": [{"role": "user", "content": "u"}] * 2000}, {"content": "b"}], 0),
                 {"title": "x", "messages": [{"role": "assistant", "content": "a", "versions": two, "v": 0}]},
                 {"title": "x", "messages": [deep]}):
        st, j, _, _ = web(port, "/user/conversations/v-2", body, a, method="PUT")
        assert st == 422, (st, j, str(body)[:200])
    st, j, _, _ = web(port, "/user/conversations/v-2", {"title": "x", "messages": [deep]}, a, method="PUT")
    assert "versions are nested too deeply" in j["error"]["message"]  # our bound, not the JSON parser's
    assert web(port, "/user/conversations/v-2", cookie=a)[0] == 404  # nothing kept


def test_page_chat_is_charged_under_web(env):  # noqa: F811
    port, db = env["port"], env["db"]
    c = sign_up(port, "web-c@example.com")
    chat = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    assert web(port, "/v1/chat/completions", chat, c)[0] == 402  # an empty balance
    uid = sql(db, "SELECT id FROM users WHERE email = ?", "web-c@example.com")[0][0]
    assert int(sql(db, "SELECT count(*) FROM ledger WHERE user_id = ?", uid)[0][0]) == 0
    admin(db, "topup", "web-c@example.com", "1")
    assert web(port, "/v1/chat/completions", chat, c, ctype="text/plain")[0] == 403  # CSRF
    st, j, _, _ = web(port, "/v1/chat/completions", chat, c)
    assert st == 200 and j["usage"]["completion_tokens"] >= 1
    rows = sql(db, "SELECT key_id, request_id FROM ledger WHERE user_id = ? AND kind = 'charge'", uid)
    assert [(int(k), r) for k, r in rows] == [(0, j["id"])]
    st, u, _, _ = web(port, "/user/usage", cookie=c)
    assert st == 200 and [r["key_prefix"] for r in u["usage"]] == ["web"]
    st, cfg, _, _ = web(port, "/web/config", cookie=c)
    assert cfg["accounts"] is True and cfg["user"] == "web-c@example.com" and cfg["signup"] == "open"


def test_conversation_storage_is_bounded_per_user(env):  # noqa: F811
    port = env["port"]
    c = sign_up(port, "web-big@example.com")
    big = [{"role": "user", "content": "x" * 1_000_000}]
    codes = [web(port, f"/user/conversations/big{i}", {"title": "big", "messages": big}, c, method="PUT")[0]
             for i in range(3)]
    assert codes == [200, 200, 409], codes  # --user-storage 2 (MiB per user)
    st, j, _, _ = web(port, "/user/conversations/big40", {"title": "big", "messages": big}, c, method="PUT")
    assert st == 409 and "MiB" in j["error"]["message"]
    # replacing one (not growing) is still allowed, and deleting makes room
    assert web(port, "/user/conversations/big0", {"title": "small", "messages": []}, c, method="PUT")[0] == 200
    assert web(port, "/user/conversations/big40", {"title": "big", "messages": big}, c, method="PUT")[0] == 200


def member(port, db, email):
    """A user made by the operator (sign-ups from one address are limited per hour), signed in."""
    admin(db, "user", "add", email)
    r = subprocess.run([str(WHALE), "admin", "--db", str(db), "user", "password", email], input="a long enough password\n",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    st, _, cookie, _ = web(port, "/auth/login", {"email": email, "password": "a long enough password"})
    assert st == 200, st
    return cookie


def test_share_links_are_read_only_copies_the_owner_can_stop(env):  # noqa: F811
    """A share link shows the conversation as it was when shared, to anyone with the link (no
    session); editing the conversation later does not change it; sharing again makes a new link
    and stops the old; stopping, deleting the conversation or the account stops it; another
    user can neither share nor stop someone else's; the copy counts against the owner's space."""
    port, db = env["port"], env["db"]
    a, b = member(port, db, "share-a@example.com"), member(port, db, "share-b@example.com")
    assert web(port, "/user/conversations/s-1", {"title": "Shared", "messages": MSGS}, a, method="PUT")[0] == 200
    assert web(port, "/user/shares/s-1", cookie=a)[1] == {"shared": False}
    st, j, _, _ = web(port, "/user/shares", {"id": "s-1"}, a)
    assert st == 201 and j["path"] == "/#/s/" + j["token"] and len(j["token"]) == 43
    link = "/shared/" + j["token"]
    st, _, body = request(port, "GET", link)  # anyone: no cookie, no key
    got = json.loads(body)
    assert st == 200 and got["title"] == "Shared" and got["messages"][0] == MSGS[0] and "id" not in got
    st, j2, _, _ = web(port, "/user/shares/s-1", cookie=a)
    assert st == 200 and j2["shared"] and j2["created"] > 0
    # later changes stay private: the link keeps the copy
    assert web(port, "/user/conversations/s-1", {"title": "Private now", "messages": MSGS[:1]}, a,
               method="PUT")[0] == 200
    assert json.loads(request(port, "GET", link)[2])["title"] == "Shared"
    # sharing again: a new link with the new text; the old one stops
    st, j3, _, _ = web(port, "/user/shares", {"id": "s-1"}, a)
    assert st == 201 and j3["token"] != j["token"]
    assert request(port, "GET", link)[0] == 404
    link = "/shared/" + j3["token"]
    assert json.loads(request(port, "GET", link)[2])["title"] == "Private now"
    # another user: cannot share it (it is not theirs), see its state, or stop it
    assert web(port, "/user/shares", {"id": "s-1"}, b)[0] == 404
    assert web(port, "/user/shares/s-1", cookie=b)[1] == {"shared": False}
    assert web(port, "/user/shares/s-1", cookie=b, method="DELETE", ctype=None)[0] == 404
    assert request(port, "GET", link)[0] == 200
    # an edited question's other versions, and what followed them, are not in the copy
    edited = [{"role": "user", "content": "second try", "v": 1,
               "versions": [{"content": "PRIVATE first try", "tail": [{"role": "assistant", "content": "PRIVATE"}]},
                            {"content": "second try"}]}, {"role": "assistant", "content": "shown"}]
    assert web(port, "/user/conversations/s-v", {"title": "Edited", "messages": edited}, a, method="PUT")[0] == 200
    st, body = request(port, "GET", "/shared/" + web(port, "/user/shares", {"id": "s-v"}, a)[1]["token"])[::2]
    assert st == 200 and b"PRIVATE" not in body and json.loads(body)["messages"][1]["content"] == "shown"
    # bad input and wrong ways in
    assert web(port, "/user/shares", {"id": "../x"}, a)[0] == 422
    assert web(port, "/user/shares", {"id": "s-1"})[0] == 401  # no session
    assert web(port, "/user/shares", {"id": "s-1"}, a, ctype="text/plain")[0] == 403
    for bad in ("/shared/", "/shared/x", "/shared/" + "A" * 43, "/shared/" + j3["token"] + "A"):
        assert request(port, "GET", bad)[0] == 404, bad
    # the owner stops it
    assert web(port, "/user/shares/s-1", cookie=a, method="DELETE", ctype=None)[0] == 200
    assert request(port, "GET", link)[0] == 404
    assert web(port, "/user/shares/s-1", cookie=a, method="DELETE", ctype=None)[0] == 404
    # deleting the conversation stops its link; so does deleting the account
    link = "/shared/" + web(port, "/user/shares", {"id": "s-1"}, a)[1]["token"]
    assert web(port, "/user/conversations/s-1", cookie=a, method="DELETE", ctype=None)[0] == 200
    assert request(port, "GET", link)[0] == 404
    assert web(port, "/user/conversations/s-2", {"title": "Two", "messages": MSGS}, a, method="PUT")[0] == 200
    link = "/shared/" + web(port, "/user/shares", {"id": "s-2"}, a)[1]["token"]
    uid = sql(db, "SELECT id FROM users WHERE email = ?", "share-a@example.com")[0][0]
    assert web(port, "/auth/delete", {"password": "a long enough password"}, a)[0] == 200
    assert request(port, "GET", link)[0] == 404
    assert int(sql(db, "SELECT count(*) FROM shares WHERE user_id = ?", uid)[0][0]) == 0
    # the copy takes space: with --user-storage 2 a 1 MB conversation and its copy fill it
    c = member(port, db, "share-big@example.com")
    big = [{"role": "user", "content": "x" * 900_000}]
    assert web(port, "/user/conversations/b1", {"title": "big", "messages": big}, c, method="PUT")[0] == 200
    assert web(port, "/user/shares", {"id": "b1"}, c)[0] == 201
    st, j, _, _ = web(port, "/user/conversations/b2", {"title": "big", "messages": big}, c, method="PUT")
    assert st == 409 and "MiB" in j["error"]["message"]
