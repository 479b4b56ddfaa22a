#!/usr/bin/env python3
"""Reference outputs for the trainer's unit tests, from PyTorch (CPU, float32; deterministic):
- tests/golden/train_adamw.json: three AdamW steps (torch.optim.AdamW, foreach=False) on 37
  parameters with weight decay and 5 without, and clip_grad_norm_ (tests/unit/test_train_optim.c);
- tests/golden/train_qwen2.safetensors: a tiny Qwen2 (transformers' Qwen2ForCausalLM, weights from
  a numpy seed), a batch of two sequences, the loss and every parameter's gradient from autograd
  (names "grad.<param>") beside the parameters (tests/unit/test_train_dense.c);
- tests/golden/train_deepseek_v3[_nolora|_yarn].safetensors: the same for a tiny DeepseekV3ForCausalLM
  (MLA with and without the q low-rank path, 8 routed experts in 4 groups, top-2 of the best 2
  groups with a random selection bias, a shared expert, the first layer dense), its fused expert
  tensors written one tensor per expert as DeepSeek's checkpoints name them
  (tests/unit/test_train_deepseek.c). train_deepseek_v3 and _yarn add one multi-token prediction
  module (_yarn: two, chained; DeepSeek-V3 report, section 2.2), written here since transformers' model has none for
  training: eh_proj [enorm(emb(t_{i+1})); hnorm(h_i)] with h_i the main model's last hidden state
  before its final norm, transformers' own decoder layer at index num_hidden_layers, the shared
  head after shared_head.norm predicting t_{i+2}; the loss is the main cross-entropy + 0.3 x the
  module's ("loss" and "mtp_loss" are stored apart). _yarn also scales RoPE by YaRN
  (transformers' formulas) with mscale != mscale_all_dim, so both of its factors show.
- tests/golden/train_qwen2_lora.safetensors: the tiny Qwen2 of train_qwen2 with PEFT's LoRA (rank 3,
  alpha 5) on q, v, o and down_proj, B drawn non-zero (PEFT starts it at zero, which would leave A's
  gradient zero), the loss and the adapters' gradients under PEFT's own names
  (tests/unit/test_train_dense.c).
Run: python3 tests/golden/make_train_goldens.py"""
import json
import pathlib

import numpy as np
import torch
import transformers

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


class MtpModule(torch.nn.Module):
    """One MTP module as DeepSeek-V3 stores it (model.layers.N.{enorm, hnorm, eh_proj,
    shared_head.norm} beside the decoder block's tensors)."""

    def __init__(self, config, layer_idx):
        super().__init__()
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm
        d, eps = config.hidden_size, config.rms_norm_eps
        self.enorm = DeepseekV3RMSNorm(d, eps=eps)
        self.hnorm = DeepseekV3RMSNorm(d, eps=eps)
        self.eh_proj = torch.nn.Linear(2 * d, d, bias=False)
        self.block = DeepseekV3DecoderLayer(config, layer_idx)
        self.shared_head = torch.nn.Module()
        self.shared_head.norm = DeepseekV3RMSNorm(d, eps=eps)

    def named_weights(self, prefix):
        for n, p in self.named_parameters():
            yield prefix + (n[len("block."):] if n.startswith("block.") else n), p

    def forward(self, model, h, next_ids):
        """h: the previous depth's hidden states [B, T', d]; next_ids: the tokens one ahead."""
        x = self.eh_proj(torch.cat([self.enorm(model.model.embed_tokens(next_ids)), self.hnorm(h)], dim=-1))
        T = x.shape[1]
        pos = torch.arange(T)[None]
        mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)[None, None].expand(x.shape[0], 1, T, T)
        y = self.block(x, attention_mask=mask, position_ids=pos, position_embeddings=model.model.rotary_emb(x, pos))
        return y, model.lm_head(self.shared_head.norm(y))


MTP_WEIGHT = 0.3


