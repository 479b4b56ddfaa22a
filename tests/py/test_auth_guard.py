"""Issue #18, the sign-in side of `whale serve --accounts`: a sign-up that does not tell whether
an email is taken; every password check (login, password
change, account deletion) under one throttle (429 with Retry-After once the free failures are
spent), and with `--db postgres://...` the throttle's records shared by the replicas: wrong
passwords spread over two replicas slow the account as if they had all reached one; the
defaults of sign-ups per address and storage per user. The throttle's table itself (keyed hash, no backing-off record dropped, IPv6 per /64) is tested in
tests/unit/test_login_guard.c."""
import http.client
import json
import signal
import time

import pytest

from conftest import DEFAULT_MODEL
from test_accounts import accounts_server

FREE_PER_ACCOUNT = 5  # LOGIN_FREE_PER_ACCOUNT


def post(port, path, body, cookie=None):
    """(status, body, Retry-After or None, session token or None)"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = f"whale_session={cookie}"
    c.request("POST", path, body=json.dumps(body), headers=headers)
    r = c.getresponse()
    sc = r.getheader("Set-Cookie") or ""
    tok = sc.split(";")[0].split("=", 1)[1] if sc.startswith("whale_session=") else None
    return r.status, json.loads(r.read() or b"null"), r.getheader("Retry-After"), tok


@pytest.fixture
def server(tmp_path):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    p, port = accounts_server(tmp_path / "whale.db", tmp_path, "--ctx", "256")
    yield port
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


@pytest.mark.parametrize("path", ["/auth/password", "/auth/delete"])
def test_password_checks_are_throttled(server, path):
    assert post(server, "/auth/register", {"email": "eve@example.com", "password": "correct horse"})[0] == 201
    st, _, _, cookie = post(server, "/auth/login", {"email": "eve@example.com", "password": "correct horse"})
    assert st == 200 and cookie
    body = {"password": "wrong guess", "new_password": "another one"}
    codes = [post(server, path, body, cookie)[0] for _ in range(FREE_PER_ACCOUNT + 1)]
    assert codes == [401] * (FREE_PER_ACCOUNT + 1)
    st, b, retry, _ = post(server, path, body, cookie)  # no argon2id work done for this one
    assert st == 429 and int(retry) >= 1 and b["error"]["type"] == "rate_limit_error"
    st, _, retry, _ = post(server, path, {"password": "correct horse", "new_password": "another one"}, cookie)
    assert st == 429 and retry  # even the right password waits: the guesser cannot tell
    # the account's record is the login's: sign-in for that account waits too
    assert post(server, "/auth/login", {"email": "eve@example.com", "password": "correct horse"})[0] == 429


def test_replicas_share_the_throttle(pg, tmp_path):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    db = pg.new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, pa = accounts_server(db, tmp_path / "a", "--ctx", "256")
    b, pb = accounts_server(db, tmp_path / "b", "--ctx", "256")
    try:
        assert post(pa, "/auth/register", {"email": "vic@example.com", "password": "correct horse"})[0] == 201
        wrong = {"email": "vic@example.com", "password": "wrong guess"}
        codes = [post(pa if i % 2 else pb, "/auth/login", wrong)[0] for i in range(FREE_PER_ACCOUNT + 1)]
        assert codes == [401] * (FREE_PER_ACCOUNT + 1)  # 3 on each replica: under the free 5 of either
        for port in (pa, pb):
            st, _, retry, _ = post(port, "/auth/login", wrong)
            assert st == 429 and retry
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=30) == 0


def test_register_does_not_tell_taken_emails(server):
    """A taken email gets a fresh sign-up's answer (status, body, no cookie) after the same
    argon2id work, and the existing account is untouched."""
    answers, times = [], []
    for pw in ("owner password", "prober password"):  # the second finds the email taken
        t0 = time.perf_counter()
        st, b, retry, tok = post(server, "/auth/register", {"email": "zed@example.com", "password": pw})
        times.append(time.perf_counter() - t0)
        answers.append((st, b, retry, tok))
    assert answers[0] == answers[1] == (201, {"email": "zed@example.com"}, None, None)
    assert times[1] > 0.3 * times[0]  # the hashing was done for the taken email too
    assert post(server, "/auth/login", {"email": "zed@example.com", "password": "prober password"})[0] == 401
    assert post(server, "/auth/login", {"email": "zed@example.com", "password": "owner password"})[0] == 200


def test_default_signups_and_storage(server):
    """Without flags: 3 sign-ups per address an hour, 8 MiB of conversations per user (the
    flags' own values are tested by test_accounts.py's and test_web_api.py's servers)."""
    codes = [post(server, "/auth/register", {"email": f"s{i}@example.com", "password": "password123"})[0]
             for i in range(4)]
    assert codes == [201, 201, 201, 429]
    cookie = post(server, "/auth/login", {"email": "s0@example.com", "password": "password123"})[3]
    big = {"title": "big", "messages": [{"role": "user", "content": "x" * 1_000_000}]}
    codes = []
    for i in range(9):
        c = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
        c.request("PUT", f"/user/conversations/big{i}", body=json.dumps(big),
                  headers={"Content-Type": "application/json", "Cookie": f"whale_session={cookie}"})
        codes.append(c.getresponse().status)
    assert codes == [200] * 8 + [409], codes
