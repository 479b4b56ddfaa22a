#!/usr/bin/env python3
"""Reference outputs for the trainer's unit tests, from PyTorch (CPU, float32; deterministic):
- tests/golden/train_adamw.json: three AdamW steps (torch.optim.AdamW, foreach=False) on 37
  parameters with weight decay and 5 without, and clip_grad_norm_ (tests/unit/test_train_optim.c);
- tests/golden/train_qwen2.safetensors: a tiny Qwen2 (transformers' Qwen2ForCausalLM, weights from
  a numpy seed), a batch of two sequences, the loss and every parameter's gradient from autograd
  (names "grad.<param>") beside the parameters (tests/unit/test_train_dense.c);
- tests/golden/train_deepseek_v3[_nolora].safetensors: the same for a tiny DeepseekV3ForCausalLM
  (MLA with and without the q low-rank path, 8 routed experts in 4 groups, top-2 of the best 2
  groups with a random selection bias, a shared expert, the first layer dense), its fused expert
  tensors written one tensor per expert as DeepSeek's checkpoints name them
  (tests/unit/test_train_deepseek.c).
Run: python3 tests/golden/make_train_goldens.py"""
import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).with_name("train_adamw.json")
DENSE = pathlib.Path(__file__).with_name("train_qwen2.safetensors")
QWEN2 = dict(vocab_size=61, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
             tie_word_embeddings=False, hidden_act="silu", use_sliding_window=False)


DSV3 = dict(vocab_size=61, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8,
            qk_rope_head_dim=4, v_head_dim=8, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=4,
            topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1,
            max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
            hidden_act="silu", attention_bias=False, rope_interleave=True)


def deepseek_golden(name, **over):
    from safetensors.torch import save_file
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
    conf = dict(DSV3, **over)
    model = DeepseekV3ForCausalLM(DeepseekV3Config(**conf, attn_implementation="eager")).float()
    rng = np.random.default_rng(62)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            norm = "norm" in pname
            p.copy_(torch.from_numpy((1.0 if norm else 0.0) + (0.2 if norm else 0.3) * rng.standard_normal(p.shape).astype(np.float32)))
        for bname, b in model.named_buffers():
            if "e_score_correction_bias" in bname:
                b.copy_(torch.from_numpy(0.05 * rng.standard_normal(b.shape).astype(np.float32)))
    ids = torch.from_numpy(rng.integers(0, conf["vocab_size"], size=(2, 9)).astype(np.int64))
    labels = ids.clone()
    labels[0, 6:] = -100
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    ff = conf["moe_intermediate_size"]
    tensors = {}

    def put(key, value, grad):
        tensors[key] = value.detach().contiguous()
        tensors["grad." + key] = grad.detach().contiguous()

    for pname, p in model.named_parameters():
        if pname.endswith("mlp.experts.gate_up_proj"):  # [E, 2*ff, d]: gate rows, then up rows
            base = pname[: -len("gate_up_proj")]
            for e in range(p.shape[0]):
                put(f"{base}{e}.gate_proj.weight", p[e, :ff], p.grad[e, :ff])
                put(f"{base}{e}.up_proj.weight", p[e, ff:], p.grad[e, ff:])
        elif pname.endswith("mlp.experts.down_proj"):  # [E, d, ff]
            base = pname[: -len("down_proj")]
            for e in range(p.shape[0]):
                put(f"{base}{e}.down_proj.weight", p[e], p.grad[e])
        else:
            put(pname, p, p.grad)
    for bname, b in model.named_buffers():
        if "e_score_correction_bias" in bname:
            tensors[bname] = b.detach().contiguous()
    tensors["ids"] = ids.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors["loss"] = out.loss.detach().reshape(1)
    path = pathlib.Path(__file__).with_name(name)
    save_file(tensors, str(path), metadata={"config": json.dumps(conf), "torch": torch.__version__})
    print(f"wrote {path}: loss {out.loss.item():.6f}")


def dense_golden():
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**QWEN2, attn_implementation="eager")
    model = Qwen2ForCausalLM(cfg).float()
    rng = np.random.default_rng(61)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1.0 if "norm" in name else 0.3
            base = 1.0 if "norm" in name else 0.0
            p.copy_(torch.from_numpy(base + scale * rng.standard_normal(p.shape).astype(np.float32)))
    ids = torch.from_numpy(rng.integers(0, QWEN2["vocab_size"], size=(2, 11)).astype(np.int64))
    labels = ids.clone()
    labels[1, 7:] = -100  # a padded tail: no loss there
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    tensors = {name: p.detach().contiguous() for name, p in model.named_parameters()}
    tensors.update({"grad." + name: p.grad.detach().contiguous() for name, p in model.named_parameters()})
    tensors["ids"] = ids.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors["loss"] = out.loss.detach().reshape(1)
    save_file(tensors, str(DENSE), metadata={"config": json.dumps(QWEN2), "torch": torch.__version__})
    print(f"wrote {DENSE}: loss {out.loss.item():.6f}")


def main():
    g = torch.Generator().manual_seed(20261206)
    cfg = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
    p_decay = torch.randn(37, generator=g)
    p_plain = torch.randn(5, generator=g)
    init = [p_decay.tolist(), p_plain.tolist()]
    pd = torch.nn.Parameter(p_decay.clone())
    pp = torch.nn.Parameter(p_plain.clone())
    opt = torch.optim.AdamW([{"params": [pd], "weight_decay": cfg["weight_decay"]}, {"params": [pp], "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"], foreach=False)
    steps = []
    for _ in range(3):
        gd = torch.randn(37, generator=g) * 0.5
        gp = torch.randn(5, generator=g) * 0.5
        pd.grad = gd.clone()
        pp.grad = gp.clone()
        opt.step()
        steps.append({"grad": [gd.tolist(), gp.tolist()], "param": [pd.detach().tolist(), pp.detach().tolist()]})
    # gradient clipping across the two tensors
    a, b = torch.randn(37, generator=g) * 3, torch.randn(5, generator=g) * 3
    ta, tb = torch.nn.Parameter(torch.zeros(37)), torch.nn.Parameter(torch.zeros(5))
    ta.grad, tb.grad = a.clone(), b.clone()
    norm = torch.nn.utils.clip_grad_norm_([ta, tb], max_norm=1.0)
    clip = {"grad": [a.tolist(), b.tolist()], "max_norm": 1.0, "norm": float(norm), "clipped": [ta.grad.tolist(), tb.grad.tolist()]}
    OUT.write_text(json.dumps({"torch": torch.__version__, "config": cfg, "init": init, "steps": steps, "clip": clip}) + "\n")
    print(f"wrote {OUT}")
    dense_golden()
    deepseek_golden("train_deepseek_v3.safetensors")
    deepseek_golden("train_deepseek_v3_nolora.safetensors", q_lora_rank=None)


if __name__ == "__main__":
    main()
