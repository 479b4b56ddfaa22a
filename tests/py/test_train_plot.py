"""whale train plot: a run's metrics.jsonl drawn by gnuplot into PNGs (valid files of the stated
size, one per quantity the run recorded), and clear errors when gnuplot or the metrics are
missing. Skips, saying so, where gnuplot is not installed (scripts/setup installs gnuplot-nox)."""
import json
import os
import shutil
import struct
import subprocess

import pytest

from conftest import WHALE, run_whale, shared_file


def png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk; fails on anything else."""
    b = path.read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", path
    length, kind = struct.unpack(">I4s", b[8:16])
    assert kind == b"IHDR" and length == 13, path
    return struct.unpack(">II", b[16:24])


needs_gnuplot = pytest.mark.skipif(shutil.which("gnuplot") is None,
                                   reason="gnuplot is not installed (scripts/setup installs gnuplot-nox)")


@needs_gnuplot
def test_plot_a_real_run(tmp_path):
    src = shared_file("corpus/multilingual.txt")
    run_whale("data", "tokenizer", str(src), "--vocab-size", "300", "-o", str(tmp_path / "tok.json"))
    conv = [{"role": "system", "content": "Add."}, {"role": "user", "content": "1+2?"},
            {"role": "assistant", "content": "3."}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"messages": conv}) + "\n" for _ in range(20)))
    run_whale("train", "--init", "qwen2:test", "--sft", str(tmp_path / "c.jsonl"), "--tokenizer",
              str(tmp_path / "tok.json"), "-o", str(tmp_path / "run"), "--steps", "6", "--batch", "2", "--ctx", "48",
              "--eval-every", "3")
    p = run_whale("train", "plot", str(tmp_path / "run"))
    names = {os.path.basename(l) for l in p.stdout.decode().split()}
    assert names == {"loss.png", "lr.png", "tokens_per_s.png", "mfu.png"}  # a dense run: no expert load or MTP
    for n in names:
        assert png_size(tmp_path / "run" / n) == (900, 500)


@needs_gnuplot
def test_plot_every_quantity(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = []
    for s in range(1, 21):
        r = {"step": s, "loss": 6 - 0.1 * s, "lr": 1e-3, "tokens_per_s": 500 + s, "mfu": 0.3, "expert_load": 1.5,
             "mtp_loss": 6.5 - 0.1 * s}
        if s % 5 == 0:
            r["val_loss"] = 6.1 - 0.1 * s
        rows.append(json.dumps(r))
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    p = run_whale("train", "plot", str(run), "-o", str(tmp_path / "png"))
    want = {"loss.png", "lr.png", "tokens_per_s.png", "mfu.png", "expert_load.png", "mtp_loss.png"}
    assert {os.path.basename(l) for l in p.stdout.decode().split()} == want
    assert {f.name for f in (tmp_path / "png").iterdir()} == want  # the table and script are removed
    for n in want:
        assert png_size(tmp_path / "png" / n) == (900, 500)


def test_plot_errors(tmp_path):
    p = run_whale("train", "plot", str(tmp_path / "nothing"), check=False)
    assert p.returncode == 1 and b"metrics.jsonl" in p.stderr
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1}\n')
    p = run_whale("train", "plot", str(tmp_path), check=False)
    assert p.returncode == 1 and b"metrics.jsonl:1: not a metrics line" in p.stderr
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\n')
    empty = tmp_path / "bin"
    empty.mkdir()  # a PATH without gnuplot
    p = subprocess.run([str(WHALE), "train", "plot", str(tmp_path)], capture_output=True, env={"PATH": str(empty)})
    assert p.returncode == 1 and b"gnuplot is not installed" in p.stderr, p.stderr
