"""whale train --lora-rank: low-rank adapters on a frozen dense model. Checked the way another tool
would use them: the checkpoint is PEFT's layout, and the base model with the adapters applied by
PEFT's rule, in an independent NumPy forward, has the trainer's val_loss on the validation window;
the base's loss differs (so the adapters are really applied). (Loading in PEFT itself, with torch,
made tests/golden/lora/, which test_lora checks the engine against.) --resume from a middle checkpoint
ends with the same adapter bits as a run never stopped (the optimizer state of the adapters
alone is saved and restored)."""
import json
import re

import numpy as np
import pytest

from conftest import run_whale

QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 512, "hidden_size": 48,
         "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu"}
T = 32


@pytest.fixture(scope="module")
def base(tok, tmp_path_factory):
    """A trained-from-nothing Qwen2 checkpoint (Hugging Face directory), train shards of random
    ids and a validation shard of exactly one window of T + 1 tokens."""
    d = tmp_path_factory.mktemp("lora")
    (d / "config.json").write_text(json.dumps(QWEN2))
    data = d / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    rng.integers(0, 512, 3000).astype("<u4").tofile(data / "train-000.bin")
    rng.integers(0, 512, T + 1).astype("<u4").tofile(data / "val-000.bin")
    run_whale("train", "--config", str(d / "config.json"), "--data", str(data), "--tokenizer", str(tok), "-o",
              str(d / "base"), "--steps", "30", "--batch", "2", "--ctx", str(T), "--lr", "1e-2")
    return d / "base" / "step-000030", data


def lora_train(base, data, out, *extra):
    return run_whale("train", "--from", str(base), "--data", str(data), "-o", str(out), "--lora-rank", "4",
                     "--lora-targets", "q_proj,v_proj,down_proj", "--batch", "2", "--ctx", str(T), "--lr", "2e-2",
                     "--seed", "3", *extra)


PEFT_KEY = re.compile(r"base_model\.model\.(model\.layers\.\d+\.(?:self_attn|mlp)\.(\w+))\.lora_([AB])\.weight")


