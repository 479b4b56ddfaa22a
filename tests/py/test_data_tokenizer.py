"""`whale data tokenizer`: a byte-level BPE vocabulary trained in C, written as a tokenizer.json
that Hugging Face `tokenizers` and `whale tokenize` load with the same ids.

Trained on ../shared/corpus/multilingual.txt plus a synthetic Chinese + code + emoji text made
here; checked on held-out text (English, Chinese, code, emoji, odd whitespace, the added
tokens): ids equal between tokenizers and Whale, decode gives the bytes back, the vocabulary
has exactly --vocab-size ids, two runs give the same file, the merges of a hand-worked example,
compression improves with the vocabulary, streamed spans count as the whole file would, and
bad input is refused with a message that names it."""
import json
import re
import subprocess

import pytest
from tokenizers import Tokenizer

from conftest import WHALE, run_whale, shared_file

SYNTH = (
    "深度求索发布了新的推理模型，它在数学、代码和自然语言推理任务上表现出色。"
    "我们在训练中使用了强化学习。用户可以通过网页或者接口调用这个模型。\n"
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }  // dot product\n"
    "🐋 whales 🐳 swim 🌊 — 🎉🎉 ✅ done; 👨‍👩‍👧 family; 🇨🇳🇺🇸 flags\n"
    "<|im_start|>user\n你好！<|im_end|>\n<|im_start|>assistant\n<think>想一想</think>你好。<|im_end|><|endoftext|>\n"
)

HELD_OUT = [
    "The quick brown fox jumps over the lazy dog. It's a sentence we've all typed; they'll type it again.",
    "Byte-level BPE never meets an unknown character: every byte has a token of its own.",
    "今天天气很好，我们去公园散步吧。机器学习模型需要大量的数据进行训练。",
    "東京は日本の首都です。서울은 한국의 수도입니다. Москва — столица России.",
    "static int add(int a, int b) {\n\treturn a + b; /* sum */\n}\n",
    "import numpy as np\nx = np.arange(10) ** 2\nprint(f\"{x.sum():,}\")\n",
    "emoji 🐋🐋🐋 🧑🏽‍💻 👍🏻 ❤️ 🇯🇵 and ZWJ 👩‍❤️‍💋‍👨",
    "odd   whitespace\t\t tabs\r\nCRLF\n\n\n   trailing   \u00a0nbsp\u3000ideographic  ",
    "numbers 1234567890 3.14159 1e-9 0xFF 12,345,678",
    "café vs cafe\u0301 (NFC), ﬁ ligature, Ａ full width, Ω",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<think>Let me think step by step.</think>The answer is 42.<|im_end|><|endoftext|>",
    "almost special: <|im_start| <think >  </ think> <|endoftext|x",
    "",
    " ",
    "\n",
]

ENGLISH = (
    "When in the course of building software one finds that the same small task is repeated many "
    "times, it is natural to write a function for it. The function is then tested, documented and "
    "reused, and the program becomes shorter and easier to read. Good names matter more than clever "
    "code: a reader should understand what a function does from its name and its comment alone. "
    "Errors should be reported with enough detail that the user can act on them, and resources "
    "should be released by whoever acquired them. These habits are simple, but they are what "
    "separates a program that can be maintained for years from one that must be rewritten.\n"
) * 3


def train(inputs, out, vocab, *extra, check=True):
    return run_whale("data", "tokenizer", *map(str, inputs), "--vocab-size", str(vocab), "-o", str(out), *extra,
                     check=check)


def whale_ids(path, texts, special=True):
    """Whale's ids for each text, in one call (--jsonl: one JSON string per line)."""
    lines = "".join(json.dumps(t) + "\n" for t in texts)
    p = run_whale("tokenize", "-m", str(path), "--jsonl", *(["--special"] if special else []), input=lines.encode())
    out = p.stdout.decode().split("\n")
    return [[int(x) for x in out[i].split()] for i in range(len(texts))]


def plain_ids(tok, text):
    """tokenizers' pipeline without added-token extraction: what plain text must become."""
    if tok.normalizer is not None:
        text = tok.normalizer.normalize_str(text)
    ids = []
    for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
        ids += [t.id for t in tok.model.tokenize(piece)]
    return ids


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    synth = d / "synthetic.txt"
    synth.write_text(SYNTH * 20, encoding="utf-8")
    return [shared_file("corpus/multilingual.txt"), synth]