def deepseek_golden(name, mtp=0, yarn=None, **over):
    from safetensors.torch import save_file
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
    conf = dict(DSV3, **over)
    hf = dict(conf)
    if yarn:  # config.json's rope_scaling; transformers 5 reads it as rope_parameters
        conf["rope_scaling"] = dict(type="yarn", **yarn)
        hf["rope_parameters"] = dict(rope_type="yarn", rope_theta=conf["rope_theta"], **yarn)
    model = DeepseekV3ForCausalLM(DeepseekV3Config(**hf, attn_implementation="eager")).float()
    n_layer = conf["num_hidden_layers"]
    mods = [MtpModule(model.config, n_layer + k) for k in range(mtp)]
    rng = np.random.default_rng(62)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            norm = "norm" in pname
            p.copy_(torch.from_numpy((1.0 if norm else 0.0) + (0.2 if norm else 0.3) * rng.standard_normal(p.shape).astype(np.float32)))
        for bname, b in model.named_buffers():
            if "e_score_correction_bias" in bname:
                b.copy_(torch.from_numpy(0.05 * rng.standard_normal(b.shape).astype(np.float32)))
        for mod in mods:
            for pname, p in mod.named_parameters():
                norm = "norm" in pname
                p.copy_(torch.from_numpy((1.0 if norm else 0.0) + (0.2 if norm else 0.3) * rng.standard_normal(p.shape).astype(np.float32)))
            for bname, b in mod.named_buffers():
                if "e_score_correction_bias" in bname:
                    b.copy_(torch.from_numpy(0.05 * rng.standard_normal(b.shape).astype(np.float32)))
    ids = torch.from_numpy(rng.integers(0, conf["vocab_size"], size=(2, 9)).astype(np.int64))
    labels = ids.clone()
    labels[0, 6:] = -100
    captured = {}
    model.model.layers[n_layer - 1].register_forward_hook(lambda m, i, o: captured.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    out = model(input_ids=ids, labels=labels)
    total, mtp_loss, h = out.loss, torch.zeros(()), captured["h"]  # h: before model.norm
    for k, mod in enumerate(mods, start=1):  # depth k: rows i < T-k read t_{i+k}, predict t_{i+k+1}
        T = ids.shape[1] - k
        h, logits = mod(model, h[:, :T], ids[:, k:])
        target = torch.nn.functional.pad(labels[:, k + 1:], (0, 1), value=-100)  # the last row has none
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        mtp_loss = mtp_loss + ce / mtp
    total = total + MTP_WEIGHT * mtp_loss
    total.backward()
    ff = conf["moe_intermediate_size"]
    tensors = {}

    def put(key, value, grad):
        tensors[key] = value.detach().contiguous()
        tensors["grad." + key] = grad.detach().contiguous()

    named = list(model.named_parameters())
    for k, mod in enumerate(mods):
        named += list(mod.named_weights(f"model.layers.{n_layer + k}."))
    for pname, p in named:
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
    buffers = list(model.named_buffers())
    for k, mod in enumerate(mods):
        buffers += [(f"model.layers.{n_layer + k}." + n[len("block."):], b) for n, b in mod.named_buffers()]
    for bname, b in buffers:
        if "e_score_correction_bias" in bname:
            tensors[bname] = b.detach().contiguous()
    tensors["ids"] = ids.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors["loss"] = out.loss.detach().reshape(1)
    if mtp:
        conf.update(num_nextn_predict_layers=mtp, mtp_loss_weight=MTP_WEIGHT)
        tensors["mtp_loss"] = mtp_loss.detach().reshape(1)
    path = pathlib.Path(__file__).with_name(name)
    save_file(tensors, str(path), metadata={"config": json.dumps(conf), "torch": torch.__version__,
                                            "transformers": transformers.__version__})
    print(f"wrote {path}: loss {out.loss.item():.6f}, mtp loss {mtp_loss.item():.6f}")


def tiny_qwen2():
    """train_qwen2's model (weights from numpy seed 61), the rng after drawing them."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**QWEN2, attn_implementation="eager")
    model = Qwen2ForCausalLM(cfg).float()
    rng = np.random.default_rng(61)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1.0 if "norm" in name else 0.3
            base = 1.0 if "norm" in name else 0.0
            p.copy_(torch.from_numpy(base + scale * rng.standard_normal(p.shape).astype(np.float32)))
    return model, rng


def dense_golden():
    from safetensors.torch import save_file
    model, rng = tiny_qwen2()
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


LORA = dict(r=3, lora_alpha=5, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])


def lora_golden():
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    path = pathlib.Path(__file__).with_name("train_qwen2_lora.safetensors")
    model, rng = tiny_qwen2()
    base = {name: p.detach().clone().contiguous() for name, p in model.named_parameters()}
    pm = get_peft_model(model, LoraConfig(lora_dropout=0.0, bias="none", **LORA))
    adapters = {}
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.from_numpy(0.3 * rng.standard_normal(p.shape).astype(np.float32)))
                adapters[name] = p
    ids = torch.from_numpy(rng.integers(0, QWEN2["vocab_size"], size=(2, 11)).astype(np.int64))
    labels = ids.clone()
    labels[1, 6:] = -100
    out = pm(input_ids=ids, labels=labels)
    out.loss.backward()
    tensors = dict(base)
    for name, p in adapters.items():
        plain = name.replace(".default", "")  # the names PEFT saves (adapter_model.safetensors)
        tensors[plain] = p.detach().contiguous()
        tensors["grad." + plain] = p.grad.detach().contiguous()
    assert all(p.grad is None for n, p in pm.named_parameters() if "lora_" not in n)
    tensors["ids"] = ids.to(torch.int32)
    tensors["labels"] = labels.to(torch.int32)
    tensors["loss"] = out.loss.detach().reshape(1)
    save_file(tensors, str(path), metadata={"config": json.dumps(QWEN2), "lora": json.dumps(LORA), "torch": torch.__version__})
    print(f"wrote {path}: loss {out.loss.item():.6f}, {len(adapters)} adapter tensors")


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
    lora_golden()
    deepseek_golden("train_deepseek_v3.safetensors", mtp=1)
    deepseek_golden("train_deepseek_v3_nolora.safetensors", q_lora_rank=None)
    # YaRN on a small base so that the positions of 9 tokens turn the scaled pairs visibly: pair 0
    # keeps its frequency, pair 1 is ramped a third of the way to /factor
    deepseek_golden("train_deepseek_v3_yarn.safetensors", mtp=2, q_lora_rank=None, rope_theta=100.0, max_position_embeddings=4096,
                    yarn=dict(factor=4.0, original_max_position_embeddings=1024, beta_fast=32.0, beta_slow=1.0, mscale=1.0,
                              mscale_all_dim=0.8))


if __name__ == "__main__":
    main()
