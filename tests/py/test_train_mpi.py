"""whale train under mpirun: two ranks with --accum 1 end a run with the same bits as one process
with --accum 2 (the same global batch): the parameters (model.safetensors, the routers' selection
biases included), the optimizer state and every logged loss, val loss, learning rate, gradient norm
and expert load. Bit-identical, not merely close, because each rank trains on exactly the
micro-batch the single process draws in that position, a step's micro-batches are summed whole,
and ranks are summed in rank order (src/train/dist.h); any slip in the data split, the loss
scale, the reduction or the selection-bias update shows up as a changed bit. A resumed run under
MPI continues to the same parameters. Models and shards as in test_train.py (qwen2:test and
deepseek2:test on a 512-id vocabulary), so each run takes about a second. Skipped, saying what
is missing, without mpirun or when whale was built without MPI."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import WHALE, run_whale, shared_file

STEPS = 4


def args(shards, out, shape, *extra):
    return ["train", "--init", shape, "--data", str(shards), "-o", str(out), "--batch", "4", "--ctx", "48",
            "--steps", str(STEPS), "--eval-every", "2", "--bias-update", "0.01", *extra]


def mpirun(n, *whale_args):
    """`mpirun -np n whale ...` on this machine (oversubscribed: it may have fewer cores than ranks)."""
    mp = shutil.which("mpirun")
    if not mp:
        pytest.skip("mpirun not found (Debian: openmpi-bin; scripts/setup installs it)")
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root unless told twice
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run([mp, "-np", str(n), "--oversubscribe", "--bind-to", "none", str(WHALE), *whale_args],
                       capture_output=True, env=env, timeout=60)
    if b"built without MPI" in p.stderr:
        pytest.skip(f"{WHALE} was built without MPI (Debian: libopenmpi-dev; reconfigure and rebuild)")
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p


def metrics(run):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")} for r in rows]


def same_run(a, b):
    last = f"step-{STEPS:06d}"
    assert (a / last / "model.safetensors").read_bytes() == (b / last / "model.safetensors").read_bytes()
    assert (a / last / "optimizer.safetensors").read_bytes() == (b / last / "optimizer.safetensors").read_bytes()
    assert metrics(a) == metrics(b)


@pytest.mark.parametrize("shape", ["qwen2:test", "deepseek2:test"])
def test_two_ranks_match_one_process(shards, tmp_path, shape):
    run_whale(*args(shards, tmp_path / "one", shape, "--accum", "2"))
    p = mpirun(2, *args(shards, tmp_path / "two", shape, "--accum", "1"))
    assert b"ranks: 2; global batch 4 x 48 x 1 x 2 = 384 tokens per step" in p.stderr
    # rank 0 alone reports and writes: one summary, one final line, one metrics line per step
    assert p.stderr.count(b"MFLOP per token") == 1 and p.stdout.decode().split() == [str(tmp_path / "two" / "step-000004")]
    m = metrics(tmp_path / "two")
    assert [r["step"] for r in m] == list(range(1, STEPS + 1)) and "val_loss" in m[1]
    if shape.startswith("deepseek"):
        assert all("expert_load" in r for r in m)
    same_run(tmp_path / "one", tmp_path / "two")


def test_resume_under_mpi(shards, tmp_path):
    """Rank 0 loads the newest checkpoint and hands it to the others; the run ends where an
    uninterrupted one does (the step-4 checkpoint is removed to stand for a run killed after 2)."""
    shape = "deepseek2:test"  # the selection biases and expert loads must travel too
    run_whale(*args(shards, tmp_path / "one", shape, "--accum", "2"))
    b = tmp_path / "two"
    mpirun(2, *args(shards, b, shape, "--accum", "1", "--save-every", "2"))
    shutil.rmtree(b / f"step-{STEPS:06d}")
    p = mpirun(2, *args(shards, b, shape, "--accum", "1", "--save-every", "2", "--resume"))
    assert p.stderr.count(b"resuming from") == 1
    same_run(tmp_path / "one", b)
