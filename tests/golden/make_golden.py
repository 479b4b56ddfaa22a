#!/usr/bin/env python3
"""Make the golden outputs Whale's model tests compare against, with Hugging Face transformers
(PyTorch, CPU). Run by hand where torch is installed (pip install torch transformers gguf
safetensors); commit only the small JSON files it writes:

  tests/golden/tiny_logits.json     logits of the tiny random Qwen2 and Llama models
                                    (tiny_models.py) for a fixed prompt, every position
  tests/golden/tiny_hidden.json     the tiny models' named intermediates for the same prompt, layer
                                    by layer (transformers' hidden states, and each layer's attention
                                    and FFN outputs and MoE choices from forward hooks), for
                                    `whale logits --dump` to be compared with
  tests/golden/default_greedy.json  the default model (GGUF, dequantized by transformers'
                                    gguf_file= loader): 5 chat prompts, greedy continuation of
                                    64 tokens, top-5 logits per step
  tests/golden/perplexity.json      the default model's perplexity on a held-out text, with the
                                    chunking whale perplexity uses

Usage: python3 tests/golden/make_golden.py [--default-model PATH] [--only tiny|hidden|greedy|ppl]"""
import argparse
import json
import math
import os
import pathlib
import sys
import tempfile

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tiny_models  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(os.cpu_count() or 1)

PROMPTS = [
    "Explain in two sentences why the sky is blue.",
    "用一句话介绍深度求索公司。",
    "What is 17 * 23? Show your steps.",
    "Write a C function that reverses a string in place.",
    "List three prime numbers greater than 100.",
]
PPL_CTX = 128  # tokens per chunk; the second half of each chunk is scored


def CONFIG_HAS_MTP(arch):
    return tiny_models.CONFIGS[arch].get("num_nextn_predict_layers", 0) > 0


def mtp_reference(m, d, prenorm):
    """Logits of V3's MTP module for the tiny prompt: row i joins the main model's hidden state at
    position i with the embedding of token i+1 and predicts token i+2 (SPEC-deepseek.md §4, vLLM's
    layout: [enorm(emb); hnorm(h)], emb zeroed at position 0). transformers has no MTP code: the
    block is its DeepseekV3DecoderLayer with the checkpoint's layer-N weights, the rest is written
    out here. prenorm: h before the main model's final norm instead of after it."""
    from safetensors.torch import load_file
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer
    cfg = m.config
    L, eps = cfg.num_hidden_layers, cfg.rms_norm_eps
    sd = load_file(str(pathlib.Path(d) / "model.safetensors"))
    p = f"model.layers.{L}."
    own = ("enorm.", "hnorm.", "eh_proj.", "shared_head.", "embed_tokens.")
    layer = DeepseekV3DecoderLayer(cfg, layer_idx=L)
    w = {k[len(p):]: v for k, v in sd.items() if k.startswith(p) and not k[len(p):].startswith(own)}
    # transformers 5 keeps routed experts fused: gate_up_proj (N, 2M, E) and down_proj (N, E, M)
    n = cfg.n_routed_experts
    ex = [w.pop(f"mlp.experts.{e}.{q}_proj.weight") for q in ("gate", "up", "down") for e in range(n)]
    w["mlp.experts.gate_up_proj"] = torch.cat([torch.stack(ex[:n]), torch.stack(ex[n:2 * n])], 1)
    w["mlp.experts.down_proj"] = torch.stack(ex[2 * n:])
    layer.load_state_dict(w, strict=True)
    layer.eval()
    captured = {}
    hook = m.model.norm.register_forward_hook(lambda mod, inp, outp: captured.update(pre=inp[0], post=outp))
    ids = torch.tensor([tiny_models.PROMPT])
    T = ids.shape[1]
    with torch.no_grad():
        m.model(ids)
        hook.remove()
        h = (captured["pre"] if prenorm else captured["post"])[0, : T - 1]

        def rms(x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

        emb = sd[p + "embed_tokens.weight"][ids[0, 1:]].clone()
        emb[0] = 0  # position 0
        x = torch.cat([rms(emb, sd[p + "enorm.weight"]), rms(h, sd[p + "hnorm.weight"])], -1) @ sd[p + "eh_proj.weight"].T
        x = x[None]
        pos = torch.arange(T - 1)[None]
        mask = torch.full((T - 1, T - 1), float("-inf")).triu(1)[None, None]
        y = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=m.model.rotary_emb(x, pos))
        y = y[0] if isinstance(y, tuple) else y
        logits = rms(y[0], sd[p + "shared_head.norm.weight"]) @ sd[p + "shared_head.head.weight"].T
    return logits.numpy()


def tiny():
    from transformers import AutoModelForCausalLM
    out = {"prompt": tiny_models.PROMPT, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in tiny_models.CONFIGS:
            d = tiny_models.write(arch, pathlib.Path(tmp) / arch)
            m = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32, attn_implementation="eager")
            m.eval()
            with torch.no_grad():
                logits = m(torch.tensor([tiny_models.PROMPT])).logits[0].numpy()
            out["models"][arch] = logits.astype(float).round(6).tolist()
            if CONFIG_HAS_MTP(arch):
                for variant, prenorm in (("", False), ("_prenorm", True)):
                    out["models"][arch + "_draft" + variant] = mtp_reference(m, d, prenorm).astype(float).round(6).tolist()
        # FP8 V3: the reference runs the dequantized twin (transformers' FP8 path needs a GPU).
        _, d32 = tiny_models.write_fp8(pathlib.Path(tmp) / "fp8pair")
        m = AutoModelForCausalLM.from_pretrained(str(d32), torch_dtype=torch.float32, attn_implementation="eager")
        m.eval()
        with torch.no_grad():
            logits = m(torch.tensor([tiny_models.PROMPT])).logits[0].numpy()
        out["models"]["deepseek_v3_fp8"] = logits.astype(float).round(6).tolist()
    (HERE / "tiny_logits.json").write_text(json.dumps(out))
    print("wrote tiny_logits.json")


