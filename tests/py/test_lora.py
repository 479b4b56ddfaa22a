"""LoRA adapters (PEFT layout) at inference and merged (`--lora`, `whale merge`), against
transformers + PEFT: goldens made by tests/golden/make_lora_goldens.py (the adapters are PEFT's
own save_pretrained files under tests/golden/lora/, the tiny base models are rebuilt from
tiny_models.py's numpy seed, so no torch is needed here).

1. Whale with --lora gives PEFT's logits at every position of a fixed prompt: F32 base within
   F32_TOL, F16 base within F16_TOL, Q8_0 base within Q8_0_TOL; an adapter moves the logits far
   more than that (it is really applied), for the plain scale alpha/r, rsLoRA's alpha/sqrt(r)
   on two modules, and Llama's GGUF q/k row order.
2. The LoRA forward equals the merged model's: `whale merge --type f32` on an F32 base is within
   MERGE_F32_TOL of `--lora`, f16 within F16_TOL, q8_0 (the default) within Q8_0_TOL (a Q8_0
   base merged as Q8_0: Q8_0_TWICE_TOL).
3. Batch invariance with an adapter: the prompt decoded alone or beside 3 or 7 other sequences
   gives the same bits; concurrent requests to `whale serve --lora` get the same tokens as the
   same requests one at a time; the context cache keeps an adapted model's blocks apart from
   its base's.
4. Malformed adapters give a clear error and exit status 1 (never a crash) in run, logits,
   merge and serve."""
import concurrent.futures
import json
import pathlib
import shutil
import signal
import sys

import numpy as np
import pytest

from conftest import REPO, run_whale

GOLDEN = REPO / "tests" / "golden"
sys.path.insert(0, str(GOLDEN))
sys.path.insert(0, str(REPO / "tests" / "py"))
import tiny_models  # noqa: E402

F32_TOL = 1e-4        # max-abs logit error, F32 base + F32 adapter (observed ~3e-6)
F16_TOL = 2e-2        # F16 base (or merged matrices rounded to F16): observed ~3e-3
Q8_0_TOL = 0.15       # Q8_0 weights and 8-bit activations, as tests/py/test_model_golden.py
MERGE_F32_TOL = 1e-4  # W x + B (A x) against (W + B A) x in float: observed ~2e-6
Q8_0_TWICE_TOL = 0.3  # a Q8_0 base merged as Q8_0 is rounded twice (the base's blocks, then W + B A's),
                      # against --lora on the once-rounded base: observed ~0.2, twice the single error
MOVED = 0.5           # an adapter moves some logit by more than this from the base's

ADAPTERS = {"qwen2": "qwen2", "qwen2_rs": "qwen2", "llama": "llama"}


@pytest.fixture(scope="module")
def golden():
    g = json.loads((GOLDEN / "lora_logits.json").read_text())
    assert g["magic"] == "whale-lora-golden" and g["version"] == 1
    return g


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """The tiny base models as checkpoints and as F32, F16 and Q8_0 GGUF files."""
    root = tmp_path_factory.mktemp("lora-bases")
    out = {}
    for arch in ("qwen2", "llama"):
        d = tiny_models.write(arch, root / arch)
        out[arch, "safetensors"] = d
        for form in ("f32", "f16", "q8_0"):
            g = root / f"{arch}-{form}.gguf"
            run_whale("convert", str(d), str(g), "--type", form)
            out[arch, form] = g
    return out


def logits(model, tmp_path, *flags, tag="l"):
    raw = tmp_path / f"{tag}.f32"
    run_whale("logits", "-m", str(model), "--ids", " ".join(map(str, tiny_models.PROMPT)), "--raw", str(raw),
              "--top", "1", *flags)
    return np.fromfile(raw, dtype=np.float32).reshape(len(tiny_models.PROMPT), tiny_models.VOCAB)


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("form", ["safetensors", "f32", "f16", "q8_0"])
def test_lora_matches_peft(golden, bases, name, form, tmp_path):
    arch = ADAPTERS[name]
    ref = np.array(golden["adapters"][name])
    base = np.array(golden["base"][arch])
    got = logits(bases[arch, form], tmp_path, "--lora", str(GOLDEN / "lora" / name))
    err = float(np.abs(got - ref).max())
    moved = float(np.abs(ref - base).max())
    print(f"{name} on {form}: max-abs logit error {err:.2e} (the adapter moves logits by up to {moved:.2f})")
    assert moved > MOVED
    assert err < {"safetensors": F32_TOL, "f32": F32_TOL, "f16": F16_TOL, "q8_0": Q8_0_TOL}[form]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("base_form,mtype,tol", [("f32", "f32", MERGE_F32_TOL), ("f32", "f16", F16_TOL),
                                                 ("f32", "q8_0", Q8_0_TOL), ("q8_0", "q8_0", Q8_0_TWICE_TOL)])
