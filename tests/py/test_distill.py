"""whale distill: rejection sampling of a teacher's traces into SFT data, and the loop it feeds.
The teacher is a tiny model taught by `whale train --sft` to answer eight sums in the
think-then-answer format, and asked plainly in two paragraphs without tags (right on six, wrong
on two, so the verifier has something to reject);
distill must keep only verified, well-formatted replies, phrase the user turn as the chat prompt
of `whale eval` words it, and write conversations that `whale train --sft` reads back."""
import json

import pytest

from conftest import run_whale

INSTRUCTION = "\n\nThink step by step inside <think> </think> tags, then write only the final answer after </think>."
SUMS = [(2, 3), (4, 4), (10, 7), (6, 1), (8, 5), (3, 9), (7, 7), (5, 2)]
WRONG = {(6, 1), (5, 2)}  # the teacher learns a wrong answer for these


@pytest.fixture(scope="module")
def teacher(tok, tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    conv = []
    for a, b in SUMS:
        ans = a + b + (1 if (a, b) in WRONG else 0)
        conv.append({"messages": [{"role": "user", "content": f"What is {a} + {b}?{INSTRUCTION}"},
                                  {"role": "assistant", "content": f"<think>{a} + {b} = {ans}</think>{ans}"}]})
        conv.append({"messages": [{"role": "user", "content": f"What is {a} + {b}?"},  # asked plainly: no tags
                                  {"role": "assistant", "content": f"{a} + {b} = {ans}\n\nSo {ans}."}]})
    (d / "sft.jsonl").write_text("".join(json.dumps(c) + "\n" for c in conv))
    # F32: the same bits on every CPU (BF16, the default where the CPU has AVX512_BF16, teaches this
    # tiny teacher other slips, e.g. "3 + 4 = 13" for 4 + 4, and the cold-start test reads its working)
    run_whale("train", "--init", "qwen2:test", "--sft", str(d / "sft.jsonl"), "--tokenizer", str(tok), "-o",
              str(d / "t"), "--steps", "300", "--ctx", "192", "--batch", "8", "--lr", "1e-2", "--val-fraction", "0",
              "--precision", "f32")
    (d / "task.jsonl").write_text("".join(json.dumps({"prompt": f"What is {a} + {b}?", "answer": a + b}) + "\n"
                                          for a, b in SUMS))
    return d / "t" / "step-000300", d / "task.jsonl"


def test_keeps_only_verified_traces(teacher, tmp_path):
    model, task = teacher
    out = tmp_path / "traces.jsonl"
    p = run_whale("distill", "-m", str(model), "--task", str(task), "--n", "8", "--samples", "3", "--temp", "0.3",
                  "--max-tokens", "24", "--per-problem", "0", "-o", str(out))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines, p.stdout.decode()
    seen = set()
    for c in lines:
        user, asst = c["messages"]
        assert user["role"] == "user" and asst["role"] == "assistant"
        assert user["content"].endswith(INSTRUCTION)
        a, b = map(int, user["content"].split("?")[0].removeprefix("What is ").split(" + "))
        assert (a, b) not in WRONG  # the teacher's wrong answers were rejected
        assert asst["content"].endswith(str(a + b)) and "</think>" in asst["content"]
        seen.add((a, b))
        assert (user["content"], asst["content"]) not in {(x["messages"][0]["content"], x["messages"][1]["content"])
                                                           for x in lines if x is not c}  # no repeats
    assert len(seen) >= 4, seen
    stats = p.stdout.decode()
    assert f"{len(lines)} examples from {len(seen)} of 8 problems" in stats, stats
    # the traces are SFT data as whale train reads it
    run_whale("train", "--from", str(model), "--sft", str(out), "-o", str(tmp_path / "student"), "--steps", "2",
              "--ctx", "192", "--val-fraction", "0")


def test_eval_sees_the_teachers_accuracy(teacher):
    model, task = teacher
    r = json.loads(run_whale("eval", "-m", str(model), "--task", str(task), "--n", "8", "--max-tokens", "24",
                             "--json").stdout)
    assert 0.5 <= r["pass_at_1"] <= 0.75 + 1e-9, r  # 6 of 8 taught right; the tiny model may miss one
    assert r["format_rate"] >= 0.75, r


def test_refuses_the_r1zero_prompt_and_missing_args(teacher, tmp_path):
    model, task = teacher
    p = run_whale("distill", "-m", str(model), "--task", str(task), check=False)
    assert p.returncode == 2 and "-o FILE" in p.stderr.decode()
    p = run_whale("distill", "-m", str(model), "--task", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x"),
                  check=False)
    assert p.returncode == 1 and "none.jsonl" in p.stderr.decode()


def test_plain_prompt_reformats_a_cold_start(teacher, tmp_path):
    """--prompt plain: the problem as a user asks it; the teacher's untagged working becomes the
    reasoning and its last paragraph the answer, as R1's cold-start data was post-processed."""
    model, task = teacher
    out = tmp_path / "cold.jsonl"
    run_whale("distill", "-m", str(model), "--task", str(task), "--n", "8", "--samples", "2", "--temp", "0.3",
              "--max-tokens", "24", "--prompt", "plain", "-o", str(out))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) >= 4
    for c in lines:
        user, asst = c["messages"]
        a, b = map(int, user["content"].removeprefix("What is ").removesuffix("?").split(" + "))
        assert (a, b) not in WRONG
        assert asst["content"] == f"<think>\n{a} + {b} = {a + b}\n</think>\n\nSo {a + b}.", asst
    p = run_whale("distill", "-m", str(model), "--task", str(task), "--prompt", "r1zero", "-o", str(out), check=False)
    assert p.returncode == 2 and "chat or plain" in p.stderr.decode()