def hidden():
    """Per layer: the residual stream after it (hidden_states[l+1]; transformers returns the last
    one after the final norm, so it is Whale's result_norm), the attention block's output (after
    o_proj), the FFN or MoE block's output, and for MoE layers the router's logits — Whale's
    inp_embd, l_out, attn_out, ffn_out, moe_logits, result_norm."""
    from transformers import AutoModelForCausalLM
    import transformers
    out = {"prompt": tiny_models.PROMPT, "transformers": transformers.__version__, "models": {}}
    rnd = lambda t: t[0].detach().numpy().astype(float).round(6).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in tiny_models.CONFIGS:
            d = tiny_models.write(arch, pathlib.Path(tmp) / arch)
            m = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32, attn_implementation="eager")
            m.eval()
            rec, hooks = {}, []
            for l, layer in enumerate(m.model.layers):
                hooks.append(layer.self_attn.register_forward_hook(
                    lambda mod, i, o, l=l: rec.__setitem__(("attn_out", l), rnd(o[0]))))
                hooks.append(layer.mlp.register_forward_hook(
                    lambda mod, i, o, l=l: rec.__setitem__(("ffn_out", l), rnd(o if torch.is_tensor(o) else o[0]))))
                gate = getattr(layer.mlp, "gate", None)
                if gate is not None:  # the router: logits over the routed experts, one row per token
                    hooks.append(gate.register_forward_hook(
                        lambda mod, i, o, l=l: rec.__setitem__(("moe_logits", l), rnd((o[0] if isinstance(o, tuple) else o)[None]))))
            with torch.no_grad():
                r = m(torch.tensor([tiny_models.PROMPT]), output_hidden_states=True)
            for h in hooks:
                h.remove()
            L = len(m.model.layers)
            entry = {"inp_embd": rnd(r.hidden_states[0]), "n_layer": L, "result_norm": rnd(r.hidden_states[L])}
            for l in range(L):
                if l < L - 1:
                    entry[f"l_out.{l}"] = rnd(r.hidden_states[l + 1])
                for name in ("attn_out", "ffn_out", "moe_logits"):
                    if (name, l) in rec:
                        entry[f"{name}.{l}"] = rec[(name, l)]
            out["models"][arch] = entry
    (HERE / "tiny_hidden.json").write_text(json.dumps(out))
    print("wrote tiny_hidden.json")


def load_default(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    p = pathlib.Path(path).resolve()
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    m = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, torch_dtype=torch.float32)
    m.eval()
    return tok, m


def chatml(user):
    return ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def greedy(path):
    tok, m = load_default(path)
    cases = []
    for p in PROMPTS:
        ids = tok(chatml(p), add_special_tokens=False)["input_ids"]
        seq = list(ids)
        steps = []
        with torch.no_grad():
            past = None
            inp = torch.tensor([seq])
            for _ in range(64):
                o = m(inp, past_key_values=past, use_cache=True)
                past = o.past_key_values
                logits = o.logits[0, -1].float()
                top = torch.topk(logits, 5)
                nxt = int(top.indices[0])
                steps.append({"top_ids": [int(i) for i in top.indices], "top_logits": [round(float(v), 5) for v in top.values]})
                seq.append(nxt)
                inp = torch.tensor([[nxt]])
        cases.append({"prompt": p, "prompt_ids": ids, "greedy": seq[len(ids):], "steps": steps})
        print(f"greedy: {p[:30]!r}: {tok.decode(seq[len(ids):])[:60]!r}")
    (HERE / "default_greedy.json").write_text(json.dumps({"model_sha256_prefix": "1d96146", "cases": cases}))


def held_out_text():
    # The MIT license text and a paragraph of our own: not in the model's prompt set.
    return (HERE.parent.parent / "LICENSE").read_text() + "\n" + (HERE / "ppl_text.txt").read_text()


def perplexity(path):
    tok, m = load_default(path)
    ids = tok(held_out_text(), add_special_tokens=False)["input_ids"]
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - PPL_CTX + 1, PPL_CTX):
            chunk = torch.tensor([ids[start:start + PPL_CTX]])
            logp = torch.log_softmax(m(chunk).logits[0].double(), dim=-1)
            for i in range(PPL_CTX // 2, PPL_CTX):
                nll -= float(logp[i - 1, chunk[0, i]])
                count += 1
    ppl = math.exp(nll / count)
    (HERE / "perplexity.json").write_text(json.dumps({"ctx": PPL_CTX, "n_tokens": len(ids), "scored": count, "ppl": ppl}))
    print(f"perplexity {ppl:.4f} over {count} scored tokens")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--default-model", default=str(pathlib.Path(os.environ.get("WHALE_HOME", pathlib.Path.home() / ".cache" / "whale")) / "models" / "default.gguf"))
    ap.add_argument("--only", choices=["tiny", "hidden", "greedy", "ppl"])
    a = ap.parse_args()
    if a.only in (None, "tiny"):
        tiny()
    if a.only in (None, "hidden"):
        hidden()
    if a.only in (None, "greedy"):
        greedy(a.default_model)
    if a.only in (None, "ppl"):
        perplexity(a.default_model)
