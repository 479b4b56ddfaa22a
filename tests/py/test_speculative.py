"""DeepSeek-V3's multi-token prediction (MTP) module and self-speculative decoding with it.

1. The module's logits against the reference (tests/golden/make_golden.py: transformers'
   DeepseekV3DecoderLayer with the checkpoint's layer-N weights, plus the MTP glue written out in
   torch) on the tiny V3 model with an MTP layer: after-norm and before-norm hidden states, all
   rows at once and token by token through the module's own latent cache.
2. `whale run --speculative mtp` returns exactly the plain greedy tokens, on models where the
   draft is always right (acceptance 1), sometimes right, and almost never right, and when the
   context is too short to verify a draft.
3. `whale serve --speculative mtp`: the scheduler speculates per slot for greedy requests; the
   replies of concurrent requests equal a plain server's token for token (with log probabilities
   and finish reasons), /metrics counts drafts and accepted ones, sampled requests speculate
   (JSON mode does not), and a model without the module is refused with a clear message."""
import concurrent.futures
import json
import pathlib
import signal
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import REPO, run_whale
from test_serve import raw as serve_raw, start as serve_start

GOLDEN = REPO / "tests" / "golden"
sys.path.insert(0, str(GOLDEN))
import tiny_models  # noqa: E402

F32_TOL = 1e-4  # max-abs logit error in F32 (observed ~4e-6)
ARCH = "deepseek_v3_mtp"


@pytest.fixture(scope="module")
def golden():
    return json.loads((GOLDEN / "tiny_logits.json").read_text())


@pytest.fixture(scope="module")
def mtp_model(tmp_path_factory):
    return tiny_models.write(ARCH, tmp_path_factory.mktemp("mtp") / ARCH)


def logits(model, ids, tmp_path, *flags):
    raw = tmp_path / "l.f32"
    run_whale("logits", "-m", str(model), "--ids", " ".join(map(str, ids)), "--raw", str(raw), "--top", "1", *flags)
    return np.fromfile(raw, dtype=np.float32)


@pytest.mark.parametrize("flags,key", [
    ((), ARCH),
    (("--mtp",), ARCH + "_draft"),
    (("--mtp", "--step", "1"), ARCH + "_draft"),
    (("--mtp", "--mla-naive"), ARCH + "_draft"),
    (("--mtp-prenorm",), ARCH + "_draft_prenorm"),
])
def test_mtp_logits_match_reference(golden, mtp_model, tmp_path, flags, key):
    ref = np.array(golden["models"][key])
    got = logits(mtp_model, golden["prompt"], tmp_path, *flags).reshape(ref.shape)
    err = float(np.abs(got - ref).max())
    print(f"{key} {' '.join(flags)}: max-abs {err:.2e}")
    assert err < F32_TOL


def test_mtp_after_and_before_norm_differ(golden):
    """The two readings of the hidden state are really different inputs (so the test above
    can tell them apart)."""
    a, b = (np.array(golden["models"][ARCH + k]) for k in ("_draft", "_draft_prenorm"))
    assert np.abs(a - b).max() > 0.1


def speculative_model(d, alpha, beta, seed=0):
    """The tiny MTP model rearranged so that its draft is predictable: the main model's attention
    and FFN outputs scaled by alpha (alpha 0: the next token depends on the current one only),
    the MTP block's outputs zeroed and eh_proj = [I | 0] + beta * noise, so the module computes
    the main model's bigram guess for the token after next. alpha 0, beta 0: every draft is
    right; larger values: fewer."""
    t = tiny_models.tensors(ARCH)
    c = tiny_models.CONFIGS[ARCH]
    L, E = c["num_hidden_layers"], c["hidden_size"]
    rng = np.random.default_rng(seed)
    for k in list(t):
        if k.endswith(("o_proj.weight", "down_proj.weight")):
            t[k] = t[k] * (alpha if int(k.split(".")[2]) < L else 0.0)
    p = f"model.layers.{L}."
    eye = np.concatenate([np.eye(E), np.zeros((E, E))], 1)
    t[p + "eh_proj.weight"] = (eye + beta * rng.standard_normal((E, 2 * E))).astype(np.float32)
    t[p + "enorm.weight"] = t["model.norm.weight"].copy()
    t[p + "shared_head.norm.weight"] = np.ones(E, np.float32)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(c))
    save_file(t, str(d / "model.safetensors"))
    return d


