"""whale train --sft: conversations in OpenAI's chat shape, laid out in ChatML (the format a
`whale data tokenizer` vocabulary gets), with the loss on the assistant's tokens only. The count
of positions carrying loss is checked against an independent rendering (Qwen2.5's ChatML
template in jinja2) tokenized by Hugging Face `tokenizers`; a tiny model's loss falls; bad lines
are refused with file:line. Models are qwen2:test on a 512-id vocabulary, so each run takes
seconds."""
import json
import random
import re
import shutil

import jinja2
import numpy as np
import pytest

from conftest import run_whale, require_package

# Qwen2.5's chat template without its tools branch (the default system prompt when none is given).
CHATML = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

STATS = re.compile(r"(\d+) conversations \((\d+) held out for validation\), (\d+) tokens in the (\S+) format, "
                   r"(\d+) of them the assistant's \(the loss's\); (\d+) cut to --ctx \d+, (\d+) dropped")


def write_jsonl(path, convs):
    path.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    return path


def sft(tok, data, out, *extra, check=True):
    return run_whale("train", "--init", "qwen2:test", "--sft", str(data), "--tokenizer", str(tok), "-o", str(out),
                     "--batch", "4", *extra, check=check)


def stats(p):
    m = STATS.search(p.stderr.decode())
    assert m, p.stderr.decode()
    n, val, tokens, fmt, loss, cut, dropped = m.groups()
    return dict(n=int(n), val=int(val), tokens=int(tokens), format=fmt, loss=int(loss), cut=int(cut),
                dropped=int(dropped))


KNOWN = [
    [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "2 plus 3 is 5."}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another, in 中文?"},
     {"role": "assistant", "content": "红色 (red)."}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello there, how are you today?"},
     {"role": "assistant", "content": "Well, thank you!\nAnd you?"}],
]


def reference_counts(tok, convs):
    """(tokens, assistant tokens) of convs by HF tokenizers over the jinja2 rendering: an
    assistant turn's tokens are those between the conversation so far with the generation prompt
    and the same plus the turn's text and its <|im_end|>."""
    require_package("tokenizers")
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(str(tok))
    tmpl = jinja2.Environment().from_string(CHATML)
    n = lambda text: len(t.encode(text, add_special_tokens=False).ids)
    total = loss = 0
    for c in convs:
        total += n(tmpl.render(messages=c, add_generation_prompt=False))
        for k, m in enumerate(c):
            if m["role"] == "assistant":
                head = tmpl.render(messages=c[:k], add_generation_prompt=True)
                loss += n(head + m["content"] + "<|im_end|>") - n(head)
    return total, loss


def test_only_assistant_tokens_carry_loss(tok, tmp_path):
    data = write_jsonl(tmp_path / "known.jsonl", KNOWN)
    s = stats(sft(tok, data, tmp_path / "run", "--steps", "1", "--ctx", "256", "--val-fraction", "0"))
    total, loss = reference_counts(tok, KNOWN)
    assert s["format"] == "chatml" and s["n"] == 3 and s["cut"] == 0 and s["dropped"] == 0
    assert (s["tokens"], s["loss"]) == (total, loss)
    # the user's and system's words never carry loss: longer questions leave the count unchanged
    longer = [[dict(m, content=m["content"] * 3) if m["role"] != "assistant" else m for m in c] for c in KNOWN]
    s2 = stats(sft(tok, write_jsonl(tmp_path / "longer.jsonl", longer), tmp_path / "run2", "--steps", "1", "--ctx",
                   "512", "--val-fraction", "0"))
    assert s2["loss"] == loss and s2["tokens"] > total


def additions(n, seed=1):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = r.randint(0, 99), r.randint(0, 99)
        out.append([{"role": "system", "content": "Add."}, {"role": "user", "content": f"{a}+{b}?"},
                    {"role": "assistant", "content": f"{a}+{b}={a + b}."}])
    return out


def test_sft_loss_falls(tok, tmp_path):
    data = write_jsonl(tmp_path / "add.jsonl", additions(200))
    p = sft(tok, data, tmp_path / "run", "--steps", "40", "--ctx", "64", "--lr", "1e-2", "--eval-every", "20")
    s = stats(p)
    assert s["n"] == 200 and s["val"] == 10 and s["dropped"] == 0
    m = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in m] == list(range(1, 41))
    first, last = m[0]["loss"], np.mean([r["loss"] for r in m[-5:]])
    assert first > 5.5 and last < first - 2.0, (first, last)  # ln(512) = 6.24 at the start
    vals = [r["val_loss"] for r in m if "val_loss" in r]
    assert len(vals) == 2 and vals[-1] < first - 2.0


def test_sft_resume_is_exact(tok, tmp_path):
    """The batch order comes from the saved random state, so a resumed SFT run replays the same
    examples: the same loss curve as one never stopped."""
    data = write_jsonl(tmp_path / "add.jsonl", additions(60))
    sft(tok, data, tmp_path / "a", "--steps", "8", "--ctx", "48")
    sft(tok, data, tmp_path / "b", "--steps", "8", "--ctx", "48", "--save-every", "4")
    shutil.rmtree(tmp_path / "b" / "step-000008")  # as if killed after step 4's checkpoint
    sft(tok, data, tmp_path / "b", "--steps", "8", "--ctx", "48", "--resume")
    la = [json.loads(l)["loss"] for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


def test_long_conversations_are_cut_and_counted(tok, tmp_path):
    conv = [{"role": "system", "content": "Tell."}, {"role": "user", "content": "A story?"},
            {"role": "assistant", "content": "Once upon a time " * 40}]
    s = stats(sft(tok, write_jsonl(tmp_path / "long.jsonl", [conv, KNOWN[2]]), tmp_path / "run", "--steps", "1",
                  "--ctx", "64", "--val-fraction", "0"))
    assert s["cut"] == 1 and s["n"] == 2 and s["dropped"] == 0
    full, _ = reference_counts(tok, [conv, KNOWN[2]])
    assert s["tokens"] == 65 + (full - reference_counts(tok, [conv])[0])


@pytest.mark.parametrize("line,why", [
    ("not json", "not JSON"),
    ('{"text": "plain"}', "needs {\"messages\""),
    ('{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}', "unknown role"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
    ('{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}', "no \"content\" string"),
])
def test_bad_lines_are_refused_with_file_and_line(tok, tmp_path, line, why):
    good = json.dumps({"messages": KNOWN[0]})
    data = tmp_path / "bad.jsonl"
    data.write_text(good + "\n\n" + line + "\n", encoding="utf-8")
    p = sft(tok, data, tmp_path / "run", "--steps", "1", check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and f"{data}:3: " in err and why in err, err
    assert "Traceback" not in err and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_padding_changes_nothing(tok, tmp_path):
    """Rows are padded to --ctx, and each batch is cut to its longest conversation before the
    forward pass: a run with a far longer --ctx has the same loss curve."""
    data = write_jsonl(tmp_path / "mixed.jsonl", KNOWN + additions(40))
    assert stats(sft(tok, data, tmp_path / "a", "--steps", "6", "--ctx", "96", "--eval-every", "3"))["cut"] == 0
    sft(tok, data, tmp_path / "b", "--steps", "6", "--ctx", "400", "--eval-every", "3")
    ma = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "grad_norm"):
        assert np.allclose([r[key] for r in ma], [r[key] for r in mb], rtol=1e-5), key
    assert [r["val_loss"] for r in ma if "val_loss" in r] == pytest.approx(
        [r["val_loss"] for r in mb if "val_loss" in r], rel=1e-5)
