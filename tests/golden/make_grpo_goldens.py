#!/usr/bin/env python3
"""Reference outputs for GRPO's math (src/rl/grpo.c), from PyTorch autograd (CPU, deterministic):
- tests/golden/grpo_math.json: group advantages, the clipped-ratio objective with the k3 KL
  penalty, its clip fraction and mean KL, and dJ/dlogp for every token, in float64, for several
  groups of random inputs under both variants (GRPO and Dr. GRPO), with clipping active on
  some tokens, a group whose rewards are all equal and a response with no tokens
  (tests/unit/test_rl_grpo.c);
- tests/golden/grpo_qwen2.safetensors: a whole GRPO gradient on a tiny Qwen2 (transformers'
  Qwen2ForCausalLM, the shape of train_qwen2): two groups of three responses sampled from the
  model after a shared prompt, given old and reference log-probabilities and rewards, the loss
  -mean_g J_g and every parameter's gradient from autograd ("grad.<param>"), beside the
  parameters, the per-token log-probabilities, J of each group (tests/unit/test_rl_grpo.c).

Both carry the magic "whale-grpo-golden" and a version (GOLDEN_VERSION; JSON keys "magic" and
"version", safetensors metadata of the same names); the test refuses any other.
The formulas are the ones TRL's GRPOTrainer computes (loss_type "grpo" and "dr_grpo"):
  A_i = (r_i - mean r) / (std r + 1e-4), std with Bessel's correction (torch.std, as TRL and
  DeepSeekMath's reference code); Dr. GRPO: A_i = r_i - mean r;
  rho_t = exp(logp_t - old_t), KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1,
  term_t = min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) - beta KL_t;
  GRPO: J = mean_i (sum_t term / |o_i|);  Dr. GRPO: J = sum_{i,t} term / (G max_len).
Run: python3 tests/golden/make_grpo_goldens.py"""
import json
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from make_train_goldens import QWEN2  # noqa: E402  the same tiny shape as the training goldens

MAGIC, GOLDEN_VERSION = "whale-grpo-golden", 1
MATH = pathlib.Path(__file__).with_name("grpo_math.json")
MODEL = pathlib.Path(__file__).with_name("grpo_qwen2.safetensors")
CLIP_EPS, BETA, ADV_EPS, MAX_LEN = 0.2, 0.04, 1e-4, 16


def advantages(r, variant):
    d = r - r.mean()
    return d if variant == "dr_grpo" else d / (r.std() + ADV_EPS)  # torch.std: unbiased (G - 1)


