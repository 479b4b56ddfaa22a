#!/usr/bin/env python3
"""Make the LoRA goldens Whale's adapter tests compare against, with transformers + PEFT
(PyTorch, CPU). Run by hand where they are installed (pip install torch transformers peft
safetensors); commit what it writes:

  tests/golden/lora/<name>/adapter_config.json, adapter_model.safetensors
        random LoRA adapters saved by PEFT itself (save_pretrained: its own file layout and
        tensor names) for the tiny random models of tiny_models.py:
          qwen2     r 4, alpha 8 (scale 2), every projection of both layers
          qwen2_rs  r 2, alpha 4, use_rslora (scale 4/sqrt(2)), q_proj and v_proj only
          llama     r 4, alpha 16 (scale 4), every projection (checks GGUF's q/k row order)
        B is random too (PEFT initializes it to zero, which would test nothing).
  tests/golden/lora_logits.json
        magic, version, the prompt, and per adapter the logits of every position of
        tiny_models.PROMPT with the adapter applied by PEFT (and the base's, to show the
        adapter matters).

Usage: python3 tests/golden/make_lora_goldens.py"""
import json
import pathlib
import shutil
import sys
import tempfile

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tiny_models  # noqa: E402

MAGIC = "whale-lora-golden"


def rows(t):
    """Logits as lists of 8-significant-digit floats: float32's precision, half the file."""
    return [[float("%.8g" % v) for v in r] for r in t.tolist()]


VERSION = 1
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTERS = {
    "qwen2": dict(arch="qwen2", r=4, alpha=8, rslora=False, targets=ALL, seed=21),
    "qwen2_rs": dict(arch="qwen2", r=2, alpha=4, rslora=True, targets=["q_proj", "v_proj"], seed=22),
    "llama": dict(arch="llama", r=4, alpha=16, rslora=False, targets=ALL, seed=23),
}


def main():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    out = {"magic": MAGIC, "version": VERSION, "prompt": tiny_models.PROMPT, "base": {}, "adapters": {}}
    ids = torch.tensor([tiny_models.PROMPT])
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in ADAPTERS.items():
            d = tiny_models.write(a["arch"], pathlib.Path(tmp) / a["arch"])
            base = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32, attn_implementation="eager")
            with torch.no_grad():
                out["base"][a["arch"]] = rows(base(ids).logits[0])
            cfg = LoraConfig(r=a["r"], lora_alpha=a["alpha"], use_rslora=a["rslora"], target_modules=a["targets"],
                             lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
            pm = get_peft_model(base, cfg)
            g = torch.Generator().manual_seed(a["seed"])
            with torch.no_grad():
                for n, p in pm.named_parameters():
                    if "lora_A" in n or "lora_B" in n:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            pm.eval()
            with torch.no_grad():
                out["adapters"][name] = rows(pm(ids).logits[0])
            dst = HERE / "lora" / name
            shutil.rmtree(dst, ignore_errors=True)
            pm.save_pretrained(str(dst))
            (dst / "README.md").unlink(missing_ok=True)  # PEFT's model card: nothing a test reads
            cj = json.loads((dst / "adapter_config.json").read_text())
            cj["base_model_name_or_path"] = f"tiny_models.py:{a['arch']}"  # not the temporary directory
            cj["target_modules"] = sorted(cj["target_modules"])  # PEFT keeps a set: a stable order
            (dst / "adapter_config.json").write_text(json.dumps(cj, indent=2, sort_keys=True) + "\n")
            print(f"wrote lora/{name}")
    (HERE / "lora_logits.json").write_text(json.dumps(out))
    print("wrote lora_logits.json")


if __name__ == "__main__":
    main()
