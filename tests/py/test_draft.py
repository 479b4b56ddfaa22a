"""Speculative decoding for the dense models: a separate draft model (`--draft MODEL`) and prompt
lookup (`--draft lookup`), in `whale run` and in the server's scheduler.

Tiny Qwen2 checkpoints (tests/golden/tiny_models.py) with a sharpened output layer, so the
next-token distribution is neither flat nor certain; the draft is the same checkpoint with its
FFN outputs scaled down (it agrees with the target often, not always), or the target itself
(always right).

1. Greedy: the tokens are exactly plain greedy decoding's, for each drafter and draft length,
   also at the end of the context; acceptance is 1 for the target as its own draft.
2. Sampled: each position's token has plain sampling's distribution. 3,000 sampled requests
   (temperature 0.5, 16 tokens, each server its own seeds) per server: plain, draft model,
   lookup. For each of the 16 positions a two-sample chi-square test of the token counts
   (tokens seen fewer than 10 times pooled) must not reject at p 1e-4 (Wilson-Hilferty's normal
   approximation of the chi-square tail, z < 3.72; 32 tests together stay under 0.4%). Seen
   to fail, at z 5.97, with a rule that keeps a guess 1.5 times too often; the correct rule's
   largest z was 1.67. The rule's exact distribution is also checked on fixed logits in
   tests/unit/test_engine.c.
3. /metrics labels the counters by drafter and reports acceptance and tokens per step."""
import collections
import concurrent.futures
import json
import math
import pathlib
import signal
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import DEFAULT_MODEL, REPO, run_whale
from test_serve import raw as serve_raw, start as serve_start

sys.path.insert(0, str(REPO / "tests" / "golden"))
import tiny_models  # noqa: E402
from test_speculative import byte_level_tokenizer, metrics  # noqa: E402

SHARP = 2.5  # output layer scale: the best token's probability ~0.3-0.9 at temperature 1


