#!/usr/bin/env python3
"""Reference outputs for the trainer's unit tests, from PyTorch: three AdamW steps
(torch.optim.AdamW, foreach=False) on 37 parameters with weight decay and 5 without, and
clip_grad_norm_. Writes tests/golden/train_adamw.json; tests/unit/test_train_optim.c reads it.
Run: python3 tests/golden/make_train_goldens.py (CPU, float32; deterministic)."""
import json
import pathlib

import torch

OUT = pathlib.Path(__file__).with_name("train_adamw.json")


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


if __name__ == "__main__":
    main()