def test_lora_equals_merged(bases, arch, base_form, mtype, tol, tmp_path):
    base, adapter = bases[arch, base_form], GOLDEN / "lora" / arch
    merged = tmp_path / "merged.gguf"
    r = run_whale("merge", "-m", str(base), "--lora", str(adapter), "-o", str(merged), "--type", mtype)
    assert "wrote" in r.stderr.decode()
    with_lora = logits(base, tmp_path, "--lora", str(adapter), tag="lora")
    got = logits(merged, tmp_path, tag="merged")
    err = float(np.abs(got - with_lora).max())
    print(f"{arch}: {base_form} base, merged as {mtype}: max-abs logit difference from --lora {err:.2e}")
    assert err < tol
    info = run_whale("info", str(merged), "--tensors").stdout.decode()
    want = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}[mtype]
    for line in info.splitlines():  # the changed matrices in the asked type, the rest as they were
        if ".attn_q.weight" in line or ".ffn_down.weight" in line:
            assert want in line, line
        if "token_embd" in line:
            assert {"f32": "F32", "q8_0": "Q8_0"}[base_form] in line, line


@pytest.mark.parametrize("form", ["safetensors", "q8_0"])
def test_lora_does_not_depend_on_the_batch(bases, form, tmp_path):
    adapter = str(GOLDEN / "lora" / "qwen2")
    alone = logits(bases["qwen2", form], tmp_path, "--lora", adapter, "--step", "1", tag="alone")
    for n in (3, 7):
        got = logits(bases["qwen2", form], tmp_path, "--lora", adapter, "--batch-with", str(n), tag=f"with{n}")
        assert float(np.abs(got - alone).max()) == 0.0


def test_served_lora_requests_alone_equal_batched(tmp_path):
    """`whale serve -m BASE --lora ADAPTER --name adapted` serves both, each under its name, with
    3 slots: 5 greedy requests to the adapter one at a time, then all at once (the batches mix
    prefills and decodes of several requests), give the same tokens and log probabilities; and
    they differ from the base model's, asked by its name on the same server (the adapter is
    applied to its model only)."""
    from test_serve import start as serve_start
    from test_speculative import byte_level_tokenizer, chat, reply_tokens

    d = byte_level_tokenizer(tiny_models.write("qwen2", tmp_path / "qwen2"), tiny_models.VOCAB)
    prompts = ["the rain in spain", "hello there", "sum of one and one", "what now?", "tell me about whales"]
    p, port = serve_start("-m", str(d), "--chat-format", "chatml", "--lora", str(GOLDEN / "lora" / "qwen2"), "--name",
                          "adapted", "--parallel", "3", "--ctx", "256", "-t", "1", "--cache-ram", "0", "--cache-disk", "0")
    try:
        alone = [reply_tokens(chat(port, q, 40, logprobs=True, model="adapted")) for q in prompts]
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as ex:
            batched = list(ex.map(lambda q: reply_tokens(chat(port, q, 40, logprobs=True, model="adapted")), prompts))
        base = reply_tokens(chat(port, prompts[0], 40, logprobs=True, model="qwen2"))
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    assert batched == alone
    assert base != alone[0]


def test_run_and_info_with_lora(bases):
    r = run_whale("run", "-m", str(bases["qwen2", "safetensors"]), "--lora", str(GOLDEN / "lora" / "qwen2"),
                  "--ids", "1 17 200", "-n", "5", "--temp", "0", "--json")
    assert len(json.loads(r.stdout)["tokens"]) == 5
    info = run_whale("info", str(GOLDEN / "lora" / "qwen2_rs")).stdout.decode()
    assert "rank                     2" in info and "alpha / sqrt(r), rsLoRA" in info and "q_proj" in info


# ---- malformed adapters: a clear error, exit status 1, no crash --------------------------------

def broken(tmp_path, name, mutate):
    d = tmp_path / name
    shutil.copytree(GOLDEN / "lora" / "qwen2", d)
    mutate(d)
    return d


def edit_config(**kv):
    def f(d):
        c = json.loads((d / "adapter_config.json").read_text())
        c.update(kv)
        (d / "adapter_config.json").write_text(json.dumps(c))
    return f


def edit_tensors(fn):
    def f(d):
        from safetensors.numpy import load_file, save_file
        t = load_file(str(d / "adapter_model.safetensors"))
        fn(t)
        save_file(t, str(d / "adapter_model.safetensors"))
    return f


