"""`whale data prepare` (src/data, docs/DATA.md): text, JSONL and directories into token shards.

The shards are checked against Hugging Face `tokenizers` on a real vocabulary (Qwen2.5's, the
family of the R1-Distill bases, which has <|endoftext|>): every document between end-of-text ids must be exactly the ids
`tokenizers` gives for one input document. Curation is checked reason by reason on crafted inputs;
resuming after SIGKILL must give the same bytes as a run that was never interrupted."""
import json
import os
import pathlib
import random
import signal
import struct
import subprocess
import time

import pytest

from conftest import DEFAULT_MODEL, REPO, WHALE, reference_json, shared_file

WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office door health person "
         "art war history party result change morning reason research girl guy moment air teacher force education "
         "river bridge garden window market winter summer letter music table picture paper village island forest "
         "walk carry build write read learn speak listen open close begin finish travel watch follow answer").split()


def prose(seed, n_words=140):
    """A document of ordinary-looking English sentences; different seeds share almost no 5-word runs."""
    rng = random.Random(seed)
    out, n = [], 0
    while n < n_words:
        k = rng.randint(8, 15)
        s = [rng.choice(WORDS) for _ in range(k)]
        s[0] = s[0].capitalize()
        out.append(" ".join(s) + ".")
        n += k
    return " ".join(out)


