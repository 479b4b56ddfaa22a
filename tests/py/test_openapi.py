"""docs/openapi.yaml is true: schemathesis (PyPI) generates requests from it, valid and invalid,
against live servers (local mode, and --accounts signed in by a session cookie) on a tiny
random-weight model with DeepSeek-V3's vocabulary, and checks that no response is a server
error, that every status code, content type and JSON body is the documented one, and that
requests violating the schema are refused."""
import os
import shutil
import signal
import subprocess
import sys


from conftest import REPO
from test_accounts import accounts_server, admin, call, web
from test_serve import start

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis(port, checks, *extra):
    exe = shutil.which("schemathesis") or os.path.join(os.path.dirname(sys.executable), "schemathesis")
    r = subprocess.run([exe, "run", str(REPO / "docs" / "openapi.yaml"), "--url", f"http://127.0.0.1:{port}",
                        "--checks", checks, "-n", "20", "--seed", "7", "--workers", "1", "--request-timeout", "60",
                        "--phases", "examples,coverage,fuzzing", "--warnings", "off", *extra],
                       capture_output=True, text=True, timeout=600)
    tail = r.stdout[-4000:]
    print(tail)
    assert r.returncode == 0, tail


def test_local_server_matches_openapi(v3tiny):
    p, port = start("-m", str(v3tiny), "--ctx", "256")
    try:
        schemathesis(port, CHECKS + ",negative_data_rejection")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0


def test_accounts_server_matches_openapi(v3tiny, tmp_path):
    db = tmp_path / "whale.db"
    p, port = accounts_server(db, tmp_path, "-m", str(v3tiny), "--ctx", "256")
    try:
        assert web(port, "/auth/register", {"email": "st@example.com", "password": "schemathesis pw"})[0] == 201
        st, _, cookie, _ = web(port, "/auth/login", {"email": "st@example.com", "password": "schemathesis pw"})
        assert st == 200
        admin(db, "topup", "st@example.com", "5")
        # (not negative_data_rejection here: the session cookie goes with every request, so the
        # cases that leave out the required credentials cannot be made)
        schemathesis(port, CHECKS, "-H", f"Cookie: whale_session={cookie}")
        assert call(port, "/health")[0] == 200
        admin(db, "check")  # every balance still equals its ledger
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
