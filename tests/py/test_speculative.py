"""DeepSeek-V3's multi-token prediction (MTP) module and self-speculative decoding with it.

1. The module's logits against the reference (tests/golden/make_golden.py: transformers'
   DeepseekV3DecoderLayer with the checkpoint's layer-N weights, plus the MTP glue written out in
   torch) on the tiny V3 model with an MTP layer: after-norm and before-norm hidden states, all
   rows at once and token by token through the module's own latent cache.
2. `whale run --speculative mtp` returns exactly the plain greedy tokens, on models where the
   draft is always right (acceptance 1), sometimes right, and almost never right, and when the
   context is too short to verify a draft."""
import json
import pathlib
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import REPO, run_whale

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
    # every main pass yields one token, plus one per accepted draft
    assert s["drafted"] + s["accepted"] >= 100 - 1


def test_speculative_at_the_end_of_the_context(tmp_path):
    """With no room left to verify a draft, the step falls back to one token; output unchanged."""
    model = speculative_model(tmp_path / "m", 0.3, 0.0)
    for ctx in ("16", "17"):
        plain = generate(model, "--ctx", ctx, n=0)
        spec = generate(model, "--ctx", ctx, "--speculative", "mtp", n=0)
        assert spec["tokens"] == plain["tokens"] and len(plain["tokens"]) == int(ctx) - 7


def test_speculative_needs_mtp_and_greedy(mtp_model, tmp_path):
    tiny_v2 = tiny_models.write("deepseek_v2", tmp_path / "v2")
    r = run_whale("run", "-m", str(tiny_v2), "--ids", "1 2 3", "--temp", "0", "--speculative", "mtp", check=False)
    assert r.returncode != 0 and b"no MTP module" in r.stderr
    r = run_whale("run", "-m", str(mtp_model), "--ids", "1 2 3", "--temp", "0.7", "--speculative", "mtp", check=False)
    assert r.returncode != 0 and b"--temp 0" in r.stderr
    r = run_whale("run", "-m", str(mtp_model), "--ids", "1 2 3", "--speculative", "eagle", check=False)
    assert r.returncode != 0 and b"takes 'mtp'" in r.stderr


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