CHINESE = ("这座小城坐落在两条河流交汇的地方，清晨的雾气常常笼罩着整个街道。居民们习惯在天亮之前起床，"
           "先去市场买新鲜的蔬菜和鱼，然后回家准备早饭。孩子们背着书包走过石桥，老师在校门口等候他们。"
           "到了中午，阳光照在青瓦屋顶上，茶馆里坐满了聊天的老人。傍晚时分，河边的灯一盏一盏亮起来，"
           "人们沿着河岸散步，谈论一天里发生的事情。")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return reference_json("qwen-2.5", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def hf(tok):
    tokenizers = pytest.importorskip("tokenizers")
    return tokenizers.Tokenizer.from_file(str(tok))


def prepare(inputs, out, tok, *extra, check=True):
    if not WHALE.exists():
        pytest.fail(f"{WHALE} is missing: run make")
    p = subprocess.run([str(WHALE), "data", "prepare", *map(str, inputs), "-m", str(tok), "-o", str(out), *extra],
                       capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def manifest(out):
    return json.loads((pathlib.Path(out) / "manifest.json").read_text())


def split_docs(out, split):
    """The documents (tuples of ids) in a split's shards, in order, checking each ends with eot."""
    m = manifest(out)
    eot = m["settings"]["tokenizer"]["eot_id"]
    docs = []
    for s in m[split]["shards"]:
        raw = (pathlib.Path(out) / s["file"]).read_bytes()
        ids = list(struct.unpack(f"<{len(raw) // 4}I", raw))
        assert len(ids) == s["tokens"]
        assert not ids or ids[-1] == eot, "a shard must end with the end-of-text id"
        cur = []
        for t in ids:
            if t == eot:
                docs.append(tuple(cur))
                cur = []
            else:
                cur.append(t)
    assert len(docs) == m[split]["documents"]
    return docs


def ids_of(hf, text):
    return tuple(hf.encode(text, add_special_tokens=False).ids)


def write_txt(path, docs):
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def test_shards_decode_to_the_reference_ids(tmp_path, tok, hf):
    """The real corpus (multilingual, code, edge cases), 20 lines per document: each document in the
    shards is exactly what `tokenizers` gives for one input document, separated by <|endoftext|>."""
    lines = shared_file("corpus/multilingual.txt").read_text(encoding="utf-8").split("\n")
    docs = ["\n".join(lines[i:i + 20]).replace("\\n", "\n") for i in range(0, len(lines), 20)]
    docs = [d for d in docs if d.strip()]
    src = write_jsonl(tmp_path / "corpus.jsonl", docs)
    out = tmp_path / "out"
    p = prepare([src], out, tok, "--no-filter", "--val-fraction", "0.1", "--shard-tokens", "20000")
    print(p.stdout)
    m = manifest(out)
    assert m["settings"]["tokenizer"]["eot"] == "<|endoftext|>"
    assert m["settings"]["tokenizer"]["eot_id"] == hf.token_to_id("<|endoftext|>")
    want = {ids_of(hf, d): d for d in docs}
    train, val = split_docs(out, "train"), split_docs(out, "val")
    assert len(m["train"]["shards"]) > 1, "--shard-tokens 20000 makes several shards"
    got = train + val
    assert all(g in want for g in got), "every document in the shards is one input document's reference ids"
    assert len(set(got)) == len(got) == m["counts"]["kept"]
    assert m["counts"]["kept"] + m["counts"]["exact_duplicate"] + m["counts"]["near_duplicate"] == len(docs)
    assert val and not set(val) & set(train)


def test_gguf_vocabulary_gives_the_same_shards(tmp_path, tok):
    """-m takes a GGUF (the default model, Qwen2.5): the same shards as its tokenizer.json."""
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"{DEFAULT_MODEL} missing (scripts/setup fetches it)")
    src = write_txt(tmp_path / "in.txt", [prose(i) for i in range(20)] + [CHINESE])
    a, b = tmp_path / "a", tmp_path / "b"
    prepare([src], a, tok)
    prepare([src], b, DEFAULT_MODEL)
    assert manifest(b)["settings"]["tokenizer"]["eot"] == "<|endoftext|>"
    for split in ("train", "val"):
        assert split_docs(a, split) == split_docs(b, split)


def test_exact_duplicates_within_and_across_files(tmp_path, tok, hf):
    d = [prose(i) for i in range(4)]
    a = write_txt(tmp_path / "a.txt", [d[0], d[1], d[0]])
    b = write_txt(tmp_path / "b.txt", [d[1], d[2], d[3], d[2]])
    out = tmp_path / "out"
    p = prepare([a, b], out, tok)
    m = manifest(out)
    assert m["counts"]["exact_duplicate"] == 3 and m["counts"]["kept"] == 4
    assert [(i["documents"], i["kept"]) for i in m["inputs"]] == [(3, 2), (4, 2)]
    assert "exact_duplicate" in p.stdout
    got = split_docs(out, "train") + split_docs(out, "val")
    assert sorted(got) == sorted(ids_of(hf, x) for x in d)


def test_near_duplicate_removed_different_kept(tmp_path, tok, hf):
    a = prose(10, 300)
    w = a.split(" ")
    w[40], w[150] = "banana", "umbrella"  # an edited copy: two words changed, punctuation too
    edited = " ".join(w).replace(".", "!", 3)
    other = prose(11, 300)
    src = write_txt(tmp_path / "in.txt", [a, edited, other])
    out = tmp_path / "out"
    prepare([src], out, tok)
    m = manifest(out)
    assert m["counts"]["near_duplicate"] == 1 and m["counts"]["exact_duplicate"] == 0 and m["counts"]["kept"] == 2
    got = split_docs(out, "train") + split_docs(out, "val")
    assert sorted(got) == sorted([ids_of(hf, a), ids_of(hf, other)])
    # Chinese: shingles of characters; two characters changed in a long text
    zh = CHINESE * 3
    zh_edited = zh.replace("蔬菜", "水果", 1)
    src_zh = write_jsonl(tmp_path / "zh.jsonl", [zh, zh_edited, prose(12, 300)])
    out_zh = tmp_path / "zh"
    prepare([src_zh], out_zh, tok)
    assert manifest(out_zh)["counts"]["near_duplicate"] == 1
    # a threshold above the pair's similarity keeps both
    out2 = tmp_path / "out2"
    prepare([src], out2, tok, "--near-threshold", "1")
    assert manifest(out2)["counts"]["near_duplicate"] == 0


def quality_inputs(tmp_path):
    code_c = (REPO / "src" / "base" / "strbuf.c").read_text()
    code_py = (REPO / "tests" / "py" / "conftest.py").read_text()
    good = [prose(20), CHINESE, code_c, code_py]
    bad = {
        "min_words": "Subscribe now. Only a few words here.",
        "max_nonprintable_ratio": "plain words then \x01\x02 bytes " * 30,
        "max_symbol_ratio": "### *** @@@ !!! ~~~ %% >>> <<< " * 20,
        "max_digit_ratio": "1234 5678 9012 3456 7890 1234 5678 ab " * 12,
        "mean_word_length": "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ aW5wdXQgdGhhdCBuZXZlciBlbmRz " * 40,
        "max_duplicate_line_fraction": "Click here to subscribe to our newsletter today\nShare this page\n" * 12 + prose(21, 60),
    }
    return good, bad


def test_quality_rules_each_and_keep_chinese_and_code(tmp_path, tok, hf):
    good, bad = quality_inputs(tmp_path)
    src = write_jsonl(tmp_path / "q.jsonl", good + list(bad.values()))
    out = tmp_path / "out"
    p = prepare([src], out, tok)
    c = manifest(out)["counts"]
    for rule in bad:
        assert c[rule] == 1, f"{rule}: {c}"
        assert rule in p.stdout
    assert c["kept"] == len(good)
    got = set(split_docs(out, "train") + split_docs(out, "val"))
    assert got == {ids_of(hf, g) for g in good}, "ordinary prose, Chinese, C and Python are kept"


def test_no_filter_keeps_all_but_still_deduplicates(tmp_path, tok):
    good, bad = quality_inputs(tmp_path)
    docs = good + list(bad.values())
    src = write_jsonl(tmp_path / "q.jsonl", docs + [docs[0]])
    out = tmp_path / "out"
    prepare([src], out, tok, "--no-filter")
    m = manifest(out)
    assert m["settings"]["filter"] is False
    assert m["counts"]["kept"] == len(docs) and m["counts"]["exact_duplicate"] == 1


def test_quality_threshold_option(tmp_path, tok):
    src = write_txt(tmp_path / "s.txt", ["Only a few words in this one."])
    out = tmp_path / "out"
    prepare([src], out, tok, "--quality", "min_words=3")
    m = manifest(out)
    assert m["counts"]["kept"] == 1 and m["settings"]["thresholds"]["min_words"] == 3
    p = prepare([src], tmp_path / "o2", tok, "--quality", "max_nonsense=3", check=False)
    assert p.returncode == 2 and "unknown rule" in p.stderr


def test_val_split_disjoint_and_deterministic(tmp_path, tok):
    docs = [prose(100 + i, 60) for i in range(300)]
    a = write_txt(tmp_path / "a.txt", docs)
    b = write_txt(tmp_path / "b.txt", docs[::7])  # repeats: never in both splits
    o1, o2 = tmp_path / "o1", tmp_path / "o2"
    prepare([a, b], o1, tok, "--val-fraction", "0.1")
    prepare([a, b], o2, tok, "--val-fraction", "0.1", "--threads", "1")  # any thread count: the same bytes
    train, val = split_docs(o1, "train"), split_docs(o1, "val")
    assert 10 <= len(val) <= 60 and len(train) + len(val) == 300
    assert not set(train) & set(val)
    for f in sorted(os.listdir(o1)):
        assert (o1 / f).read_bytes() == (o2 / f).read_bytes(), f
    # no fraction: nothing held out; a tiny corpus: the first kept document is held out
    o3 = tmp_path / "o3"
    prepare([a], o3, tok, "--val-fraction", "0")
    assert manifest(o3)["val"]["documents"] == 0 and (o3 / "val-000000.bin").stat().st_size == 0
    small = write_txt(tmp_path / "s.txt", docs[:2])
    o4 = tmp_path / "o4"
    prepare([small], o4, tok)
    assert manifest(o4)["val"]["documents"] == 1 and manifest(o4)["train"]["documents"] == 1


def test_bad_input_reported_not_fatal(tmp_path, tok):
    good = [prose(200 + i) for i in range(3)]
    j = tmp_path / "in.jsonl"
    j.write_text(json.dumps({"text": good[0]}) + "\n" + json.dumps({"text": good[1]}) + "\n{\"text\": broken\n"
                 + json.dumps({"id": 3}) + "\n", encoding="utf-8")
    t = tmp_path / "in.txt"
    t.write_bytes(good[2].encode() + b"\n\nbad \xff\xfe bytes here\nsecond line\n")
    out = tmp_path / "out"
    p = prepare([j, t], out, tok)
    c = manifest(out)["counts"]
    assert c["malformed_jsonl"] == 2 and c["invalid_utf8"] == 1 and c["kept"] == 3
    assert f"{j}:3: malformed JSONL" in p.stderr and f"{j}:4: malformed JSONL" in p.stderr
    assert f"{t}:3: invalid UTF-8" in p.stderr


def test_directory_input(tmp_path, tok, hf):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    write_txt(d / "sub" / "b.txt", [prose(301)])
    write_jsonl(d / "a.jsonl", [prose(300)])
    write_txt(d / ".hidden.txt", [prose(302)])
    out = d / "out"  # inside the input: never read back as input
    prepare([d], out, tok)
    prepare([d], out, tok)  # the second run finds the finished run
    m = manifest(out)
    assert [pathlib.Path(i["path"]).relative_to(d).as_posix() for i in m["inputs"]] == ["a.jsonl", "sub/b.txt"]
    assert m["counts"]["kept"] == 2
    assert sorted(split_docs(out, "train") + split_docs(out, "val")) == sorted([ids_of(hf, prose(300)), ids_of(hf, prose(301))])


def test_resume_after_sigkill_is_byte_identical(tmp_path, tok):
    docs = [prose(1000 + i, 200) for i in range(1500)]
    docs += docs[:40]  # exact duplicates of early documents, after the kill
    w = docs[5].split(" ")
    w[30] = "changed"
    docs.append(" ".join(w))  # and a near duplicate
    src = write_txt(tmp_path / "big.txt", docs)
    ref = tmp_path / "ref"
    prepare([src], ref, tok, "--shard-tokens", "100000")
    out = tmp_path / "out"
    args = [str(WHALE), "data", "prepare", str(src), "-m", str(tok), "-o", str(out), "--shard-tokens", "100000",
            "--checkpoint-mb", "0.05"]
    killed = 0
    for _ in range(2):  # killed twice, at different points
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        state = out / "state.json"
        seen = None
        while time.time() < deadline and p.poll() is None:
            if state.exists():
                try:
                    s = json.loads(state.read_text())["resume"]["offset"]
                except (ValueError, KeyError):
                    s = None
                if s and (seen is None or s > seen + 100000):
                    if seen is not None:
                        break
                    seen = s
            time.sleep(0.01)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed += 1
    assert killed, "the run ended before it could be killed (make the input larger)"
    assert (out / "state.json").exists()
    # a torn tail longer than anything the resumed run writes: it must cut the shard back
    last = sorted(out.glob("train-*.bin"))[-1]
    with open(last, "ab") as f:
        f.write(b"\xff" * (1 << 21))
    r = prepare([src], out, tok, "--shard-tokens", "100000")
    assert "resumed" in r.stdout
    assert sorted(os.listdir(out)) == sorted(os.listdir(ref))
    for f in sorted(os.listdir(ref)):
        assert (out / f).read_bytes() == (ref / f).read_bytes(), f
    m = manifest(out)
    assert m["counts"]["exact_duplicate"] == 40 and m["counts"]["near_duplicate"] == 1
    # the finished directory refuses a run with other settings
    p = prepare([src], out, tok, "--val-fraction", "0.5", check=False)
    assert p.returncode == 1 and "other inputs or settings" in p.stderr


def test_help_and_usage_errors(tmp_path, tok):
    p = subprocess.run([str(WHALE), "data", "prepare", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for opt in ("--val-fraction", "--no-filter", "--near-threshold", "--shard-tokens", "--quality", "min_words="):
        assert opt in p.stdout
    p = subprocess.run([str(WHALE), "data", "prepare", "x.txt", "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert p.returncode == 2 and "-m" in p.stderr
    p = prepare([tmp_path / "missing.txt"], tmp_path / "o", tok, check=False)
    assert p.returncode == 1 and "missing.txt" in p.stderr
