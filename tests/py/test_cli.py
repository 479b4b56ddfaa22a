"""The `whale` commands as scripts use them: run --json, errors a user can act on (missing or
corrupt model, a prompt longer than the context), --help everywhere, info on the default model."""
import json
import subprocess

import pytest

from conftest import DEFAULT_MODEL, WHALE, run_whale

COMMANDS = ["chat", "run", "info", "tokenize", "convert", "perplexity", "logits", "synth", "merge", "eval", "grpo", "distill", "train"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd):
    out = run_whale(cmd, "--help").stdout.decode()
    assert out.startswith("usage: whale " + cmd)


def test_top_level_help_lists_commands():
    out = run_whale("--help").stdout.decode()
    for c in COMMANDS:
        assert f"  {c}" in out


def test_run_json_is_one_object():
    p = run_whale("run", "-p", "What is 2+2? Reply with the number only.", "--temp", "0", "-n", "8", "--json")
    obj = json.loads(p.stdout.decode())
    assert set(obj) == {"reasoning", "answer", "finish_reason", "prompt_tokens", "completion_tokens", "tokens", "timings",
                        "prompt_cache_hit_tokens", "prompt_cache_miss_tokens"}
    assert obj["prompt_cache_hit_tokens"] + obj["prompt_cache_miss_tokens"] == obj["prompt_tokens"]
    assert len(obj["tokens"]) == obj["completion_tokens"]
    assert "4" in obj["answer"] and obj["finish_reason"] in ("stop", "length")
    assert obj["prompt_tokens"] > 10 and 0 < obj["completion_tokens"] <= 8
    assert obj["timings"]["decode_tokens_per_s"] > 0


def test_seed_makes_sampling_repeatable():
    args = ("run", "-p", "Name a color.", "--temp", "1.0", "--seed", "1234", "-n", "12", "--json")
    a = json.loads(run_whale(*args).stdout)["answer"]
    b = json.loads(run_whale(*args).stdout)["answer"]
    assert a == b


def test_prompt_longer_than_context_is_a_clear_error():
    p = run_whale("run", "-p", "word " * 200, "--ctx", "64", check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "context" in err and "Traceback" not in err


@pytest.mark.parametrize("cut", [100, 5_000_000, 200_000_000])
def test_truncated_model_is_a_clear_error(tmp_path, cut):
    bad = tmp_path / "cut.gguf"
    with open(DEFAULT_MODEL, "rb") as f:
        bad.write_bytes(f.read(cut))
    p = run_whale("run", "-m", str(bad), "-p", "hi", check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and str(bad) in err and "truncated" in err, err
    # info still reads what is there: the header when it is complete, with a warning
    p = run_whale("info", str(bad), check=False)
    if p.returncode == 0:
        assert "truncated download" in p.stdout.decode()
    else:
        assert p.returncode == 1 and str(bad) in p.stderr.decode()


def test_missing_model_is_a_clear_error(tmp_path):
    p = run_whale("run", "-m", str(tmp_path / "nope.gguf"), "-p", "hi", check=False)
    assert p.returncode == 1 and "nope.gguf" in p.stderr.decode() and "No such file" in p.stderr.decode()


def test_serve_refuses_two_models_of_one_name():
    """Several -m are served side by side (test_serve_models.py), each under its name: two of one
    name could not be told apart, so the server does not start."""
    try:  # (a server that took the models would not return: it would serve until stopped)
        p = subprocess.run([str(WHALE), "serve", "-m", "default", "-m", "default"],
                           capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("whale serve started with two models called 'default'")
    err = p.stderr.decode()
    assert p.returncode == 1 and "two models are called 'default'" in err and "--name" in err, err
    # names go into JSON, Prometheus labels and messages as they are: plain characters only
    p = subprocess.run([str(WHALE), "serve", "-m", "default", "--name", 'a "b"'], capture_output=True, timeout=60)
    assert p.returncode == 1 and "cannot be a model's name" in p.stderr.decode(), p.stderr


def test_info_default_model():
    out = run_whale("info").stdout.decode()
    for s in ("qwen2", "n_layer                24", "pre-tokenizer 'qwen2'", "Q4_K", "chat template"):
        assert s in out
