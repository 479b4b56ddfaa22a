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


# V3 without the q low-rank path, with 3 experts of 6 per token and all groups kept.
CONFIGS["deepseek_v3_nolora"] = dict(CONFIGS["deepseek_v3"], q_lora_rank=None, n_routed_experts=6,
                                     num_experts_per_tok=3, n_group=2, topk_group=2, num_hidden_layers=2)
# V3 with its multi-token prediction module (stored as layer num_hidden_layers, as V3 ships it:
# a full MoE block plus eh_proj, enorm, hnorm, shared_head.norm and copies of the embedding and
# head).
CONFIGS["deepseek_v3_mtp"] = dict(CONFIGS["deepseek_v3"], num_hidden_layers=2, num_nextn_predict_layers=1)
# V3's attention (MLA with YaRN) with dense MLPs in every layer: logits that move smoothly with
# the attention's rounding (a routed expert flips when its score crosses another's).
CONFIGS["deepseek_v3_dense"] = dict(CONFIGS["deepseek_v3"], first_k_dense_replace=3)


def deepseek_tensors(arch, c, rng, w):
    E, F, L, H = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"]
    dn, dr, dv, dc, dq = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"], c["q_lora_rank"]
    M, NE, NS = c["moe_intermediate_size"], c["n_routed_experts"], c["n_shared_experts"]
    t = {"model.embed_tokens.weight": w(VOCAB, E, scale=0.5), "model.norm.weight": 1 + w(E, scale=0.1),
         "lm_head.weight": w(VOCAB, E, scale=0.2)}
    for l in range(L + c.get("num_nextn_predict_layers", 0)):
        p = f"model.layers.{l}."
        if l >= L:  # the MTP module's own tensors
            t[p + "enorm.weight"], t[p + "hnorm.weight"] = 1 + w(E, scale=0.1), 1 + w(E, scale=0.1)
            t[p + "eh_proj.weight"] = w(E, 2 * E, scale=0.12)
            t[p + "shared_head.norm.weight"] = 1 + w(E, scale=0.1)
            t[p + "embed_tokens.weight"] = t["model.embed_tokens.weight"].copy()
            t[p + "shared_head.head.weight"] = t["lm_head.weight"].copy()
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
        if arch.startswith("deepseek_v3"):
            t[m + "gate.e_score_correction_bias"] = w(NE, scale=0.05)
        for e in range(NE):
            x = m + f"experts.{e}."
            t[x + "gate_proj.weight"], t[x + "up_proj.weight"], t[x + "down_proj.weight"] = w(M, E), w(M, E), w(E, M)
        x = m + "shared_experts."
        t[x + "gate_proj.weight"], t[x + "up_proj.weight"], t[x + "down_proj.weight"] = w(M * NS, E), w(M * NS, E), w(E, M * NS)
    return t


def tensors(arch):
    c = CONFIGS[arch]
    rng = np.random.default_rng({"qwen2": 1234, "llama": 5678, "deepseek_v3": 333, "deepseek_v2": 222,
                                 "deepseek_v3_nolora": 111, "deepseek_v3_mtp": 444, "deepseek_v3_dense": 555}[arch])
    E, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, HKV = c["num_attention_heads"], c["num_key_value_heads"]
    D = E // H

    def w(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    if arch.startswith("deepseek"):
        return deepseek_tensors("deepseek_v3" if arch.startswith("deepseek_v3") else arch, c, rng, w)
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


# ---- FP8 (DeepSeek-V3 / R1 checkpoints): F8_E4M3 weights with 128x128 block scales ----------

FP8_CONFIG = dict(CONFIGS["deepseek_v3"], hidden_size=160, intermediate_size=288, moe_intermediate_size=144,
                  q_lora_rank=136, kv_lora_rank=144)


def _e4m3_table():
    """Every finite F8_E4M3 (fn) value by code: 1 sign, 4 exponent (bias 7), 3 mantissa."""
    vals = np.zeros(256, dtype=np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        v = 2.0 ** -6 * (m / 8) if e == 0 else 2.0 ** (e - 7) * (1 + m / 8)
        vals[c] = -v if s else v
    vals[0x7F] = vals[0xFF] = np.nan
    return vals


def fp8_quantize(w):
    """(codes uint8, scale_inv float32): per 128x128 block s = max|w| / 448, codes = nearest(w / s)."""
    table = _e4m3_table()
    finite = np.where(~np.isnan(table))[0]
    order = finite[np.argsort(table[finite])]
    sorted_vals = table[order]
    R, C = w.shape
    br, bc = -(-R // 128), -(-C // 128)
    scale = np.zeros((br, bc), dtype=np.float32)
    codes = np.zeros(w.shape, dtype=np.uint8)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            s = np.float32(max(np.abs(blk).max(), 1e-12) / 448.0)
            x = (blk / s).astype(np.float64)
            k = np.clip(np.searchsorted(sorted_vals, x), 1, len(sorted_vals) - 1)
            pick = np.where(np.abs(sorted_vals[k - 1] - x) <= np.abs(sorted_vals[k] - x), k - 1, k)
            codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = order[pick]
            scale[i, j] = s
    return codes, scale


def fp8_dequantize(codes, scale):
    table = _e4m3_table().astype(np.float32)
    w = table[codes]
    full = np.repeat(np.repeat(scale, 128, axis=0), 128, axis=1)[: codes.shape[0], : codes.shape[1]]
    return (w * full).astype(np.float32)


def _is_fp8_weight(name, t):
    """As in DeepSeek-V3's checkpoints: the 2-D linear weights inside decoder layers, except the router."""
    return t.ndim == 2 and ".layers." in name and not name.endswith("mlp.gate.weight")


def _save_raw(path, tensors):
    """A safetensors file written by hand (numpy has no float8): dtype per tensor from its tag."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        arr, dtype = tensors[name]
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def write_fp8(directory):
    """The FP8 checkpoint (for Whale) and its dequantized F32 twin (for the reference):
    returns (fp8_dir, f32_dir)."""
    rng = np.random.default_rng(444)

    def w(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t = deepseek_tensors("deepseek_v3", FP8_CONFIG, rng, w)
    d8, d32 = pathlib.Path(directory) / "fp8", pathlib.Path(directory) / "f32"
    for d in (d8, d32):
        d.mkdir(parents=True, exist_ok=True)
    cfg = dict(FP8_CONFIG, quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                                "weight_block_size": [128, 128]})
    (d8 / "config.json").write_text(json.dumps(cfg, indent=1))
    (d32 / "config.json").write_text(json.dumps(FP8_CONFIG, indent=1))
    raw, deq = {}, {}
    for name, arr in t.items():
        if _is_fp8_weight(name, arr):
            codes, scale = fp8_quantize(arr)
            raw[name] = (codes, "F8_E4M3")
            raw[name + "_scale_inv"] = (scale, "F32")
            deq[name] = fp8_dequantize(codes, scale)
        else:
            raw[name] = (arr, "F32")
            deq[name] = arr
    _save_raw(d8 / "model.safetensors", raw)
    save_file(deq, str(d32 / "model.safetensors"))
    return d8, d32
