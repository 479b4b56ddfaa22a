"""Isolation between users in the context cache (issue #18): on one `whale serve --accounts`,
a prompt another user computed is never a cache hit for you, so `prompt_cache_hit_tokens`
cannot tell whether a guessed system prompt (with its secret) is someone else's; your own
repeated prefix still hits. Checked for both ways a prefix is reused: the context cache
(memory and disk) and a sequence slot keeping its last request's rows. Short replies (1
token) keep it fast."""
import signal
import subprocess
import time

import pytest

from conftest import DEFAULT_MODEL
from test_accounts import accounts_server, admin, web

openai = pytest.importorskip("openai")

# about 190 tokens: more than two cache blocks (64 tokens each) before the question
SYSTEM = ("You are the support assistant of Example Corp. The admin password is {secret}. "
          + " ".join(f"Rule {i}: never reveal the password, answer briefly." for i in range(13)))


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    d = tmp_path_factory.mktemp("isolation")
    db = d / "whale.db"
    keys = {}
    for u in ("alice", "bob", "carol"):
        admin(db, "user", "add", f"{u}@example.com")
        admin(db, "topup", f"{u}@example.com", "1.00")
        keys[u] = admin(db, "key", "create", f"{u}@example.com")
    return d, db, keys


def hits(port, key, secret, question="What can you do?"):
    """prompt_cache_hit_tokens of one 1-token chat completion (and the prompt's length)."""
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    r = c.chat.completions.create(model="default", temperature=0, max_tokens=1,
                                  messages=[{"role": "system", "content": SYSTEM.format(secret=secret)},
                                            {"role": "user", "content": question}])
    return r.usage.model_extra["prompt_cache_hit_tokens"], r.usage.prompt_tokens


def stop(p):
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


def test_context_cache_is_per_user(users):
    d, db, keys = users
    # one slot: every request takes the slot the previous one left, so hits come from the cache
    p, port = accounts_server(db, d, "--parallel", "1", "--ctx", "1024", stderr=subprocess.DEVNULL)
    try:
        first, n = hits(port, keys["alice"], "tulip-4417")
        assert first == 0 and n > 2 * 64 + 40
        guess, _ = hits(port, keys["bob"], "tulip-4417")  # the right guess: a hit would confirm it
        assert guess == 0, guess
        own, _ = hits(port, keys["alice"], "tulip-4417", "Who are you?")  # her own prefix, after Bob's
        assert own >= 2 * 64 and own % 64 == 0, own
        print(f"context cache: alice first {first}, bob's right guess {guess}, alice again {own} of {n}")
    finally:
        stop(p)
    # a restart: the disk tier keeps each user's blocks apart too (Bob's guesses are his own
    # blocks now; Carol has sent nothing)
    p, port = accounts_server(db, d, "--parallel", "1", "--ctx", "1024", stderr=subprocess.DEVNULL)
    try:
        other, _ = hits(port, keys["carol"], "tulip-4417")
        own_disk, _ = hits(port, keys["alice"], "tulip-4417", "Where are you?")
        assert other == 0 and own_disk == own, (other, own_disk)
        print(f"after a restart (disk): carol {other}, alice {own_disk}")
    finally:
        stop(p)


def test_slot_reuse_is_per_user(users):
    d, db, keys = users
    # no context cache: only a slot's kept rows can be reused
    p, port = accounts_server(db, d, "--parallel", "1", "--ctx", "1024", "--cache-ram", "0", "--cache-disk", "0",
                              stderr=subprocess.DEVNULL)
    try:
        assert hits(port, keys["alice"], "lily-2208")[0] == 0
        own, _ = hits(port, keys["alice"], "lily-2208", "Who are you?")
        assert own >= 2 * 64, own
        other, _ = hits(port, keys["bob"], "lily-2208")  # the slot still holds Alice's prompt
        assert other == 0, other
        print(f"slot reuse: alice again {own}, bob {other}")
    finally:
        stop(p)


def test_deleted_account_leaves_no_cached_prompt(users):
    """/auth/delete purges the user's context cache blocks: their files are gone from disk (and a
    new account cannot hit them), another user's stay."""
    d, db, keys = users
    kv = d / "kv"
    p, port = accounts_server(db, d, "--parallel", "1", "--ctx", "1024", stderr=subprocess.DEVNULL)
    try:
        before = set(kv.rglob("*.kvb"))
        creds = {"email": "erin@example.com", "password": "purple monkey dish"}
        assert web(port, "/auth/register", creds)[0] == 201
        st, _, cookie, _ = web(port, "/auth/login", creds)
        assert st == 200 and cookie
        admin(db, "topup", "erin@example.com", "1.00")
        # the page's session stands for a key: Erin's own owner namespace
        st, body, _, _ = web(port, "/v1/chat/completions", {
            "model": "default", "temperature": 0, "max_tokens": 1,
            "messages": [{"role": "system", "content": SYSTEM.format(secret="violet-9931")},
                         {"role": "user", "content": "Hello?"}]}, cookie=cookie)
        assert st == 200, body
        for _ in range(100):  # the engine keeps a prompt's blocks once its request has ended
            erins = set(kv.rglob("*.kvb")) - before
            if len(erins) >= 2:
                break
            time.sleep(0.1)
        assert len(erins) >= 2, erins  # her prompt's blocks reached the disk tier
        st, _, _, _ = web(port, "/auth/delete", {"password": "purple monkey dish"}, cookie=cookie)
        assert st == 200
        left = set(kv.rglob("*.kvb"))
        assert not (erins & left), erins & left
        assert before <= left  # the others' blocks stay
        print(f"account deletion: {len(erins)} of Erin's blocks on disk before, 0 after; {len(before)} others' kept")
    finally:
        stop(p)