@pytest.fixture(scope="module")
def t8k(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("t8k") / "tokenizer.json"
    p = train(corpus, out, 8192)
    assert b"8192 ids" in p.stderr, p.stderr
    return out


def test_ids_equal_tokenizers(t8k):
    tok = Tokenizer.from_file(str(t8k))
    # with the added tokens recognized (whale --special) == tokenizers' encode()
    got = whale_ids(t8k, HELD_OUT)
    for text, ids in zip(HELD_OUT, got):
        assert ids == tok.encode(text).ids, text
    # plain text: added-token spellings are text, as tokenizers' pipeline without extraction
    got = whale_ids(t8k, HELD_OUT, special=False)
    for text, ids in zip(HELD_OUT, got):
        assert ids == plain_ids(tok, text), text
    assert tok.token_to_id("<|im_end|>") in tok.encode(HELD_OUT[10]).ids
    # every line of the corpus too (training text, but 5,544 more cases)
    lines = [l.replace("\\n", "\n") for l in shared_file("corpus/multilingual.txt").read_text("utf-8").split("\n") if l]
    got = whale_ids(t8k, lines)
    bad = [l for l, ids, e in zip(lines, got, tok.encode_batch(lines)) if ids != e.ids]
    assert not bad, f"{len(bad)} lines differ, first {bad[0]!r}"


def test_decode_round_trips(t8k):
    tok = Tokenizer.from_file(str(t8k))
    for text, ids in zip(HELD_OUT, whale_ids(t8k, HELD_OUT)):
        norm = tok.normalizer.normalize_str(text)  # NFC, as Qwen2: decode gives the normalized text
        assert tok.decode(ids, skip_special_tokens=False) == norm
        back = run_whale("tokenize", "-m", str(t8k), "--decode", input=" ".join(map(str, ids)).encode()).stdout
        assert back == norm.encode("utf-8"), text
    # bytes of every byte value decode back (the 256 byte tokens)
    raw = bytes(range(256))
    ids = [tok.token_to_id(c) for c in "".join(bytes_to_unicode()[b] for b in raw)]
    back = run_whale("tokenize", "-m", str(t8k), "--decode", input=" ".join(map(str, ids)).encode()).stdout
    assert back == raw


def bytes_to_unicode():
    """GPT-2's byte -> character map (the standard table, recomputed here to check ours)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def test_vocabulary_size_and_layout(t8k):
    j = json.loads(t8k.read_text("utf-8"))
    vocab, added = j["model"]["vocab"], j["added_tokens"]
    # --vocab-size counts everything: 256 bytes + merged tokens + 5 added tokens
    assert len(vocab) + len(added) == 8192
    assert sorted(list(vocab.values()) + [a["id"] for a in added]) == list(range(8192))
    assert Tokenizer.from_file(str(t8k)).get_vocab_size(with_added_tokens=True) == 8192
    # the byte tokens first, in the byte-level alphabet's order ('!' is 0), as GPT-2/Qwen
    b2u = bytes_to_unicode()
    assert [vocab[c] for c in sorted(b2u.values())] == list(range(256))
    assert [a["content"] for a in added] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    assert [a["special"] for a in added] == [True, True, True, False, False]
    assert [a["id"] for a in added] == list(range(8187, 8192))
    assert j["normalizer"] == {"type": "NFC"}
    assert j["pre_tokenizer"]["pretokenizers"][-1]["type"] == "ByteLevel"
    # each merge's result is in the vocabulary with an id above both parts
    for m in j["model"]["merges"][:2000]:
        a, b = m.split(" ")
        assert vocab[a + b] > max(vocab[a], vocab[b]) or vocab[a + b] >= 256


def test_deterministic(corpus, t8k, tmp_path):
    again = tmp_path / "again.json"
    train(corpus, again, 8192)
    assert again.read_bytes() == t8k.read_bytes()
    # a directory is its files in name order
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.txt").write_bytes(corpus[0].read_bytes())
    (d / "b.txt").write_bytes(corpus[1].read_bytes())
    (d / ".hidden").write_text("ignored ignored ignored")
    viadir = tmp_path / "viadir.json"
    train([d], viadir, 8192)
    assert viadir.read_bytes() == t8k.read_bytes()


def test_hand_worked_merges(tmp_path):
    """aaabdaaabac: aa (4 times), then ab and aa+a tie at 2 and the smaller left id (the byte 'a')
    wins, then aa+ab. The same three merges as the textbook example (Z=aa, Y=ab, X=ZY)."""
    src = tmp_path / "abc.txt"
    src.write_text("aaabdaaabac")
    out = tmp_path / "abc.json"
    train([src], out, 259, "--no-default-special")
    j = json.loads(out.read_text())
    assert j["model"]["merges"] == ["a a", "a b", "aa ab"]
    assert [j["model"]["vocab"][t] for t in ("aa", "ab", "aaab")] == [256, 257, 258]
    tok = Tokenizer.from_file(str(out))
    assert tok.encode("aaabdaaabac").tokens == ["aaab", "d", "aaab", "a", "c"]
    assert whale_ids(out, ["aaabdaaabac"])[0] == tok.encode("aaabdaaabac").ids


def tokens_per_byte(path, text):
    return len(whale_ids(path, [text])[0]) / len(text.encode())


def test_compression_improves_with_vocabulary(corpus, t8k, tmp_path):
    t1k = tmp_path / "t1k.json"
    train(corpus, t1k, 1024)
    small, large = tokens_per_byte(t1k, ENGLISH), tokens_per_byte(t8k, ENGLISH)
    assert large < small * 0.9, (small, large)
    assert small < 0.6  # even 1k ids beat bytes on English


def test_streamed_spans_count_as_the_whole_file(tmp_path):
    """A text file over one read block (1 MiB) is cut into spans after newlines; the same bytes as
    one JSON-lines document give the same merges, so the cuts split nothing."""
    text = "".join(f"{i}: {SYNTH}  line {i * 7919 % 1000}\n    indented {i}\n\n" for i in range(5000))
    assert len(text.encode()) > (3 << 20)
    (tmp_path / "big.txt").write_text(text)
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": text}) + "\n")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    pa = train([tmp_path / "big.txt"], a, 2048, "--min-frequency", "1")
    pb = train([tmp_path / "big.jsonl"], b, 2048, "--min-frequency", "1")
    # "N words, M distinct": a cut inside a piece ("\n" | "\n") would make one word two
    counts = [re.search(rb"([0-9]+) words, ([0-9]+) distinct", p.stderr).groups() for p in (pa, pb)]
    assert counts[0] == counts[1]
    assert a.read_bytes() == b.read_bytes()


def test_training_text_is_normalized_as_encoding_will_be(tmp_path):
    """Qwen2's vocabularies NFC-normalize input: decomposed text (e + U+0301) is learned in its
    composed form, so encoding (which normalizes first) finds the learned word whole."""
    src = tmp_path / "nfd.txt"
    src.write_text("cafe\u0301 au lait, " * 300 + "\n" + "x" * 40 + "\n")
    out = tmp_path / "nfd.json"
    train([src], out, 300, "--no-default-special")
    tok = Tokenizer.from_file(str(out))
    for text in (" cafe\u0301", " caf\u00e9"):
        assert len(tok.encode(text).ids) == 1, tok.encode(text).tokens
        assert whale_ids(out, [text])[0] == tok.encode(text).ids


@pytest.mark.parametrize("pre", ["deepseek-v3", "llama3", "deepseek-llm", "deepseek-coder", "gpt2"])
def test_other_pre_tokenizers(corpus, tmp_path, pre):
    out = tmp_path / f"{pre}.json"
    train(corpus, out, 4096, "--pre", pre)
    j = json.loads(out.read_text("utf-8"))
    if pre == "deepseek-v3":
        assert j["normalizer"] is None and len(j["pre_tokenizer"]["pretokenizers"]) == 4
    assert j["model"]["ignore_merges"] == (pre == "llama3")  # as Llama 3's own file
    tok = Tokenizer.from_file(str(out))
    for text, ids in zip(HELD_OUT, whale_ids(out, HELD_OUT)):
        assert ids == tok.encode(text).ids, text


def test_bad_input(tmp_path):
    ok = tmp_path / "ok.txt"
    ok.write_text("hello world " * 50)
    out = tmp_path / "o.json"
    # a missing file: named, nothing written
    p = train([tmp_path / "nope.txt"], out, 1000, check=False)
    assert p.returncode == 1 and b"nope.txt: No such file" in p.stderr and not out.exists()
    # an output that cannot be written: refused before reading
    p = train([ok], tmp_path / "no" / "dir.json", 300, check=False)
    assert p.returncode == 1 and b"cannot write" in p.stderr
    # too small a vocabulary: refused before reading, saying what it needs
    p = train([ok], out, 260, check=False)
    assert p.returncode == 1 and b"too small" in p.stderr and b"261" in p.stderr
    p = train([ok], out, 256, "--no-default-special", check=False)
    assert p.returncode == 0
    # invalid UTF-8: each bad byte read as U+FFFD, counted, and the vocabulary still loads
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait \xff\xfe and more text text text\n" * 20)
    p = train([bad], out, 300)
    assert b"60 bytes were not valid UTF-8" in p.stderr
    assert "\ufffd" in Tokenizer.from_file(str(out)).decode(whale_ids(out, ["\ufffd"])[0])
    # a JSON line without "text": file and line named
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"text": "fine"}\n\n{"content": "x"}\n')
    p = train([jl], out, 300, check=False)
    assert p.returncode == 1 and b"c.jsonl:3:" in p.stderr and b'"text"' in p.stderr
    # arguments
    for args in ([], [str(ok), "-o", str(out)], [str(ok), "--vocab-size", "x", "-o", str(out)],
                 [str(ok), "--vocab-size", "300", "-o", str(out), "--min-frequency", "0"],
                 [str(ok), "--vocab-size", "300", "-o", str(out), "--pre", "nonesuch"]):
        p = run_whale("data", "tokenizer", *args, check=False)
        assert p.returncode != 0 and p.stderr, args
    assert b"known: " in p.stderr  # the unknown pre-tokenizer lists the known ones
    # a special token given twice
    p = train([ok], out, 300, "--special", "<|im_end|>", check=False)
    assert p.returncode == 1 and b"given twice" in p.stderr


def test_help():
    p = run_whale("data", "tokenizer", "--help")
    h = p.stdout.decode()
    for s in ("--vocab-size", "--min-frequency", "--special", "--pre", ".jsonl", "directory", "256 byte tokens",
              "U+FFFD"):
        assert s in h, s
