"""whale train --lora-rank: low-rank adapters on a frozen dense model. Checked the way another tool
would use them: the checkpoint is PEFT's layout, PEFT loads it onto the base model with
transformers, and the loss PEFT computes on the validation window equals the trainer's val_loss;
the base's loss differs (so the adapters are really applied). --resume from a middle checkpoint
ends with the same adapter bits as a run never stopped (the optimizer state of the adapters
alone is saved and restored)."""
import json

import numpy as np
import pytest

from conftest import require_package, run_whale

QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 512, "hidden_size": 48,
         "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu"}
T = 32


@pytest.fixture(scope="module")
def base(tok, tmp_path_factory):
    """A trained-from-nothing Qwen2 checkpoint (Hugging Face directory), train shards of random
    ids and a validation shard of exactly one window of T + 1 tokens."""
    d = tmp_path_factory.mktemp("lora")
    (d / "config.json").write_text(json.dumps(QWEN2))
    data = d / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    rng.integers(0, 512, 3000).astype("<u4").tofile(data / "train-000.bin")
    rng.integers(0, 512, T + 1).astype("<u4").tofile(data / "val-000.bin")
    run_whale("train", "--config", str(d / "config.json"), "--data", str(data), "--tokenizer", str(tok), "-o",
              str(d / "base"), "--steps", "30", "--batch", "2", "--ctx", str(T), "--lr", "1e-2")
    return d / "base" / "step-000030", data


def lora_train(base, data, out, *extra):
    return run_whale("train", "--from", str(base), "--data", str(data), "-o", str(out), "--lora-rank", "4",
                     "--lora-targets", "q_proj,v_proj,down_proj", "--batch", "2", "--ctx", str(T), "--lr", "2e-2",
                     "--seed", "3", *extra)


def test_adapters_load_in_peft_with_the_trainers_loss(base, tmp_path):
    require_package("peft")
    import torch
    from peft import PeftModel
    from transformers import Qwen2ForCausalLM
    ck, data = base
    p = lora_train(ck, data, tmp_path / "run", "--steps", "12", "--eval-every", "12")
    assert "LoRA rank 4, alpha 8 on q_proj,v_proj,down_proj" in p.stderr.decode()
    out = tmp_path / "run" / "step-000012"
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    conf = json.loads((out / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == 4 and conf["lora_alpha"] == 8
    assert sorted(conf["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    val = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]["val_loss"]

    ids = torch.from_numpy(np.fromfile(data / "val-000.bin", "<u4").astype(np.int64))[None]
    model = Qwen2ForCausalLM.from_pretrained(str(ck), torch_dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        base_loss = model(input_ids=ids, labels=ids).loss.item()
    peft = PeftModel.from_pretrained(model, str(out))
    n_lora = sum(1 for n, _ in peft.named_parameters() if "lora_" in n)
    assert n_lora == 2 * 3 * QWEN2["num_hidden_layers"]
    with torch.no_grad():
        lora_loss = peft(input_ids=ids, labels=ids).loss.item()
    assert abs(lora_loss - val) < 1e-4 * max(1.0, abs(val)), (lora_loss, val)
    assert abs(lora_loss - base_loss) > 1e-3, (lora_loss, base_loss)


def test_resume_gives_the_same_adapters(base, tmp_path):
    import shutil
    from safetensors.numpy import load_file
    ck, data = base
    lora_train(ck, data, tmp_path / "whole", "--steps", "8")
    lora_train(ck, data, tmp_path / "cut", "--steps", "8", "--save-every", "4")
    shutil.rmtree(tmp_path / "cut" / "step-000008")
    lora_train(ck, data, tmp_path / "cut", "--steps", "8", "--save-every", "4", "--resume")
    a = load_file(str(tmp_path / "whole" / "step-000008" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "step-000008" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) == 12
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(np.abs(a[k]).max() > 0 for k in a if "lora_B" in k)  # B moved from its zero start


def test_lora_refusals(base, tmp_path):
    ck, data = base
    p = run_whale("train", "--init", "qwen2:test", "--data", str(data), "--tokenizer", str(ck / "tokenizer.json"),
                  "-o", str(tmp_path / "r"), "--steps", "1", "--lora-rank", "4", check=False)
    assert p.returncode == 2 and "--lora-rank needs --from" in p.stderr.decode()
    p = run_whale("train", "--from", str(ck), "--data", str(data), "-o", str(tmp_path / "r2"), "--steps", "1",
                  "--lora-rank", "4", "--lora-targets", "q_proj,lm_head", check=False)
    assert p.returncode == 2 and "lm_head" in p.stderr.decode()
    for bad, why in ((["--lora-rank", "5000"], "--lora-rank must be 1 to 1024"),
                     (["--lora-rank", "0"], "--lora-rank must be 1 to 1024"),  # not a silent full fine-tune
                     (["--lora-rank", "4", "--lora-alpha", "-3"], "--lora-alpha must be above 0"),
                     (["--lora-alpha", "8"], "need --lora-rank")):
        p = run_whale("train", "--from", str(ck), "--data", str(data), "-o", str(tmp_path / "r3"), "--steps", "1",
                      *bad, check=False)
        assert p.returncode == 2 and why in p.stderr.decode(), (bad, p.stderr.decode())
