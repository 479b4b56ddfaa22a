"""The layering the public API promises (include/whale.h): the CLI's commands and the service
reach models and kernels only through libwhale. Only the tools about the model itself (bench,
perplexity, logits, info) may include headers under src/model or src/kernels — directly or
through another header."""
import pathlib
import re

from conftest import REPO

SRC = REPO / "src"
MODEL_TOOLS = {"cmd_bench.c", "cmd_perplexity.c", "cmd_logits.c", "cmd_info.c"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def resolve(name):
    for base in (SRC, REPO / "include"):
        if (base / name).is_file():
            return base / name
    return None


def closure(path):
    """Every project header path reaches, with the chain that reaches it."""
    seen, todo = {}, [(path, ())]
    while todo:
        p, chain = todo.pop()
        for inc in INCLUDE.findall(p.read_text()):
            h = resolve(inc)
            if h and h not in seen:
                seen[h] = chain + (inc,)
                todo.append((h, seen[h]))
    return seen


def test_cli_and_service_use_only_the_public_api():
    files = [p for p in (SRC / "cli").glob("*.[ch]") if p.name not in MODEL_TOOLS] + list((SRC / "service").glob("*.[ch]"))
    assert len(files) > 20
    bad = []
    for f in files:
        for h, chain in closure(f).items():
            rel = h.relative_to(SRC) if SRC in h.parents else h
            if str(rel).startswith(("model/", "kernels/")):
                bad.append(f"{f.relative_to(REPO)} -> {' -> '.join(chain)}")
    assert not bad, "\n".join(bad)


def test_generation_and_the_service_see_whale_h_only():
    """run, chat, serve and the service generate and read vocabularies only through whale.h: no
    engine, tokenizer, model or kernel header at all (base/ utilities and their own folders may)."""
    files = [SRC / "cli" / f for f in ("cmd_run.c", "cmd_chat.c", "cmd_serve.c", "gen.c", "gen.h")]
    files += list((SRC / "service").glob("*.[ch]"))
    bad = []
    for f in files:
        for h, chain in closure(f).items():
            rel = str(h.relative_to(SRC)) if SRC in h.parents else str(h)
            if rel.startswith(("model/", "kernels/", "engine/", "tokenizer/", "lib/")):
                bad.append(f"{f.relative_to(REPO)} -> {' -> '.join(chain)}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_include(tmp_path):
    """The closure follows headers (so the test above can fail)."""
    f = SRC / "cli" / "cmd_logits.c"
    assert any(str(h).endswith("model/model.h") for h in closure(f))


def test_eval_and_rl_see_whale_h_rl_and_base_only():
    """src/rl (tasks, verifiers, eval, the GRPO math) sits on the public API: it and `whale eval`
    include only whale.h, src/rl and src/base, so a GRPO loop built on it generates as any program
    would. The loop itself (grpo_run) and `whale grpo` also hold the model being trained
    (src/train), but still generate only through whale.h: no engine, model, kernel or tokenizer
    header."""
    loop = {"grpo_run.c", "grpo_run.h", "cmd_grpo.c"}
    files = [SRC / "cli" / f for f in ("cmd_eval.c", "cmd_grpo.c", "cmd_distill.c")] + list((SRC / "rl").glob("*.[ch]"))
    assert len(files) >= 9
    bad = []
    for f in files:
        allowed = ("rl/", "base/", "train/") if f.name in loop else ("rl/", "base/")
        for h, chain in closure(f).items():
            rel = str(h.relative_to(SRC)) if SRC in h.parents else h.name
            if not (rel == "whale.h" or rel.startswith(allowed)):
                bad.append(f"{f.relative_to(REPO)} -> {' -> '.join(chain)}")
    assert not bad, "\n".join(bad)
