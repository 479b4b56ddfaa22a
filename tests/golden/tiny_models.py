"""Tiny random-weight Qwen2 and Llama checkpoints, made from a numpy seed so that the golden
script (with transformers) and the tests (without torch) build byte-identical files.

Written as Hugging Face checkpoints: config.json + model.safetensors (F32). No tokenizer: the
tests feed token ids directly."""
import json
import pathlib

import numpy as np
from safetensors.numpy import save_file

VOCAB = 384
PROMPT = [1, 17, 200, 5, 99, 383, 42, 42, 7, 250, 3, 11, 128, 64, 300, 2]

CONFIGS = {
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": "float32", "hidden_act": "silu",
        "use_sliding_window": False,
    },
    "llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "tie_word_embeddings": False, "torch_dtype": "float32", "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False,
    },
    # DeepSeek-V3 shape in miniature: q-LoRA, YaRN, sigmoid gating with the selection bias,
    # 4 groups of 2 experts (2 kept), top-2, a shared expert, the first layer dense.
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": VOCAB,
        "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 4, "topk_group": 2,
        "routed_scaling_factor": 2.5, "norm_topk_prob": True, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
        "first_k_dense_replace": 1, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": {"type": "yarn", "factor": 16.0, "original_max_position_embeddings": 64,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "tie_word_embeddings": False, "torch_dtype": "float32", "hidden_act": "silu", "attention_bias": False,
        "num_nextn_predict_layers": 0,
    },
    # DeepSeek-V2-Lite shape in miniature: no q-LoRA, softmax gating, greedy top-2 of 6, two shared
    # experts, no renormalization.
    "deepseek_v2": {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": VOCAB,
        "q_lora_rank": None, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        "n_routed_experts": 6, "num_experts_per_tok": 2, "n_shared_experts": 2, "n_group": 1, "topk_group": 1,
        "routed_scaling_factor": 1.0, "norm_topk_prob": False, "scoring_func": "softmax", "topk_method": "greedy",
        "first_k_dense_replace": 1, "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": "float32", "hidden_act": "silu", "attention_bias": False,
    },
}


def deepseek_tensors(arch, c, rng, w):
    E, F, L, H = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"]
    dn, dr, dv, dc, dq = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"], c["q_lora_rank"]
    M, NE, NS = c["moe_intermediate_size"], c["n_routed_experts"], c["n_shared_experts"]
    t = {"model.embed_tokens.weight": w(VOCAB, E, scale=0.5), "model.norm.weight": 1 + w(E, scale=0.1),
         "lm_head.weight": w(VOCAB, E, scale=0.2)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + w(E, scale=0.1)
        t[p + "post_attention_layernorm.weight"] = 1 + w(E, scale=0.1)
        a = p + "self_attn."
        if dq:
            t[a + "q_a_proj.weight"] = w(dq, E)
            t[a + "q_a_layernorm.weight"] = 1 + w(dq, scale=0.1)
            t[a + "q_b_proj.weight"] = w(H * (dn + dr), dq, scale=0.15)
        else:
            t[a + "q_proj.weight"] = w(H * (dn + dr), E)
        t[a + "kv_a_proj_with_mqa.weight"] = w(dc + dr, E)
        t[a + "kv_a_layernorm.weight"] = 1 + w(dc, scale=0.1)
        t[a + "kv_b_proj.weight"] = w(H * (dn + dv), dc, scale=0.15)
        t[a + "o_proj.weight"] = w(E, H * dv)
        m = p + "mlp."
        if l < c["first_k_dense_replace"]:
            t[m + "gate_proj.weight"], t[m + "up_proj.weight"], t[m + "down_proj.weight"] = w(F, E), w(F, E), w(E, F)
            continue
        t[m + "gate.weight"] = w(NE, E, scale=0.3)
        if arch == "deepseek_v3":
            t[m + "gate.e_score_correction_bias"] = w(NE, scale=0.05)
        for e in range(NE):
            x = m + f"experts.{e}."
            t[x + "gate_proj.weight"], t[x + "up_proj.weight"], t[x + "down_proj.weight"] = w(M, E), w(M, E), w(E, M)
        x = m + "shared_experts."
        t[x + "gate_proj.weight"], t[x + "up_proj.weight"], t[x + "down_proj.weight"] = w(M * NS, E), w(M * NS, E), w(E, M * NS)
    return t


def tensors(arch):
    c = CONFIGS[arch]
    rng = np.random.default_rng({"qwen2": 1234, "llama": 5678, "deepseek_v3": 333, "deepseek_v2": 222}[arch])
    E, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, HKV = c["num_attention_heads"], c["num_key_value_heads"]
    D = E // H

    def w(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    if arch.startswith("deepseek"):
        return deepseek_tensors(arch, c, rng, w)
    t = {"model.embed_tokens.weight": w(VOCAB, E, scale=0.5),
         "model.norm.weight": (1 + w(E, scale=0.1)),
         "lm_head.weight": w(VOCAB, E, scale=0.2)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + w(E, scale=0.1)
        t[p + "post_attention_layernorm.weight"] = 1 + w(E, scale=0.1)
        t[p + "self_attn.q_proj.weight"] = w(H * D, E)
        t[p + "self_attn.k_proj.weight"] = w(HKV * D, E)
        t[p + "self_attn.v_proj.weight"] = w(HKV * D, E)
        t[p + "self_attn.o_proj.weight"] = w(E, H * D)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = w(H * D, scale=0.1)
            t[p + "self_attn.k_proj.bias"] = w(HKV * D, scale=0.1)
            t[p + "self_attn.v_proj.bias"] = w(HKV * D, scale=0.1)
        t[p + "mlp.gate_proj.weight"] = w(F, E)
        t[p + "mlp.up_proj.weight"] = w(F, E)
        t[p + "mlp.down_proj.weight"] = w(E, F)
    return t


def write(arch, directory):
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(CONFIGS[arch], indent=1))
    save_file(tensors(arch), str(d / "model.safetensors"))
    return d
