"""`whale chat` as a person uses it: a real terminal (tmux), a question, a streamed answer,
Ctrl-C in the middle of an answer, a second question in the same session, Ctrl-D to leave.
Runs on the default model with greedy decoding and short replies to stay fast."""
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ARTIFACTS, DEFAULT_MODEL, WHALE


def tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True)


def screen(name):
    return tmux("capture-pane", "-p", "-J", "-t", name, "-S", "-200").stdout


def wait_for(name, pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        s = screen(name)
        if pred(s):
            return s
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; screen:\n{screen(name)}")


@pytest.fixture
def session():
    if not shutil.which("tmux"):
        pytest.fail("tmux is missing: run scripts/setup")
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    name = f"whale-{uuid.uuid4().hex[:8]}"
    tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "50",
         f"{WHALE} chat --temp 0 -n 48; echo WHALE-EXITED $?; sleep 30")
    yield name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "chat-tmux.txt").write_text(screen(name))
    tmux("kill-session", "-t", name)


def test_chat_in_a_terminal(session):
    s = session
    wait_for(s, lambda t: ">>> " in t, 120, "the prompt")
    tmux("send-keys", "-t", s, "What is 7 times 8? Reply with just the number.", "Enter")
    out = wait_for(s, lambda t: t.count("tokens/s]") >= 1, 120, "the first answer")
    assert "56" in out.split("What is 7 times 8?")[1]

    tmux("send-keys", "-t", s, "Write a very long story about a whale who learns to code.", "Enter")
    # Let a few words stream, then interrupt.
    wait_for(s, lambda t: len(t.split("learns to code.")[-1].strip()) > 20, 120, "the second answer to start")
    tmux("send-keys", "-t", s, "C-c")
    out = wait_for(s, lambda t: "(stopped)" in t and t.count(">>> ") >= 3, 60, "Ctrl-C to stop the answer")
    assert "WHALE-EXITED" not in out  # the session survived

    tmux("send-keys", "-t", s, "Say the word OK and nothing else.", "Enter")
    out = wait_for(s, lambda t: t.count("tokens/s]") >= 3, 120, "the third answer")
    assert "OK" in out.split("Say the word OK")[1]

    tmux("send-keys", "-t", s, "C-d")
    out = wait_for(s, lambda t: "WHALE-EXITED" in t, 30, "Ctrl-D to leave")
    assert "WHALE-EXITED 0" in out