def generate(model, *flags, n=100, ids="1 17 200 5 99 3 250"):
    out = run_whale("run", "-m", str(model), "--ids", ids, "--temp", "0", "-n", str(n), "--json", *flags)
    return json.loads(out.stdout)


@pytest.mark.parametrize("alpha,beta,rate", [(0.0, 0.0, (1.0, 1.0)), (0.3, 0.0, (0.2, 0.8)), (None, None, (0.0, 0.5))])
def test_speculative_equals_greedy(mtp_model, tmp_path, alpha, beta, rate):
    model = mtp_model if alpha is None else speculative_model(tmp_path / "m", alpha, beta)
    plain = generate(model)
    spec = generate(model, "--speculative", "mtp")
    assert len(plain["tokens"]) == 100
    assert spec["tokens"] == plain["tokens"]
    s = spec["speculative"]
    print(f"alpha {alpha}: {s['accepted']} of {s['drafted']} drafts accepted")
    assert rate[0] <= s["acceptance_rate"] <= rate[1]
    # every main pass yields one token, plus one per accepted draft; every pass drafts but the
    # prompt's (its token comes with the prefill) and a last one with room for one token only
    assert s["drafted"] + s["accepted"] >= 100 - 2


def test_speculative_at_the_end_of_the_context(tmp_path):
    """With no room left to verify a draft, the step falls back to one token; output unchanged."""
    model = speculative_model(tmp_path / "m", 0.3, 0.0)
    for ctx in ("16", "17"):
        plain = generate(model, "--ctx", ctx, n=0)
        spec = generate(model, "--ctx", ctx, "--speculative", "mtp", n=0)
        assert spec["tokens"] == plain["tokens"] and len(plain["tokens"]) == int(ctx) - 7


def test_speculative_needs_mtp(mtp_model, tmp_path):
    tiny_v2 = tiny_models.write("deepseek_v2", tmp_path / "v2")
    r = run_whale("run", "-m", str(tiny_v2), "--ids", "1 2 3", "--temp", "0", "--speculative", "mtp", check=False)
    assert r.returncode != 0 and b"no MTP module" in r.stderr
    r = run_whale("run", "-m", str(mtp_model), "--ids", "1 2 3", "--speculative", "eagle", check=False)
    assert r.returncode != 0 and b"takes 'mtp'" in r.stderr
    # sampled requests speculate too
    r = json.loads(run_whale("run", "-m", str(mtp_model), "--ids", "1 2 3", "--temp", "0.7", "-n", "20", "--json",
                             "--speculative", "mtp").stdout)
    assert len(r["tokens"]) == 20 and r["speculative"]["drafted"] > 0


def test_mtp_through_gguf(golden, mtp_model, tmp_path):
    """`whale convert --mtp` keeps the module (block_count counts it, nextn_predict_layers says so,
    the embedding and head copies equal to the main ones are left out) and Whale runs it from the
    GGUF as from the checkpoint; without --mtp the file has no module, as llama.cpp's converter
    writes it; speculation on a Q8_0 file still equals plain greedy."""
    gguf = pytest.importorskip("gguf")
    f32 = tmp_path / "mtp.gguf"
    run_whale("convert", str(mtp_model), str(f32), "--type", "f32", "--mtp")
    r = gguf.GGUFReader(str(f32))
    assert r.fields["deepseek2.block_count"].contents() == 3 and r.fields["deepseek2.nextn_predict_layers"].contents() == 1
    names = {t.name for t in r.tensors}
    assert "blk.2.nextn.eh_proj.weight" in names and "blk.2.ffn_gate_exps.weight" in names
    assert "blk.2.nextn.embed_tokens.weight" not in names and "blk.2.nextn.shared_head_head.weight" not in names
    for flags, key in (((), ARCH), (("--mtp",), ARCH + "_draft")):
        ref = np.array(golden["models"][key])
        got = logits(f32, golden["prompt"], tmp_path, *flags).reshape(ref.shape)
        assert float(np.abs(got - ref).max()) < F32_TOL
    plain_file = tmp_path / "plain.gguf"
    run_whale("convert", str(mtp_model), str(plain_file), "--type", "f32")
    assert "blk.2.nextn.eh_proj.weight" not in {t.name for t in gguf.GGUFReader(str(plain_file)).tensors}
    r = run_whale("logits", "-m", str(plain_file), "--ids", "1 2 3", "--mtp", check=False)
    assert r.returncode != 0 and b"no MTP module" in r.stderr
    q8 = tmp_path / "mtp-q8.gguf"
    run_whale("quantize", str(mtp_model), str(q8), "--type", "q8_0", "--mtp")
    assert generate(q8, "--speculative", "mtp")["tokens"] == generate(q8)["tokens"]
    r = run_whale("convert", str(tiny_models.write("deepseek_v3", tmp_path / "v3")), str(tmp_path / "x.gguf"), "--mtp",
                  check=False)
    assert r.returncode != 0 and b"no multi-token prediction module" in r.stderr


