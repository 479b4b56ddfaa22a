"""`whale eval` (src/rl, src/cli/cmd_eval.c): a seeded evaluation on the default model gives the
same numbers and replies twice, user JSONL tasks run and their mistakes are reported by line,
and the help lists the built-in tasks. Kept small (a few problems, short replies): the whole
file takes well under a minute on two cores."""
import json
import subprocess

import pytest

from conftest import DEFAULT_MODEL, WHALE, run_whale

TIMING = {"tokens_per_s", "seconds"}


def need_default():
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"{DEFAULT_MODEL} missing (scripts/setup fetches the default model)")


def eval_json(*args):
    p = run_whale("eval", "-m", str(DEFAULT_MODEL), "--json", *args)
    return json.loads(p.stdout)


def test_same_seed_same_numbers():
    """Sampling at temperature 0.8 with a seed: two runs agree on every number and every reply
    (only the timings differ), also when one decodes 2 sequences at a time and the other 4 (each
    sample's seed is its own, and the engine's output does not depend on the batch)."""
    need_default()
    args = ("--task", "arith", "--n", "2", "--samples", "2", "--temp", "0.8", "--seed", "11", "--max-tokens", "16",
            "--show", "4")
    a, b = eval_json(*args, "--parallel", "2"), eval_json(*args, "--parallel", "4")
    for k in a:
        if k not in TIMING | {"parallel"}:
            assert a[k] == b[k], k
    assert a["n"] == 2 and a["samples"] == 2 and a["temperature"] == pytest.approx(0.8)
    for k in ("pass_at_1", "maj_at_2", "format_rate", "answered_rate"):
        assert 0 <= a[k] <= 1, k
    assert a["completion_tokens"] > 0 and a["tokens_per_s"] > 0
    assert len(a["examples"]) == 4
    assert all(e["reference"] for e in a["examples"])
    print({k: v for k, v in a.items() if k != "examples"})


def test_jsonl_task_and_prompt_modes(tmp_path):
    """A user task runs in both prompt modes; the r1zero prompt opens <think> itself, so a reply
    that never closes it has no answer."""
    need_default()
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"prompt": "What is 6 times 7?", "answer": 42}) + "\n\n" +
                 json.dumps({"prompt": "Name the capital of France.", "answer": "Paris", "verifier": "exact"}) + "\n")
    for mode in ("chat", "r1zero"):
        r = eval_json("--task", str(f), "--n", "5", "--max-tokens", "8", "--prompt", mode, "--show", "2")
        assert r["n"] == 2 and r["prompt"] == mode and r["task"] == str(f)
        assert [e["reference"] for e in r["examples"]] == ["42", "Paris"]
        for e in r["examples"]:
            if mode == "r1zero" and "</think>" not in e["reply"]:
                assert not e["correct"] and not e["format_ok"] and e["answer"] == ""


@pytest.mark.parametrize("text,want", [
    ('{"prompt": "a", "answer": 1}\n{"prompt": "b"}\n', ':2: "answer" must be a string or a number'),
    ('{"prompt": "a", "answer": 1}\nnot json\n', ":2: not valid JSON"),
    ('{"prompt": "a", "answer": "x", "verifier": "fuzzy"}\n', ':1: unknown verifier "fuzzy"'),
    ('{"prompt": "a", "answer": "twelve"}\n', ':1: answer "twelve" is not one number'),
    ('\n\n{"prompt": "a", "answer": "([", "verifier": "regex"}\n', ":3: bad regex"),
    ("\n", "no problems in the file"),
])
def test_jsonl_errors_name_the_line(tmp_path, text, want):
    """Malformed task files fail before the model is opened, naming file and line."""
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    p = run_whale("eval", "-m", "/nonexistent.gguf", "--task", str(f), check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert f"{f}{want}" in err or (want.startswith("no") and want in err), err


def test_help_and_usage_errors():
    p = run_whale("eval", "--help")
    out = p.stdout.decode()
    for name in ("arith", "arith_small", "countdown", "linear", "word_en", "word_zh", "--samples", "--prompt MODE",
                 "auto"):
        assert name in out, name
    p = run_whale("eval", "--task", "nope", check=False)
    assert p.returncode == 2 and b"no task 'nope'" in p.stderr
    p = run_whale("eval", check=False)
    assert p.returncode == 2 and b"--task" in p.stderr
    p = run_whale("eval", "--task", "arith", "--split", "dev", check=False)
    assert p.returncode == 2 and b"--split" in p.stderr
    p = run_whale("eval", "--task", "arith", "--prompt", "raw", check=False)
    assert p.returncode == 2 and b"chat, r1zero or auto, not 'raw'" in p.stderr
    assert b"eval" in subprocess.run([str(WHALE), "--help"], capture_output=True).stdout
