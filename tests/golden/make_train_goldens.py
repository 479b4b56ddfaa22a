#!/usr/bin/env python3
"""Reference outputs for the trainer's unit tests, from PyTorch (CPU, float32; deterministic):
- tests/golden/train_adamw.json: three AdamW steps (torch.optim.AdamW, foreach=False) on 37
  parameters with weight decay and 5 without, and clip_grad_norm_ (tests/unit/test_train_optim.c);
- tests/golden/train_qwen2.safetensors: a tiny Qwen2 (transformers' Qwen2ForCausalLM, weights from
  a numpy seed), a batch of two sequences, the loss and every parameter's gradient from autograd
  (names "grad.<param>") beside the parameters (tests/unit/test_train_dense.c).
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


if __name__ == "__main__":
    main()