# ---- the server: speculation as a per-slot mode of the scheduler --------------------------------

def byte_level_tokenizer(d, vocab):
    """A tokenizer.json (and tokenizer_config.json) for a tiny checkpoint, so that `whale serve` can
    speak text to it: GPT-2's byte-level alphabet (ids 0..255), letter-pair merges up to
    vocab - 3, then ChatML's markers and an end-of-text token as special tokens (the last 3 ids),
    so the vocabulary matches the model's output rows exactly. The words are meaningless; the
    tests compare ids."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, k = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + k)
            k += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    vocab_map = {byte_char[b]: b for b in range(256)}
    letters = "etaoinshrdlucmfw" + byte_char[ord(" ")]
    merges = []
    for a in letters:
        for b in letters:
            if len(vocab_map) == vocab - 3:
                break
            if a + b not in vocab_map:
                vocab_map[a + b] = len(vocab_map)
                merges.append(f"{a} {b}")
    added = [{"id": vocab - 3 + i, "content": c, "special": True, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False} for i, c in enumerate(("<|im_start|>", "<|im_end|>", "<|endoftext|>"))]
    (d / "tokenizer.json").write_text(json.dumps({
        "version": "1.0", "added_tokens": added, "normalizer": None,
        # no regex split: pretokenize.c's pcre2 match data is one per tokenizer, shared by the
        # server's connection threads (a race that hung a server here with concurrent requests)
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab_map, "merges": merges}}))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "add_bos_token": False}))
    return d


def chat(port, text, n, temperature=0.0, logprobs=False, model="deepseek-chat"):
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": n,
            "temperature": temperature}
    if logprobs:
        body.update(logprobs=True, top_logprobs=2)
    st, data = serve_raw(port, "POST", "/v1/chat/completions", json.dumps(body))
    assert st == 200, data
    return json.loads(data)


def reply_tokens(r):
    """What identifies the reply token by token: each entry's bytes and log probabilities when the
    request asked for them, else the text; with the finish reason and the token count."""
    c = r["choices"][0]
    lp = c.get("logprobs")
    if lp:
        body = [(tuple(e["bytes"]), e["logprob"], tuple((t["token"], t["logprob"]) for t in e["top_logprobs"]))
                for e in lp["content"]]
    else:
        body = c["message"]["content"]
    return body, c["finish_reason"], r["usage"]["completion_tokens"]


DRAFTS = 'whale_speculative_drafts_total{{drafter="{}"}}'
ACCEPTED = 'whale_speculative_accepted_total{{drafter="{}"}}'


def metrics(port):
    """/metrics as {name{labels}: value}, the model label dropped (these servers serve one model)."""
    from test_serve import metrics_values
    return metrics_values(serve_raw(port, "GET", "/metrics")[1].decode())


PROMPTS = ["the rain in spain", "hello there", "sum of one and one", "what now?", "a", "tell me a story about whales"]


def serve_both(model, ctx=256):
    """The same checkpoint served plainly and with --speculative mtp: (plain process, port, speculative process, port)."""
    common = ("-m", str(model), "--chat-format", "chatml", "--parallel", "3", "--ctx", str(ctx), "-t", "1",
              "--cache-ram", "0", "--cache-disk", "0")
    plain, pp = serve_start(*common)
    try:
        spec, sp = serve_start(*common, "--speculative", "mtp")
    except BaseException:
        plain.kill()
        raise
    return plain, pp, spec, sp


def stop(*procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        assert p.wait(timeout=60) == 0


@pytest.mark.parametrize("kind", ["predictable", "plain", "context"])
def test_served_speculation_equals_greedy(tmp_path, kind):
    """Concurrent greedy requests (3 slots, 6 requests: several batches mix speculating slots,
    prefills and finished ones) on `--speculative mtp` give the same tokens, log probabilities,
    finish reasons and counts as the same requests on a server without it; drafts are made (on the
    predictable model some accepted and some rejected); a sampled request works beside them. "context": a 128-token context that every reply runs into (the
    last steps have no room for a draft)."""
    d = tmp_path / kind
    if kind != "plain":
        speculative_model(d, 0.3, 0.0)
    else:
        tiny_models.write(ARCH, d)
    byte_level_tokenizer(d, tiny_models.VOCAB)
    plain, pp, spec, sp = serve_both(d, 128 if kind == "context" else 256)
    try:
        jobs = [(p, 127 if kind == "context" else 60 + 8 * i, i % 2 == 1) for i, p in enumerate(PROMPTS)]
        with concurrent.futures.ThreadPoolExecutor(len(jobs) + 1) as ex:
            want = list(ex.map(lambda j: reply_tokens(chat(pp, j[0], j[1], logprobs=j[2])), jobs))
            hot = ex.submit(chat, sp, "warm and sampled", 40, 0.8)
            got = list(ex.map(lambda j: reply_tokens(chat(sp, j[0], j[1], logprobs=j[2])), jobs))
            sampled = hot.result()
        for (p, n, _), w, g in zip(jobs, want, got):
            assert g == w, f"{kind}: {p!r} differs"
        lengths = [w[2] for w in want]
        print(f"{kind}: completion tokens {lengths}, finish {[w[1] for w in want]}")
        assert sum(lengths) >= 150  # the replies are long enough to speculate over
        assert sampled["choices"][0]["finish_reason"] in ("stop", "length") and sampled["usage"]["completion_tokens"] > 0
        m = metrics(sp)
        drafts, accepted = m[DRAFTS.format("mtp")], m[ACCEPTED.format("mtp")]
        print(f"{kind}: {accepted:.0f} of {drafts:.0f} drafts accepted")
        assert drafts > 0
        if kind != "plain":  # the random model's drafts are (almost) never right: `whale run` gets 0 of 100
            assert 0 < accepted < drafts
        assert metrics(pp)[DRAFTS.format("none")] == 0
    finally:
        stop(plain, spec)


def test_served_sampled_requests_speculate(tmp_path):
    """Sampled requests draft too (their acceptance rule keeps the distribution: test_draft.py
    checks it statistically); a JSON-mode request does not (its constraint decides the tokens)."""
    d = byte_level_tokenizer(speculative_model(tmp_path / "m", 0.3, 0.0), tiny_models.VOCAB)
    p, port = serve_start("-m", str(d), "--chat-format", "chatml", "--parallel", "2", "--ctx", "256", "-t", "1",
                          "--speculative", "mtp")
    try:
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hello, in json"}], "max_tokens": 20,
                "response_format": {"type": "json_object"}}
        assert serve_raw(port, "POST", "/v1/chat/completions", json.dumps(body))[0] == 200
        assert metrics(port)[DRAFTS.format("mtp")] == 0
        r = chat(port, "hello", 40, temperature=0.9)
        assert r["usage"]["completion_tokens"] > 0
        assert metrics(port)[DRAFTS.format("mtp")] > 0
    finally:
        stop(p)


def test_serve_speculative_needs_mtp(tmp_path):
    v3 = byte_level_tokenizer(tiny_models.write("deepseek_v3", tmp_path / "v3"), tiny_models.VOCAB)
    r = run_whale("serve", "-m", str(v3), "--chat-format", "chatml", "--port", "1", "--speculative", "mtp", check=False)
    assert r.returncode != 0 and b"this model has no MTP module (DeepSeek-V3/R1 checkpoints carry one)" in r.stderr
    r = run_whale("serve", "-m", str(v3), "--speculative", "eagle", check=False)
    assert r.returncode != 0 and b"'mtp'" in r.stderr
