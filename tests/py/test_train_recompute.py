"""whale train --recompute (activation recomputation): each layer's forward runs again before its
backward from the kept input, so the run must end with exactly the bytes of a run without it
(parameters and optimizer state), while the start-up summary's memory figure falls."""
import json
import re

import pytest

from conftest import run_whale, shared_file


# A DeepSeek-V3 shape deep enough that layers of one kind share the recomputed activations
# (deepseek2:test has one dense and one MoE layer, which recomputation would not touch)
DEEP_V3 = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 512,
           "hidden_size": 64, "intermediate_size": 160, "moe_intermediate_size": 32, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": None, "kv_lora_rank": 32,
           "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8,
           "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 2,
           "routed_scaling_factor": 2.5, "norm_topk_prob": True, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
           "num_nextn_predict_layers": 1, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
           "hidden_act": "silu", "max_position_embeddings": 4096}


def train(shards, out, shape, *extra):
    if shape == "deep-v3":
        cfg = out.parent / "deep-v3.json"
        cfg.write_text(json.dumps(DEEP_V3))
        shape_args = ("--config", str(cfg), "--tokenizer", str(shards.parent / "tokenizer.json"))
    else:
        shape_args = ("--init", shape)
    p = run_whale("train", *shape_args, "--data", str(shards), "-o", str(out), "--batch", "3", "--ctx", "40",
                  "--steps", "3", "--eval-every", "3", "--bias-update", "0.01", *extra)
    mem = re.search(r"about ([0-9.]+) (KiB|MiB|GiB) of memory", p.stderr.decode())
    assert mem, p.stderr
    scale = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[mem.group(2)]
    return float(mem.group(1)) * scale


@pytest.mark.parametrize("shape", ["qwen2:test", "deep-v3"])
def test_recompute_gives_the_same_bits(shards, tmp_path, shape):
    plain = train(shards, tmp_path / "plain", shape)
    rc = train(shards, tmp_path / "rc", shape, "--recompute")
    for f in ("model.safetensors", "optimizer.safetensors"):
        a = (tmp_path / "plain" / "step-000003" / f).read_bytes()
        b = (tmp_path / "rc" / "step-000003" / f).read_bytes()
        assert a == b, f"{shape}: {f} differs with --recompute"
    strip = lambda run: [{k: v for k, v in json.loads(l).items() if k not in ("tokens_per_s", "mfu")}
                         for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    assert strip("plain") == strip("rc")
    assert rc < plain, (rc, plain)