def objective(logp, old, ref, mask, adv, variant):
    """J of one group (to maximize), its clip fraction and mean KL over the group's tokens.
    logp, old, ref, mask: [G, L]; adv: [G]."""
    a = adv[:, None]
    ratio = torch.exp(logp - old)
    t1 = ratio * a
    t2 = torch.clamp(ratio, 1 - CLIP_EPS, 1 + CLIP_EPS) * a
    d = ref - logp
    kl = torch.exp(d) - d - 1
    term = torch.min(t1, t2) - BETA * kl
    if variant == "grpo":
        J = ((term * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    else:
        J = (term * mask).sum() / (logp.shape[0] * MAX_LEN)
    clipped = ((ratio < 1 - CLIP_EPS) & (a < 0)) | ((ratio > 1 + CLIP_EPS) & (a > 0))
    n = mask.sum().clamp(min=1)
    return J, ((clipped * mask).sum() / n).item(), ((kl * mask).sum() / n).item()


def math_golden():
    rng = np.random.default_rng(21)
    G, L = 5, 12
    cases = []
    for variant in ("grpo", "dr_grpo"):
        for gi in range(4):
            f32 = lambda a: a.astype(np.float32).astype(np.float64)  # inputs exact in float32
            lens = rng.integers(3, L + 1, size=G)
            if gi == 3:
                lens[1] = 0  # a response with no tokens: it adds nothing
            mask = (np.arange(L)[None, :] < lens[:, None]).astype(np.float64)
            logp = f32(-np.abs(rng.standard_normal((G, L))) * 2)
            old = f32(logp + 0.3 * rng.standard_normal((G, L)))  # ratios far enough from 1 to clip
            ref = f32(logp + 0.3 * rng.standard_normal((G, L)))
            if gi == 1:
                rewards = f32(rng.integers(0, 2, size=G).astype(np.float64) + 0.5 * rng.integers(0, 2, size=G))
            elif gi == 2:
                rewards = np.full(G, 1.0)  # all equal: every advantage 0
            else:
                rewards = f32(rng.standard_normal(G))
            r = torch.tensor(rewards)
            adv = advantages(r, variant)
            lp = torch.tensor(logp, requires_grad=True)
            J, clip, kl = objective(lp, torch.tensor(old), torch.tensor(ref), torch.tensor(mask), adv, variant)
            J.backward()
            cases.append(dict(variant=variant, G=G, L=L, rewards=rewards.tolist(), mask=mask.astype(int).ravel().tolist(),
                              logp=logp.ravel().tolist(), old=old.ravel().tolist(), ref=ref.ravel().tolist(),
                              adv=adv.tolist(), J=J.item(), clip_frac=clip, kl_mean=kl, dJ=lp.grad.ravel().tolist()))
            print(f"{variant} group {gi}: J {J.item():.6f}, clip fraction {clip:.3f}, KL {kl:.5f}")
    MATH.write_text(json.dumps(dict(magic=MAGIC, version=GOLDEN_VERSION, torch=torch.__version__, clip_eps=CLIP_EPS, beta=BETA,
                                    adv_eps=ADV_EPS, max_len=MAX_LEN, cases=cases)) + "\n")
    print(f"wrote {MATH}")


def model_golden():
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM
    import transformers
    model = Qwen2ForCausalLM(Qwen2Config(**QWEN2, attn_implementation="eager")).float()
    rng = np.random.default_rng(63)
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm = "norm" in name
            p.copy_(torch.from_numpy((1.0 if norm else 0.0) + (1.0 if norm else 0.3) * rng.standard_normal(p.shape).astype(np.float32)))
    n_groups, G, P, T, V = 2, 3, 4, 12, QWEN2["vocab_size"]
    gen = torch.Generator().manual_seed(64)
    ids = torch.zeros(n_groups * G, T, dtype=torch.int64)
    labels = torch.full((n_groups * G, T), -100, dtype=torch.int64)
    with torch.no_grad():  # sample each response from the model itself, after its group's prompt
        for g in range(n_groups):
            prompt = torch.from_numpy(rng.integers(0, V, size=P))
            for i in range(G):
                row, n = g * G + i, int(rng.integers(3, T - P + 1))
                ids[row, :P] = prompt
                for t in range(P, P + n):
                    probs = torch.softmax(model(input_ids=ids[row:row + 1, :t]).logits[0, -1], -1)
                    ids[row, t] = torch.multinomial(probs, 1, generator=gen)[0]
                labels[row, P:P + n] = ids[row, P:P + n]
    # position t predicts token t+1: the loss rows are those whose next token is a response token
    tgt = torch.cat([labels[:, 1:], torch.full((n_groups * G, 1), -100)], 1)
    mask = (tgt >= 0).float()
    logits = model(input_ids=ids).logits
    logp = torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * mask
    noise = lambda: torch.from_numpy(0.25 * rng.standard_normal(logp.shape).astype(np.float32))
    old = ((logp.detach() + noise()) * mask).contiguous()  # an older policy's: some ratios clip
    ref = ((logp.detach() + noise()) * mask).contiguous()
    rewards = torch.from_numpy(rng.integers(0, 2, size=n_groups * G).astype(np.float32) + rng.random(n_groups * G).astype(np.float32))
    Js = []
    for g in range(n_groups):
        s = slice(g * G, (g + 1) * G)
        J, clip, kl = objective(logp[s], old[s], ref[s], mask[s], advantages(rewards[s], "grpo"), "grpo")
        Js.append(J)
        print(f"model group {g}: J {J.item():.6f}, clip fraction {clip:.3f}, KL {kl:.5f}")
    loss = -torch.stack(Js).mean()
    loss.backward()
    tensors = {name: p.detach().contiguous() for name, p in model.named_parameters()}
    tensors.update({"grad." + name: p.grad.detach().contiguous() for name, p in model.named_parameters()})
    tensors.update(ids=ids.to(torch.int32), labels=labels.to(torch.int32), logp=logp.detach().contiguous(), old=old, ref=ref,
                   rewards=rewards, J=torch.stack(Js).detach(), loss=loss.detach().reshape(1))
    save_file(tensors, str(MODEL), metadata={"magic": MAGIC, "version": str(GOLDEN_VERSION), "config": json.dumps(QWEN2),
                                             "group": str(G), "clip_eps": str(CLIP_EPS), "beta": str(BETA),
                                             "adv_eps": str(ADV_EPS), "torch": torch.__version__,
                                             "transformers": transformers.__version__})
    print(f"wrote {MODEL}: loss {loss.item():.6f}")


if __name__ == "__main__":
    torch.manual_seed(0)
    math_golden()
    model_golden()
