"""Migration 5 on a SQLite database made before it (issue #18): api_keys rebuilt with
AUTOINCREMENT keeping every id, the next key's id past every key id the ledger names (a deleted
user's key id 7 is never given again), the ledger's key prefixes filled from the keys as they
were, the ledger still append-only, and every balance still its ledger's sum."""
import re
import sqlite3
import subprocess

from conftest import REPO, WHALE


def migrations_before(n):
    """The SQLite migrations 1..n as store_db.c has them (shipped ones never change)."""
    src = (REPO / "src/service/store_db.c").read_text()
    block = src[src.index("MIGRATIONS_SQLITE[] = {"):src.index("MIGRATIONS_PG[]")]
    out = []
    for m in re.finditer(r'\(((?:\s*"(?:[^"\\]|\\.)*"\s*(?:/\*.*?\*/)?)+)\)', block, re.S):
        out.append("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))))
    return out[:n]


def test_migration_5_keeps_key_ids_and_never_reuses_them(tmp_path):
    db = tmp_path / "v4.db"
    with sqlite3.connect(db) as c:
        for m in migrations_before(4):
            c.executescript(m)
        c.execute("PRAGMA user_version = 4")
        c.execute("INSERT INTO users (id, email, created) VALUES (1, 'a@example.com', 0), (2, 'gone@example.com', 0)")
        c.execute("INSERT INTO balances VALUES (1, 5), (2, -5)")
        c.execute("INSERT INTO api_keys (id, user_id, prefix, hash, created) VALUES (1, 1, 'sk-aaaaaaaaa', x'01', 0)")
        # key 7 was user 2's, deleted with the account; its charge stays
        c.execute("INSERT INTO ledger (user_id, key_id, at, kind, amount, request_id) VALUES"
                  " (2, 7, 0, 'charge', -5, 'r1'), (1, 1, 0, 'charge', -3, 'r2'), (1, 0, 0, 'credit', 8, NULL)")
    r = subprocess.run([str(WHALE), "admin", "--db", str(db), "key", "create", "a@example.com"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] >= 5
        ids = [i for i, in c.execute("SELECT id FROM api_keys ORDER BY id")]
        assert ids[0] == 1 and ids[1] > 7, ids
        assert c.execute("SELECT key_id, key_prefix FROM ledger ORDER BY id").fetchall() == \
            [(7, None), (1, "sk-aaaaaaaaa"), (0, None)]
        try:
            c.execute("UPDATE ledger SET amount = 0")
            raise AssertionError("the ledger took an UPDATE")
        except sqlite3.DatabaseError as e:
            assert "append-only" in str(e)
    r = subprocess.run([str(WHALE), "admin", "--db", str(db), "check"], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout
