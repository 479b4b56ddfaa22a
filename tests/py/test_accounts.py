"""`whale serve --accounts` with `whale admin` on a real SQLite file: API keys checked (no key,
a bad key, a revoked key, an expired key, a disabled user: 401 with DeepSeek's body), a zero
balance refused with 402, every request charged exactly its usage at the model's prices (plain,
streamed, and a stream whose client went away), GET /user/balance in DeepSeek's shape, each
balance equal to its ledger, and no key in the server's log. Web accounts: sign-up, login with
one generic failure, HttpOnly SameSite=Strict session cookies, keys created, listed, used and
revoked over a session, CSRF refusal, one user unable to touch another's keys, logout and
password change ending sessions, sign-ups limited per address, no password or cookie in the
log."""
import http.client
import json
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from conftest import DEFAULT_MODEL, WHALE
from test_serve import free_port

openai = pytest.importorskip("openai")


def admin(db, *args):
    r = subprocess.run([str(WHALE), "admin", "--db", str(db), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def accounts_server(db, d, *flags, stderr=subprocess.DEVNULL):
    """`whale serve --accounts` on db, up and answering /health: (process, port)."""
    port = free_port()
    p = subprocess.Popen([str(WHALE), "serve", "--port", str(port), "--accounts", "--db", str(db),
                          "--cache-dir", str(d / "kv"), *flags], stderr=stderr, stdout=stderr)
    for _ in range(300):
        try:
            if call(port, "/health")[0] == 200:
                return p, port
        except OSError:
            time.sleep(0.1)
        if p.poll() is not None:
            break
    p.kill()
    raise AssertionError("whale serve did not come up")


def sql(db, query, *args):
    """Rows of a query on the store's database, SQLite file or PostgreSQL URL (psql)."""
    if str(db).startswith("postgresql://"):
        q = query
        for a in args:  # the tests' own literals only
            q = q.replace("?", "'" + str(a).replace("'", "''") + "'", 1)
        out = subprocess.run(["psql", str(db), "-At", "-F", "|", "-c", q], capture_output=True, text=True, check=True)
        return [tuple(line.split("|")) for line in out.stdout.splitlines() if line]
    with sqlite3.connect(db) as c:
        return c.execute(query, args).fetchall()


def micro(text):  # "1.234567" -> 1234567
    whole, frac = text.split(".")
    return int(whole) * 1000000 + (int(frac) if not whole.startswith("-") else -int(frac))


def charge_of(usage, price=(70000, 270000, 1100000)):  # the default model is a chat model: V3's prices
    hit = usage["prompt_cache_hit_tokens"]
    x = hit * price[0] + (usage["prompt_tokens"] - hit) * price[1] + usage["completion_tokens"] * price[2]
    return (x + 500000) // 1000000


def call(port, path, body=None, key=None, method=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    c.request(method or ("POST" if body else "GET"), path, body=json.dumps(body) if body else None, headers=headers)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request, tmp_path_factory):
    """One server per store backend: every test below runs against SQLite and PostgreSQL."""
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    d = tmp_path_factory.mktemp("accounts")
    db = d / "whale.db" if request.param == "sqlite" else request.getfixturevalue("pg").new_database()
    admin(db, "user", "add", "alice@example.com")
    admin(db, "user", "add", "bob@example.com")
    admin(db, "user", "add", "carol@example.com")
    keys = {u: admin(db, "key", "create", f"{u}@example.com") for u in ("alice", "bob", "carol")}
    keys["revoked"] = admin(db, "key", "create", "alice@example.com")
    keys["expired"] = admin(db, "key", "create", "alice@example.com", "--days", "1")
    admin(db, "key", "revoke", "alice@example.com", keys["revoked"][:12])
    sql(db, "UPDATE api_keys SET expires = 1 WHERE prefix = ?", keys["expired"][:12])  # as time would
    admin(db, "topup", "alice@example.com", "1.00")
    admin(db, "topup", "carol@example.com", "1.00")
    admin(db, "user", "disable", "carol@example.com")
    log = open(d / "serve.log", "w")
    p, port = accounts_server(db, d, "--ctx", "1024", "--signups-per-hour", "5", "--user-storage", "2", stderr=log)
    yield {"db": db, "port": port, "keys": keys, "log": d / "serve.log"}
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    log.close()
    text = (d / "serve.log").read_text()
    for k in keys.values():  # no key, whole or as its secret part, in the server's log
        assert k not in text and k[12:] not in text


@pytest.mark.parametrize("who,why", [(None, "no API key"), ("sk-nonsense", "is invalid"), ("revoked", "revoked"),
                                     ("expired", "expired"), ("carol", "disabled")])
def test_bad_keys_get_401(env, who, why):
    key = env["keys"].get(who, who)
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/models", None), ("/user/balance", None)):
        st, b = call(env["port"], path, body, key)
        assert st == 401, (path, st, b)
        assert b["error"]["type"] == "authentication_error" and why in b["error"]["message"]
        if key and len(key) > 16:  # a real key: neither it nor its secret part is echoed
            assert key not in b["error"]["message"] and key[12:] not in b["error"]["message"]
    assert call(env["port"], "/health")[0] == 200  # never needs a key


def test_zero_balance_gets_402(env):
    st, b = call(env["port"], "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]},
                 env["keys"]["bob"])
    assert st == 402 and b["error"]["message"] == "Insufficient Balance"


def test_charges_match_usage_exactly(env):
    key, db = env["keys"]["alice"], env["db"]
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{env['port']}/v1", api_key=key, max_retries=0)
    before = micro(admin(db, "balance", "alice@example.com"))
    r = c.chat.completions.create(model="default", messages=[{"role": "user", "content": "Say hello."}],
                                  temperature=0, max_tokens=8)
    u = r.usage.model_dump()
    u.update(r.usage.model_extra or {})
    after = micro(admin(db, "balance", "alice@example.com"))
    assert before - after == charge_of(u) > 0
    chunks = list(c.chat.completions.create(model="default", messages=[{"role": "user", "content": "Say hello."}],
                                            temperature=0, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True}))
    u = chunks[-1].usage.model_dump()
    u.update(chunks[-1].usage.model_extra or {})
    after2 = micro(admin(db, "balance", "alice@example.com"))
    assert after - after2 == charge_of(u)
    assert u["prompt_cache_hit_tokens"] == 0 or after - after2 < before - after  # hits bill cheaper
    st, usage = call(env["port"], "/user/usage", key=key)
    assert st == 200 and sum(r["requests"] for r in usage["usage"]) >= 2
    charged = -int(sql(db, "SELECT sum(amount) FROM ledger l JOIN api_keys k ON k.id = l.key_id WHERE k.prefix = ?"
                       " AND l.kind = 'charge'", key[:12])[0][0])  # the usage endpoint adds up to the ledger's charges
    assert sum(micro(r["cost"]) for r in usage["usage"]) == charged > 0
    assert all(r["key_prefix"] == key[:12] and r["currency"] == "USD" for r in usage["usage"])
    st, b = call(env["port"], "/user/balance", key=key)
    assert st == 200 and b["is_available"] is True
    info = b["balance_infos"][0]
    assert info["currency"] == "USD" and abs(float(info["total_balance"]) - after2 / 1e6) < 0.01


def test_a_stream_cut_by_its_client_is_charged(env):
    key, db, port = env["keys"]["alice"], env["db"], env["port"]
    before = micro(admin(db, "balance", "alice@example.com"))
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 400,
                       "stream": True, "temperature": 0})
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
    got = b""
    while got.count(b"data:") < 3:
        got += s.recv(4096)
    s.close()
    for _ in range(300):
        if micro(admin(db, "balance", "alice@example.com")) < before:
            break
        time.sleep(0.1)
    spent = before - micro(admin(db, "balance", "alice@example.com"))
    assert 0 < spent < charge_of({"prompt_tokens": 40, "prompt_cache_hit_tokens": 0, "completion_tokens": 400})
    assert "ok" in admin(db, "check")
    rows = admin(db, "usage", "alice@example.com")
    assert "alice@example.com" in rows and key[:12] in rows