def qwen2(d, ffn=1.0, sharp=SHARP, tokenizer=True):
    """The tiny Qwen2 with its lm_head scaled by sharp and its FFN outputs by ffn."""
    t = tiny_models.tensors("qwen2")
    t["lm_head.weight"] = (t["lm_head.weight"] * sharp).astype(np.float32)
    for k in t:
        if k.endswith("mlp.down_proj.weight"):
            t[k] = (t[k] * ffn).astype(np.float32)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(tiny_models.CONFIGS["qwen2"]))
    save_file(t, str(d / "model.safetensors"))
    if tokenizer:
        byte_level_tokenizer(d, tiny_models.VOCAB)
    return d


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(target, weaker draft) without a tokenizer: `whale run --ids` runs to its -n, no end token."""
    root = tmp_path_factory.mktemp("draft")
    return qwen2(root / "target", tokenizer=False), qwen2(root / "draft", ffn=0.3, tokenizer=False)


@pytest.fixture(scope="module")
def served_pair(tmp_path_factory):
    """The same with a byte-level tokenizer, for the server."""
    root = tmp_path_factory.mktemp("draft-served")
    return qwen2(root / "target"), qwen2(root / "draft", ffn=0.3)


IDS = "1 17 200 5 99 3 250 17 200 5"


def generate(model, *flags, n=100, ids=IDS):
    out = run_whale("run", "-m", str(model), "--ids", ids, "--temp", "0", "-n", str(n), "--json", "-t", "1", *flags)
    return json.loads(out.stdout)


@pytest.mark.parametrize("how", ["self", "weaker", "weaker-max1", "weaker-max16", "lookup", "lookup-max2"])
def test_draft_greedy_equals_plain(pair, how):
    target, weaker = pair
    flags = {"self": ("--draft", str(target)), "weaker": ("--draft", str(weaker)),
             "weaker-max1": ("--draft", str(weaker), "--draft-max", "1"),
             "weaker-max16": ("--draft", str(weaker), "--draft-max", "16"),
             "lookup": ("--draft", "lookup"), "lookup-max2": ("--draft", "lookup", "--draft-max", "2")}[how]
    plain = generate(target)
    spec = generate(target, *flags)
    assert len(plain["tokens"]) == 100
    assert spec["tokens"] == plain["tokens"]
    s = spec["speculative"]
    print(f"{how}: {s['accepted']} of {s['drafted']} drafts accepted")
    assert s["drafter"] == ("lookup" if how.startswith("lookup") else "draft model")
    assert s["drafted"] > 0
    if how == "self":  # the same weights and kernels: every guess is the target's own choice
        assert s["acceptance_rate"] == 1
    elif how.startswith("weaker"):
        assert 0 < s["accepted"] < s["drafted"]


def test_draft_at_the_end_of_the_context(pair):
    """No guess lies past the context: the reply runs to the last position, unchanged."""
    target, weaker = pair
    for ctx in ("16", "17", "24"):
        plain = generate(target, "--ctx", ctx, n=0)
        for flags in (("--draft", str(weaker)), ("--draft", "lookup")):
            spec = generate(target, "--ctx", ctx, *flags, n=0)
            assert spec["tokens"] == plain["tokens"] and len(plain["tokens"]) == int(ctx) - 10


def test_draft_reads_a_long_prompt_over_several_steps():
    """A ~700-token prompt is more than a step's catch-up (DM_CATCHUP, 256 rows), so the draft
    reads it over three steps while decoding goes on without guesses. Afterwards the default
    model as its own draft is right every time (a row skipped or misplaced in the catch-up
    would make it wrong), and the tokens are those of plain decoding."""
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    text = " ".join(f"Line {i}: the whale swims {i} miles." for i in range(60)) + " Summarize."
    args = ("run", "-m", str(DEFAULT_MODEL), "-p", text, "--temp", "0", "-n", "24", "--json", "--no-cache")
    plain = json.loads(run_whale(*args).stdout)
    spec = json.loads(run_whale(*args, "--draft", str(DEFAULT_MODEL)).stdout)
    assert plain["prompt_tokens"] > 600
    assert spec["tokens"] == plain["tokens"]
    s = spec["speculative"]
    assert s["drafted"] > 0 and s["accepted"] == s["drafted"]


def test_draft_refuses_another_vocabulary(pair, tmp_path):
    target, _ = pair
    c = dict(tiny_models.CONFIGS["qwen2"], vocab_size=256)
    t = tiny_models.tensors("qwen2")
    t["model.embed_tokens.weight"] = t["model.embed_tokens.weight"][:256]
    t["lm_head.weight"] = t["lm_head.weight"][:256]
    d = tmp_path / "small"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(c))
    save_file(t, str(d / "model.safetensors"))
    r = run_whale("run", "-m", str(target), "--ids", "1 2 3", "--draft", str(d), check=False)
    assert r.returncode != 0 and b"vocabulary" in r.stderr, r.stderr
    r = run_whale("run", "-m", str(target), "--ids", "1 2 3", "--draft", str(tmp_path / "nothing-here"), check=False)
    assert r.returncode != 0 and b"--draft" in r.stderr
    r = run_whale("run", "-m", str(target), "--ids", "1 2 3", "--draft", "lookup", "--draft-max", "17", check=False)
    assert r.returncode != 0 and b"--draft-max" in r.stderr


# ---- sampling: the acceptance rule keeps the distribution ----------------------------------------

N_SAMPLES = 3000
POSITIONS = 16
TEMPERATURE = 0.5
Z_MAX = 3.72  # one-sided p 1e-4 per position: 2 drafters x 16 positions stay under 0.4% together


def chi2_z(a, b):
    """Two-sample chi-square of count dicts a and b (categories seen fewer than 10 times in all
    pooled into one), as Wilson-Hilferty's z: about standard normal when both samples come from
    one distribution."""
    na, nb = sum(a.values()), sum(b.values())
    big = [k for k in set(a) | set(b) if a[k] + b[k] >= 10]
    rest = (na - sum(a[k] for k in big), nb - sum(b[k] for k in big))
    cells = [(a[k], b[k]) for k in big] + ([rest] if sum(rest) else [])
    chi2 = 0.0
    for x, y in cells:
        tot = x + y
        ex, ey = tot * na / (na + nb), tot * nb / (na + nb)
        chi2 += (x - ex) ** 2 / ex + (y - ey) ** 2 / ey
    k = len(cells) - 1
    if k < 1:
        return 0.0
    return ((chi2 / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))


def sample_many(port, n, seed0):
    """n sampled replies of POSITIONS tokens to one prompt, seeds seed0.. (each server its own
    seeds: the samples must be independent for the test), token by token as their bytes."""
    def one(seed):
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "abab abab abab abab abab"}],
                "max_tokens": POSITIONS, "temperature": TEMPERATURE, "top_p": 1.0, "seed": seed, "logprobs": True}
        st, data = serve_raw(port, "POST", "/v1/chat/completions", json.dumps(body))
        assert st == 200, data
        return [tuple(e["bytes"]) for e in json.loads(data)["choices"][0]["logprobs"]["content"]]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        return list(ex.map(one, range(seed0, seed0 + n)))


def test_sampled_speculation_keeps_the_distribution(served_pair):
    target, weaker = served_pair
    common = ("-m", str(target), "--chat-format", "chatml", "--parallel", "4", "--ctx", "128", "-t", "1",
              "--cache-ram", "0", "--cache-disk", "0", "--queue", "64")
    servers = {}
    try:
        for name, flags in (("plain", ()), ("model", ("--draft", str(weaker))), ("lookup", ("--draft", "lookup"))):
            servers[name] = serve_start(*common, *flags)
        replies = {name: sample_many(port, N_SAMPLES, k * N_SAMPLES) for k, (name, (_, port)) in enumerate(servers.items())}
        mets = {name: metrics(port) for name, (_, port) in servers.items()}
    finally:
        for p, _ in servers.values():
            p.send_signal(signal.SIGTERM)
        for p, _ in servers.values():
            p.wait(timeout=60)
    for name in ("model", "lookup"):
        m = mets[name]
        drafted = m[f'whale_speculative_drafts_total{{drafter="{name}"}}']
        accepted = m[f'whale_speculative_accepted_total{{drafter="{name}"}}']
        print(f"{name}: {accepted:.0f} of {drafted:.0f} drafts accepted")
        assert drafted >= N_SAMPLES // 4 and 0 < accepted < drafted  # both branches of the rule ran
        for pos in range(POSITIONS):
            a = collections.Counter(r[pos] for r in replies["plain"] if len(r) > pos)
            b = collections.Counter(r[pos] for r in replies[name] if len(r) > pos)
            z = chi2_z(a, b)
            print(f"{name} position {pos}: {len(a)} and {len(b)} distinct tokens, z {z:.2f}")
            assert z < Z_MAX, f"{name}: position {pos}'s tokens are not plain sampling's (z {z:.2f})"
    assert mets["plain"]['whale_speculative_drafts_total{drafter="none"}'] == 0


def test_served_draft_equals_greedy_and_reports(served_pair):
    """Concurrent greedy requests on a server with a draft model get the plain server's tokens;
    /metrics reports acceptance and tokens per verifying step for the drafter."""
    target, weaker = served_pair
    common = ("-m", str(target), "--chat-format", "chatml", "--parallel", "3", "--ctx", "256", "-t", "1",
              "--cache-ram", "0", "--cache-disk", "0")
    prompts = ["the rain in spain", "hello there", "sum of one and one", "what now?", "a", "tell me a story"]

    def ask(port, text):
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": text}], "max_tokens": 60, "temperature": 0}
        st, data = serve_raw(port, "POST", "/v1/chat/completions", json.dumps(body))
        assert st == 200, data
        r = json.loads(data)
        return r["choices"][0]["message"]["content"], r["usage"]["completion_tokens"]

    plain, pp = serve_start(*common)
    try:
        spec, sp = serve_start(*common, "--draft", str(weaker), "--draft-max", "3")
    except BaseException:
        plain.kill()
        raise
    try:
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            want = list(ex.map(lambda t: ask(pp, t), prompts))
            got = list(ex.map(lambda t: ask(sp, t), prompts))
        assert got == want
        m = metrics(sp)
        lab = '{drafter="model"}'
        drafted, accepted, steps = (m[f"whale_speculative_{k}{lab}"] for k in ("drafts_total", "accepted_total", "steps_total"))
        assert 0 < accepted < drafted and steps > 0
        assert m[f"whale_speculative_acceptance_ratio{lab}"] == pytest.approx(accepted / drafted, abs=1e-4)
        assert m[f"whale_speculative_tokens_per_step{lab}"] == pytest.approx(1 + accepted / steps, abs=1e-4)
    finally:
        for p in (plain, spec):
            p.send_signal(signal.SIGTERM)
        for p in (plain, spec):
            assert p.wait(timeout=60) == 0
