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
}


def tensors(arch):
    c = CONFIGS[arch]
    rng = np.random.default_rng(1234 if arch == "qwen2" else 5678)
    E, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, HKV = c["num_attention_heads"], c["num_key_value_heads"]
    D = E // H

    def w(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

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