def web(port, path, body=None, cookie=None, ctype="application/json", method=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {}
    if ctype:
        headers["Content-Type"] = ctype
    if cookie:
        headers["Cookie"] = f"whale_session={cookie}"
    c.request(method or ("POST" if body is not None else "GET"), path,
              body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    set_cookie = r.getheader("Set-Cookie") or ""
    data = r.read()
    tok = set_cookie.split(";")[0].split("=", 1)[1] if set_cookie.startswith("whale_session=") else None
    return r.status, json.loads(data or b"null"), tok, set_cookie


def test_web_sign_up_login_keys_and_sessions(env):
    port, db = env["port"], env["db"]
    st, b, tok, _ = web(port, "/auth/register", {"email": "dave@example.com", "password": "correct horse"})
    assert st == 201 and b == {"email": "dave@example.com"} and tok is None  # a sign-in comes next
    st, _, dave, sc = web(port, "/auth/login", {"email": "dave@example.com", "password": "correct horse"})
    assert st == 200 and dave and "HttpOnly" in sc and "SameSite=Strict" in sc
    # a taken email: the same answer, and the account unchanged (tests/py/test_auth_guard.py)
    assert web(port, "/auth/register", {"email": "dave@example.com", "password": "another one"})[:3] == \
        (201, {"email": "dave@example.com"}, None)
    assert web(port, "/auth/register", {"email": "erin@example.com", "password": "short"})[0] == 422
    # the same generic answer whether the email exists or not
    bad1 = web(port, "/auth/login", {"email": "dave@example.com", "password": "wrong password"})
    bad2 = web(port, "/auth/login", {"email": "nobody@example.com", "password": "wrong password"})
    assert bad1[0] == bad2[0] == 401 and bad1[1] == bad2[1]
    st, b, dave2, _ = web(port, "/auth/login", {"email": "dave@example.com", "password": "correct horse"})
    assert st == 200 and dave2 and dave2 != dave
    assert web(port, "/auth/login", {"email": "dave@example.com", "password": "another one"})[0] == 401
    # keys over the session: created (shown once), listed by prefix only, used, revoked
    assert web(port, "/user/keys", {}, cookie=dave, ctype="application/x-www-form-urlencoded")[0] == 403  # CSRF
    st, b, _, _ = web(port, "/user/keys", {}, cookie=dave)
    assert st == 201 and b["key"].startswith("sk-")
    key = b["key"]
    st, lst, _, _ = web(port, "/user/keys", cookie=dave)
    assert st == 200 and [k["prefix"] for k in lst["keys"]] == [key[:12]] and key not in json.dumps(lst)
    admin(db, "topup", "dave@example.com", "0.50")
    assert call(port, "/v1/models", key=key)[0] == 200
    st, bal = call(port, "/user/balance", key=key)
    assert st == 200 and bal["balance_infos"][0]["total_balance"] == "0.50"
    assert web(port, "/user/balance", cookie=dave)[1]["balance_infos"][0]["total_balance"] == "0.50"
    # another user sees none of it and cannot revoke it
    assert web(port, "/auth/register", {"email": "alice2@example.com", "password": "a long password"})[0] == 201
    st, _, alice, _ = web(port, "/auth/login", {"email": "alice2@example.com", "password": "a long password"})
    assert st == 200
    assert web(port, "/user/keys", cookie=alice)[1]["keys"] == []
    assert web(port, "/user/keys/revoke", {"prefix": key[:12]}, cookie=alice)[0] == 404
    assert call(port, "/v1/models", key=key)[0] == 200
    assert web(port, "/user/keys/revoke", {"prefix": key[:12]}, cookie=dave)[0] == 200
    assert call(port, "/v1/models", key=key)[0] == 401
    # logout ends that session only; a password change ends them all
    st, _, _, sc = web(port, "/auth/logout", {}, cookie=dave)
    assert st == 200 and "Max-Age=0" in sc
    assert web(port, "/user/keys", cookie=dave)[0] == 401
    assert web(port, "/user/keys", cookie=dave2)[0] == 200
    st, _, dave3, _ = web(port, "/auth/password", {"password": "correct horse", "new_password": "battery staple"},
                          cookie=dave2)
    assert st == 200 and dave3
    assert web(port, "/user/keys", cookie=dave2)[0] == 401 and web(port, "/user/keys", cookie=dave3)[0] == 200
    assert web(port, "/auth/login", {"email": "dave@example.com", "password": "correct horse"})[0] == 401
    assert web(port, "/auth/login", {"email": "dave@example.com", "password": "battery staple"})[0] == 200
    # sign-ups from one address are limited (--signups-per-hour 5; 3 used so far: dave, dave again, alice2)
    codes = [web(port, "/auth/register", {"email": f"u{i}@example.com", "password": "password123"})[0] for i in range(3)]
    assert codes == [201, 201, 429]
    # account deletion: the password again; then no login, no session, no key, and the ledger intact
    st, _, dave4, _ = web(port, "/auth/login", {"email": "dave@example.com", "password": "battery staple"})
    st, _, _, _ = web(port, "/user/keys", {}, cookie=dave4)
    key2 = web(port, "/user/keys", cookie=dave4)[1]["keys"]
    assert web(port, "/auth/delete", {"password": "wrong"}, cookie=dave4)[0] == 401
    st, _, _, sc = web(port, "/auth/delete", {"password": "battery staple"}, cookie=dave4)
    assert st == 200 and "Max-Age=0" in sc
    assert web(port, "/user/keys", cookie=dave4)[0] == 401
    assert web(port, "/auth/login", {"email": "dave@example.com", "password": "battery staple"})[0] == 401
    assert key2 and "ok" in admin(db, "check")
    assert int(sql(db, "SELECT count(*) FROM users WHERE email = 'dave@example.com'")[0][0]) == 0
    assert int(sql(db, "SELECT count(*) FROM ledger l JOIN users u ON u.id = l.user_id"
                       " WHERE u.email LIKE 'deleted-%'")[0][0]) >= 1  # dave's top-up row stays
    log = env["log"].read_text()
    for secret in (dave, dave2, dave3, "correct horse", "battery staple"):
        assert secret not in log


def test_invite_only_secure_cookies_and_password_reset(tmp_path):
    """--signup invite: no sign-up without an unused code from `whale admin invite`; each code
    works once. --secure-cookies marks the cookie Secure. `whale admin user password` sets a new
    password (read from standard input) and ends the user's sessions."""
    db = tmp_path / "whale.db"
    admin(db, "check")  # creates the database
    p, port = accounts_server(db, tmp_path, "--ctx", "256", "--signup", "invite", "--secure-cookies",
                              "--signups-per-hour", "5")  # 4 tries below
    try:
        who = {"email": "frank@example.com", "password": "first password"}
        assert web(port, "/auth/register", who)[0] == 403
        assert web(port, "/auth/register", {**who, "invite": "inv-made-up"})[0] == 403
        code = admin(db, "invite")
        assert web(port, "/auth/register", {**who, "invite": code})[0] == 201
        st, _, tok, sc = web(port, "/auth/login", who)
        assert st == 200 and "; Secure" in sc and "HttpOnly" in sc
        assert web(port, "/auth/register", {"email": "gina@example.com", "password": "12345678", "invite": code})[0] == 403
        r = subprocess.run([str(WHALE), "admin", "--db", str(db), "user", "password", "frank@example.com"],
                           input="second password\n", capture_output=True, text=True)
        assert r.returncode == 0 and "second password" not in r.stdout + r.stderr
        assert web(port, "/user/keys", cookie=tok)[0] == 401  # the session ended
        assert web(port, "/auth/login", {**who})[0] == 401
        assert web(port, "/auth/login", {**who, "password": "second password"})[0] == 200
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_reasoning_tokens_bill_as_output(tmp_path):
    """A reasoning model (random weights, the real R1-Distill vocabulary): the charge uses
    DeepSeek's reasoner prices and counts the reasoning tokens as output, and the ledger row
    records them."""
    from conftest import reference_json
    vocab = reference_json("deepseek-r1-distill-qwen-7b", tmp_path)
    model = tmp_path / "r1tiny.gguf"
    subprocess.run([str(WHALE), "synth", "--shape", "test-qwen2", "--type", "q8_0", "--vocab", str(vocab), "-o",
                    str(model)], check=True, capture_output=True)
    db = tmp_path / "whale.db"
    admin(db, "user", "add", "hal@example.com")
    key = admin(db, "key", "create", "hal@example.com")
    admin(db, "topup", "hal@example.com", "1")
    p, port = accounts_server(db, tmp_path, "-m", str(model), "--ctx", "256")
    try:
        st, r = call(port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 30,
                                                    "temperature": 0, "reasoning_budget": 5}, key)
        assert st == 200
        u = r["usage"]
        reasoning = u["completion_tokens_details"]["reasoning_tokens"]
        assert reasoning >= 5 and u["completion_tokens"] > reasoning
        spent = 1000000 - micro(admin(db, "balance", "hal@example.com"))
        assert spent == charge_of(u, price=(140000, 550000, 2190000))
        assert int(sql(db, "SELECT reasoning FROM ledger WHERE request_id = ?", r["id"])[0][0]) == reasoning
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def raw_headers(port, path, body, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, dict(r.getheaders()), json.loads(r.read() or b"null")


@pytest.mark.parametrize("flags,per_user", [(("--rpm", "3"), 3), (("--tpm", "60"), None)])
def test_rate_limits_per_key_and_user(tmp_path, flags, per_user):
    """--rpm / --tpm: beyond a key's and its user's requests or tokens per minute, 429 with
    Retry-After and DeepSeek's rate-limit body; another user is not held back."""
    db = tmp_path / "whale.db"
    keys = {}
    for u in ("ann", "ben"):
        admin(db, "user", "add", f"{u}@example.com")
        keys[u] = admin(db, "key", "create", f"{u}@example.com")
        admin(db, "topup", f"{u}@example.com", "1")
    keys["ann2"] = admin(db, "key", "create", "ann@example.com")
    p, port = accounts_server(db, tmp_path, "--ctx", "256", *flags)
    body = {"messages": [{"role": "user", "content": "Say one word about the sea, please."}], "max_tokens": 2,
            "temperature": 0}
    try:
        codes = []
        for i in range(6):
            st, h, b = raw_headers(port, "/v1/chat/completions", body, keys["ann"])
            codes.append(st)
            if st == 429:
                assert int(h["Retry-After"]) >= 1 and b["error"]["type"] == "rate_limit_error"
                break
        assert codes[-1] == 429 and codes[:-1] == [200] * (len(codes) - 1)
        if per_user:
            assert len(codes) == per_user + 1
        # the user's other key shares the user's bucket; another user does not
        assert raw_headers(port, "/v1/chat/completions", body, keys["ann2"])[0] == 429
        assert raw_headers(port, "/v1/chat/completions", body, keys["ben"])[0] == 200
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
