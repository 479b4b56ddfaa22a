"""`whale chat` as a person uses it: a real terminal (tmux), a question, a streamed answer,
Ctrl-C in the middle of an answer, a second question in the same session, Ctrl-D to leave.
Runs on the default model with greedy decoding and short replies to stay fast.

Non-ASCII input (Chinese, emoji, accents) is typed at the prompt too, under a UTF-8 locale and
under LANG=C: `whale chat --dump-prompt FILE` writes the token ids of each turn's prompt, and
the test decodes them with the model's tokenizer to check the model got exactly what was typed
(libedit drops every non-ASCII key unless the program sets a UTF-8 LC_CTYPE)."""
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ARTIFACTS, DEFAULT_MODEL, WHALE, run_whale


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


def start(args, env="", artifact="chat-tmux.txt"):
    """A tmux session running `whale chat ARGS` (with environment assignments ENV); yields its name."""
    if not shutil.which("tmux"):
        pytest.fail("tmux is missing: run scripts/setup")
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    name = f"whale-{uuid.uuid4().hex[:8]}"
    # -u: the pane is UTF-8 whatever this process's locale, as a person's terminal would be.
    tmux("-u", "new-session", "-d", "-s", name, "-x", "160", "-y", "50",
         f"env {env} {WHALE} chat {args}; echo WHALE-EXITED $?; sleep 30")
    yield name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / artifact).write_text(screen(name))
    tmux("kill-session", "-t", name)


@pytest.fixture
def session():
    yield from start("--temp 0 -n 48")


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


# Typed one line each; the model must receive exactly these characters.
TYPED = ["用一句话解释什么是混合专家模型。", "🐋 café naïve Ünïcödé"]


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
def test_chat_non_ascii_input(tmp_path, lang):
    dump = tmp_path / "prompts.txt"
    gen = start(f"--temp 0 -n 4 --dump-prompt {dump}", env=f"LC_ALL= LANG={lang}",
                artifact=f"chat-tmux-unicode-{lang}.txt")
    s = next(gen)
    try:
        wait_for(s, lambda t: ">>> " in t, 120, "the prompt")
        for i, text in enumerate(TYPED):
            tmux("send-keys", "-t", s, "-l", text)
            tmux("send-keys", "-t", s, "Enter")
            # The next prompt: after the answer, or at once when the line arrived empty.
            wait_for(s, lambda t: t.count(">>> ") >= i + 2, 120, f"the prompt after line {i + 1}")
        tmux("send-keys", "-t", s, "C-d")
        out = wait_for(s, lambda t: "WHALE-EXITED" in t, 30, "Ctrl-D to leave")
    finally:
        gen.close()
    for text in TYPED:
        assert f">>> {text}" in out, f"{text!r} not echoed at the prompt; screen:\n{out}"
    lines = dump.read_text().splitlines() if dump.exists() else []
    assert len(lines) == len(TYPED), f"{len(lines)} prompts reached the model, {len(TYPED)} lines typed"
    for ids, text in zip(lines, TYPED):
        prompt = run_whale("tokenize", "-m", str(DEFAULT_MODEL), "--decode", input=ids.encode()).stdout.decode()
        # The last user turn of the ChatML prompt holds exactly the typed line.
        turn = prompt.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        assert turn == text, (prompt, text)