def reference_loss(weights, adapters, scale, ids):
    """Qwen2ForCausalLM's loss on ids (predicting ids[1:]) in float64 NumPy, written from the
    architecture (RMSNorm, rotate-half RoPE, grouped-query attention with q/k/v biases, SwiGLU), with
    PEFT's LoRA rule for every adapted linear layer: y = W x + b + (lora_alpha / r) * B (A x).
    `adapters` maps a module path (model.layers.N.self_attn.q_proj) to its (A, B)."""
    c = QWEN2
    W = {k: v.astype(np.float64) for k, v in weights.items()}
    n, d, H, KV = len(ids) - 1, c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = d // H

    def lin(x, name, bias=False):
        y = x @ W[name + ".weight"].T + (W[name + ".bias"] if bias else 0)
        if name in adapters:
            A, B = adapters[name]
            y = y + scale * (x @ A.T) @ B.T
        return y

    def norm(x, name):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + c["rms_norm_eps"]) * W[name + ".weight"]

    inv = c["rope_theta"] ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(n)[:, None] * inv[None]
    cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)

    def rope(x):  # x: heads, n, hd
        rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + rot * sin

    x = W["model.embed_tokens.weight"][ids[:n]]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, p + "input_layernorm")
        q = rope(lin(h, p + "self_attn.q_proj", True).reshape(n, H, hd).transpose(1, 0, 2))
        k = rope(lin(h, p + "self_attn.k_proj", True).reshape(n, KV, hd).transpose(1, 0, 2))
        v = lin(h, p + "self_attn.v_proj", True).reshape(n, KV, hd).transpose(1, 0, 2)
        k, v = np.repeat(k, H // KV, 0), np.repeat(v, H // KV, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        o = (a / a.sum(-1, keepdims=True)) @ v
        x = x + lin(o.transpose(1, 0, 2).reshape(n, d), p + "self_attn.o_proj")
        h = norm(x, p + "post_attention_layernorm")
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    logits = norm(x, "model.norm") @ W["lm_head.weight"].T
    m = logits.max(-1)
    lse = np.log(np.exp(logits - m[:, None]).sum(-1)) + m
    return float(np.mean(lse - logits[np.arange(n), ids[1:]]))


def test_adapters_follow_peft_with_the_trainers_loss(base, tmp_path):
    """The adapter checkpoint is PEFT's layout (adapter_config.json, lora_A/lora_B under PEFT's key
    names, shapes r x in and out x r), and the loss of the base with those adapters applied by
    PEFT's rule, computed independently here, equals the trainer's val_loss; the base alone differs."""
    from safetensors.numpy import load_file
    ck, data = base
    p = lora_train(ck, data, tmp_path / "run", "--steps", "12", "--eval-every", "12")
    assert "LoRA rank 4, alpha 8 on q_proj,v_proj,down_proj" in p.stderr.decode()
    out = tmp_path / "run" / "step-000012"
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    conf = json.loads((out / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == 4 and conf["lora_alpha"] == 8
    assert sorted(conf["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    val = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]["val_loss"]

    weights = load_file(str(ck / "model.safetensors"))
    pairs = {}
    for key, t in load_file(str(out / "adapter_model.safetensors")).items():
        m = PEFT_KEY.fullmatch(key)
        assert m and m.group(2) in conf["target_modules"] and m.group(1) + ".weight" in weights, key
        pairs.setdefault(m.group(1), {})[m.group(3)] = t.astype(np.float64)
    assert len(pairs) == 3 * QWEN2["num_hidden_layers"]
    adapters = {}
    for name, ab in pairs.items():
        out_dim, in_dim = weights[name + ".weight"].shape
        assert ab["A"].shape == (4, in_dim) and ab["B"].shape == (out_dim, 4), (name, ab["A"].shape, ab["B"].shape)
        adapters[name] = (ab["A"], ab["B"])

    ids = np.fromfile(data / "val-000.bin", "<u4").astype(np.int64)
    lora_loss = reference_loss(weights, adapters, conf["lora_alpha"] / conf["r"], ids)
    base_loss = reference_loss(weights, {}, 0.0, ids)
    assert abs(lora_loss - val) < 1e-4 * max(1.0, abs(val)), (lora_loss, val)
    assert abs(lora_loss - base_loss) > 1e-3, (lora_loss, base_loss)


def test_resume_gives_the_same_adapters(base, tmp_path):
    import shutil
    from safetensors.numpy import load_file
    ck, data = base
    lora_train(ck, data, tmp_path / "whole", "--steps", "8")
    lora_train(ck, data, tmp_path / "cut", "--steps", "8", "--save-every", "4")
    shutil.rmtree(tmp_path / "cut" / "step-000008")
    lora_train(ck, data, tmp_path / "cut", "--steps", "8", "--save-every", "4", "--resume")
    a = load_file(str(tmp_path / "whole" / "step-000008" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "step-000008" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) == 12
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(np.abs(a[k]).max() > 0 for k in a if "lora_B" in k)  # B moved from its zero start


def test_lora_refusals(base, tmp_path):
    ck, data = base
    p = run_whale("train", "--init", "qwen2:test", "--data", str(data), "--tokenizer", str(ck / "tokenizer.json"),
                  "-o", str(tmp_path / "r"), "--steps", "1", "--lora-rank", "4", check=False)
    assert p.returncode == 2 and "--lora-rank needs --from" in p.stderr.decode()
    p = run_whale("train", "--from", str(ck), "--data", str(data), "-o", str(tmp_path / "r2"), "--steps", "1",
                  "--lora-rank", "4", "--lora-targets", "q_proj,lm_head", check=False)
    assert p.returncode == 2 and "lm_head" in p.stderr.decode()
    for bad, why in ((["--lora-rank", "5000"], "--lora-rank must be 1 to 1024"),
                     (["--lora-rank", "0"], "--lora-rank must be 1 to 1024"),  # not a silent full fine-tune
                     (["--lora-rank", "4", "--lora-alpha", "-3"], "--lora-alpha must be above 0"),
                     (["--lora-alpha", "8"], "need --lora-rank")):
        p = run_whale("train", "--from", str(ck), "--data", str(data), "-o", str(tmp_path / "r3"), "--steps", "1",
                      *bad, check=False)
        assert p.returncode == 2 and why in p.stderr.decode(), (bad, p.stderr.decode())