L0 = "base_model.model.model.layers.0."
CASES = {
    "missing_b": (edit_tensors(lambda t: t.pop(L0 + "self_attn.q_proj.lora_B.weight")), "has lora_A but no lora_B"),
    "wrong_shape": (edit_tensors(lambda t: t.update({L0 + "self_attn.k_proj.lora_B.weight": np.zeros((64, 4), np.float32)})),
                    "the adapter is for a [64 x 64] matrix, the model's is [32 x 64]"),
    "wrong_rank": (edit_tensors(lambda t: t.update({L0 + "mlp.up_proj.lora_A.weight": np.zeros((3, 64), np.float32)})),
                   "not [r, n_in] for rank 4"),
    "layer_past_model": (edit_tensors(lambda t: t.update({
        "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight": np.zeros((4, 64), np.float32),
        "base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight": np.zeros((64, 4), np.float32)})),
        "the model has 2 layers"),
    "unknown_module": (edit_tensors(lambda t: t.update({
        "base_model.model.model.embed_tokens.lora_A.weight": np.zeros((4, 384), np.float32),
        "base_model.model.model.embed_tokens.lora_B.weight": np.zeros((64, 4), np.float32)})),
        "module 'model.embed_tokens' is not one Whale applies LoRA to"),
    "unknown_target": (edit_config(target_modules=["q_proj", "lm_head"]), "target module 'lm_head'"),
    "bad_json": (lambda d: (d / "adapter_config.json").write_text('{"r": 4, "lora_alpha": '), "not JSON"),
    "rank_0": (edit_config(r=0), "\"r\" must be an integer rank"),
    "dora": (edit_config(use_dora=True), "DoRA"),
    "truncated": (lambda d: (d / "adapter_model.safetensors").write_bytes(
        (d / "adapter_model.safetensors").read_bytes()[:5000]), "adapter_model.safetensors"),
    "no_config": (lambda d: (d / "adapter_config.json").unlink(), "no adapter_config.json"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_adapter(bases, case, tmp_path):
    mutate, want = CASES[case]
    d = broken(tmp_path, case, mutate)
    base = bases["qwen2", "f32"]
    for args in (("logits", "-m", str(base), "--ids", "1 2 3"),
                 ("run", "-m", str(base), "--ids", "1 2 3", "-n", "2"),
                 ("merge", "-m", str(base), "-o", str(tmp_path / "out.gguf"))):
        r = run_whale(*args, "--lora", str(d), check=False)
        err = r.stderr.decode()
        assert r.returncode == 1, f"{args[0]}: status {r.returncode}: {err}"
        if args[0] == "merge" and case == "wrong_shape":  # merge names the GGUF tensor
            want_here = "blk.0.attn_k.weight is [32 x 64]"
        elif args[0] == "merge" and case in ("layer_past_model",):
            want_here = "the base has no tensor blk.7.attn_q.weight"
        elif args[0] == "merge" and case in ("unknown_module", "unknown_target"):
            want_here = "is not one Whale merges"
        else:
            want_here = want
        if want_here:
            assert want_here in err, f"{args[0]}: {err}"
        assert not (tmp_path / "out.gguf").exists()


def test_deepseek_refused(tmp_path):
    d = tiny_models.write("deepseek_v2", tmp_path / "v2")
    r = run_whale("logits", "-m", str(d), "--ids", "1 2", "--lora", str(GOLDEN / "lora" / "qwen2"), check=False)
    assert r.returncode == 1 and "not supported yet" in r.stderr.decode()


def test_context_cache_keeps_adapted_blocks_apart(tmp_path):
    """The disk context cache is keyed by the model's identity: blocks a base model wrote are not
    used for the same prompt with an adapter (their keys and values differ), and the adapted run
    equals one without the cache."""
    import os
    import subprocess

    from conftest import WHALE
    from test_speculative import byte_level_tokenizer

    d = byte_level_tokenizer(tiny_models.write("qwen2", tmp_path / "qwen2"), tiny_models.VOCAB)
    env = dict(os.environ, WHALE_HOME=str(tmp_path / "home"))
    ids = " ".join(str(i % 300 + 1) for i in range(150))  # two whole 64-token blocks and some

    def run(*flags):
        p = subprocess.run([str(WHALE), "run", "-m", str(d), "--ids", ids, "-n", "8", "--temp", "0", "--json", "-t", "1",
                            *flags], env=env, capture_output=True, check=True)
        return json.loads(p.stdout)

    adapter = str(GOLDEN / "lora" / "qwen2")
    run()
    assert run()["prompt_cache_hit_tokens"] >= 128  # the cache is on and the base's blocks are there
    cold = run("--lora", adapter, "--no-cache")
    adapted = run("--lora", adapter)
    assert adapted["prompt_cache_hit_tokens"] == 0
    assert adapted["tokens"] == cold["tokens"]
    assert run("--lora", adapter)["prompt_cache_hit_tokens"] >= 128  # its own blocks are found again
