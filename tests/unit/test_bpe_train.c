/* test_bpe_train.c — the BPE trainer's merges (src/data/bpe_train.c) against a hand-worked
 * example and against a plain reference trainer (every pair recounted from scratch each step)
 * on random texts; the corpus reader's cut points; the trainer's refusals. The tokenizer.json
 * it writes is checked against Hugging Face tokenizers in tests/py/test_data_tokenizer.py. */
#include "check.h"

#include "base/err.h"
#include "base/rng.h"
#include "data/bpe_train.h"
#include "data/corpus.h"
#include "tokenizer/pretokenize.h"

/* The token's bytes as a C string (for messages and comparisons). */
static const char *tok_str(const bpe_trainer *t, int32_t id) {
    static char buf[4][256];
    static int k;
    size_t n = 0;
    const char *s = bpe_trainer_token(t, id, &n);
    char *b = buf[k++ & 3];
    snprintf(b, 256, "%.*s", s ? (int)n : 1, s ? s : "?");
    return b;
}

static bpe_trainer *train(const char *text, int64_t vocab, int64_t min_freq) {
    bpe_trainer *t = NULL;
    whale_err err = {0};
    CHECK(bpe_trainer_new(&t, "qwen2", NULL, 0, &err) == 0);
    if (!t) return NULL;
    CHECK(bpe_trainer_feed(t, text, strlen(text), &err) == 0);
    CHECKF(bpe_trainer_learn(t, vocab, min_freq, NULL, NULL, &err) == 0, "%s", err.msg);
    return t;
}

/* "aaabdaaabac" (one word): aa occurs 4 times (overlaps counted, as every trainer counts
 * pairs); then ab and (aa)a tie at 2 and the smaller left id wins: 'a' (a byte) before aa (a
 * new token); then aa+ab, twice. */
static void test_hand_worked_example(void) {
    bpe_trainer *t = train("aaabdaaabac", 256 + 3, 2);
    if (!t) return;
    const char *want[][3] = {{"a", "a", "aa"}, {"a", "b", "ab"}, {"aa", "ab", "aaab"}};
    bpe_train_stats st;
    bpe_trainer_stats(t, &st);
    CHECK(st.n_merges == 3 && st.n_vocab == 259 && st.distinct == 1);
    for (int i = 0; i < 3; i++) {
        int32_t a, b, r;
        CHECK(bpe_trainer_merge(t, i, &a, &b, &r) == 0);
        CHECKF(!strcmp(tok_str(t, a), want[i][0]) && !strcmp(tok_str(t, b), want[i][1]) &&
                   !strcmp(tok_str(t, r), want[i][2]),
               "merge %d: %s + %s -> %s", i, tok_str(t, a), tok_str(t, b), tok_str(t, r));
        CHECK(r == 256 + i);
    }
    bpe_trainer_free(t);
    /* min_frequency: after those three every pair occurs once, so a larger vocabulary still
     * stops at three merges; with 1 it goes on. */
    t = train("aaabdaaabac", 300, 2);
    bpe_trainer_stats(t, &st);
    CHECK(st.n_merges == 3 && st.n_vocab == 259);
    bpe_trainer_free(t);
    t = train("aaabdaaabac", 260, 1);
    bpe_trainer_stats(t, &st);
    CHECK(st.n_merges == 4 && st.n_vocab == 260);
    bpe_trainer_free(t);
}

/* ---- the reference: recount every pair each step ------------------------------------- */

#define REF_MAX_WORDS 4096
#define REF_MAX_LEN 64
#define REF_MAX_TOK 512

typedef struct ref {
    int32_t sym[REF_MAX_WORDS][REF_MAX_LEN];
    int len[REF_MAX_WORDS];
    int64_t cnt[REF_MAX_WORDS];
    int n_words;
    char tok[REF_MAX_TOK][REF_MAX_LEN + 1];
    int tok_len[REF_MAX_TOK];
    int n_tok;
    int32_t ma[REF_MAX_TOK], mb[REF_MAX_TOK], mr[REF_MAX_TOK];
    int n_merges;
} ref;

static int64_t ref_count[REF_MAX_TOK][REF_MAX_TOK];

static int ref_find_tok(const ref *R, const char *s, int n) {
    for (int i = 0; i < R->n_tok; i++)
        if (R->tok_len[i] == n && !memcmp(R->tok[i], s, (size_t)n)) return i;
    return -1;
}

/* Merges of the reference over text's qwen2 pieces, with the trainer's byte ids. */
static void ref_train(ref *R, const bpe_trainer *t, const char *text, int64_t vocab, int64_t min_freq) {
    memset(R, 0, sizeof *R);
    for (int id = 0; id < 256; id++) {
        size_t n;
        const char *s = bpe_trainer_token(t, id, &n);
        memcpy(R->tok[id], s, n);
        R->tok_len[id] = (int)n;
    }
    R->n_tok = 256;
    pretok_program *p;
    int nfc, im;
    whale_err err = {0};
    CHECK(pretok_builtin(&p, "qwen2", &nfc, &im, &err) == 0);
    pretok_pieces ps = {0};
    CHECK(pretok_run(p, text, strlen(text), &ps, &err) == 0);
    for (size_t i = 0; i < ps.n; i++) {
        const char *s = text + ps.v[i].start;
        int n = (int)ps.v[i].len, w;
        CHECK(n <= REF_MAX_LEN);
        for (w = 0; w < R->n_words; w++) {
            int same = R->len[w] == n;
            for (int k = 0; same && k < n; k++) same = R->sym[w][k] == ref_find_tok(R, s + k, 1);
            if (same) break;
        }
        if (w == R->n_words) {
            CHECK(R->n_words < REF_MAX_WORDS);
            R->len[w] = n;
            for (int k = 0; k < n; k++) R->sym[w][k] = ref_find_tok(R, s + k, 1);
            R->n_words++;
        }
        R->cnt[w]++;
    }
    pretok_pieces_free(&ps);
    pretok_free(p);
    while (R->n_tok < vocab) {
        int64_t best = 0;
        int32_t ba = -1, bb = -1;
        /* count every pair over all words into the table, pick the best (count, then the
         * smaller ids), then clear what was touched */
        for (int w = 0; w < R->n_words; w++)
            for (int k = 0; k + 1 < R->len[w]; k++) ref_count[R->sym[w][k]][R->sym[w][k + 1]] += R->cnt[w];
        for (int w = 0; w < R->n_words; w++)
            for (int k = 0; k + 1 < R->len[w]; k++) {
                int32_t a = R->sym[w][k], b = R->sym[w][k + 1];
                int64_t c = ref_count[a][b];
                if (c > best || (c == best && (a < ba || (a == ba && b < bb)))) best = c, ba = a, bb = b;
            }
        for (int w = 0; w < R->n_words; w++)
            for (int k = 0; k + 1 < R->len[w]; k++) ref_count[R->sym[w][k]][R->sym[w][k + 1]] = 0;
        if (best < min_freq || ba < 0) break;
        char s[2 * REF_MAX_LEN + 2];
        int n = R->tok_len[ba] + R->tok_len[bb];
        memcpy(s, R->tok[ba], (size_t)R->tok_len[ba]);
        memcpy(s + R->tok_len[ba], R->tok[bb], (size_t)R->tok_len[bb]);
        int z = ref_find_tok(R, s, n);
        if (z < 0) {
            z = R->n_tok++;
            memcpy(R->tok[z], s, (size_t)n);
            R->tok_len[z] = n;
        }
        R->ma[R->n_merges] = ba, R->mb[R->n_merges] = bb, R->mr[R->n_merges] = z;
        R->n_merges++;
        for (int w = 0; w < R->n_words; w++) { /* left to right, as encoding applies a merge */
            int o = 0;
            for (int k = 0; k < R->len[w];) {
                if (k + 1 < R->len[w] && R->sym[w][k] == ba && R->sym[w][k + 1] == bb) {
                    R->sym[w][o++] = z;
                    k += 2;
                } else {
                    R->sym[w][o++] = R->sym[w][k++];
                }
            }
            R->len[w] = o;
        }
    }
}

static ref R; /* large: static */

/* Random words over a small alphabet, so pairs repeat, overlap (aaa) and tie a lot, and two
 * merges spell the same token (ab+c, a+bc). */
static void test_matches_the_reference(void) {
    uint64_t rng = 12345;
    const char *alpha[] = {"ab", "abc", "aab", "xy"};
    for (int round = 0; round < 24; round++) {
        char text[6000];
        size_t n = 0;
        const char *al = alpha[round % 4];
        size_t na = strlen(al);
        int words = 40 + (int)(rng_xorshift64(&rng) % 300);
        for (int w = 0; w < words && n < sizeof text - 40; w++) {
            int len = 1 + (int)(rng_xorshift64(&rng) % 9);
            if (w) text[n++] = ' ';
            for (int k = 0; k < len; k++) text[n++] = al[rng_xorshift64(&rng) % na];
        }
        text[n] = 0;
        int64_t vocab = 256 + 5 + (int64_t)(rng_xorshift64(&rng) % 120);
        int64_t mf = 1 + (int64_t)(round % 3);
        bpe_trainer *t = train(text, vocab, mf);
        if (!t) return;
        ref_train(&R, t, text, vocab, mf);
        bpe_train_stats st;
        bpe_trainer_stats(t, &st);
        CHECKF(st.n_merges == R.n_merges, "round %d: %lld merges, reference %d", round, (long long)st.n_merges,
               R.n_merges);
        for (int i = 0; i < R.n_merges && i < st.n_merges; i++) {
            int32_t a, b, r;
            bpe_trainer_merge(t, i, &a, &b, &r);
            if (a != R.ma[i] || b != R.mb[i] || r != R.mr[i]) {
                CHECKF(0, "round %d merge %d: %s+%s, reference %s+%s", round, i, tok_str(t, a), tok_str(t, b),
                       R.tok[R.ma[i]], R.tok[R.mb[i]]);
                break;
            }
        }
        CHECK(st.n_vocab == 256 + (R.n_tok - 256));
        bpe_trainer_free(t);
    }
}

static void test_specials_and_refusals(void) {
    bpe_special sp[] = {{"<s>", 1}, {"<t>", 0}};
    bpe_trainer *t = NULL;
    whale_err err = {0};
    CHECK(bpe_trainer_new(&t, "qwen2", sp, 2, &err) == 0);
    /* Added-token spellings are cut out: "x<s>y" counts words x and y, never '<s>'. */
    const char *s = "x<s>y<t><s>";
    CHECK(bpe_trainer_feed(t, s, strlen(s), &err) == 0);
    bpe_train_stats st;
    bpe_trainer_stats(t, &st);
    CHECK(st.specials == 3 && st.pieces == 2 && st.distinct == 2);
    /* Bad UTF-8 becomes U+FFFD per byte. */
    CHECK(bpe_trainer_feed(t, "a\xff\xfe b", 5, &err) == 0);
    bpe_trainer_stats(t, &st);
    CHECK(st.bad_bytes == 2);
    CHECK(bpe_trainer_learn(t, 257, 1, NULL, NULL, &err) == WHALE_E_ARG);
    CHECK(strstr(err.msg, "too small") != NULL);
    bpe_trainer_free(t);
    t = NULL;
    CHECK(bpe_trainer_new(&t, "nonesuch", NULL, 0, &err) == WHALE_E_ARG && !t);
    CHECK(strstr(err.msg, "qwen2") != NULL);
    bpe_special twice[] = {{"<s>", 1}, {"<s>", 0}};
    CHECK(bpe_trainer_new(&t, NULL, twice, 2, &err) == WHALE_E_ARG && !t);
}

/* Cut points: after a newline followed by a non-space character, never inside a newline run
 * or before indentation (a piece can hold "\n  " or "\n\n"). */
static void test_cut_points(void) {
    CHECK(corpus_cut_point("ab\ncd", 5) == 3);
    CHECK(corpus_cut_point("ab\n  cd", 7) == 0);
    CHECK(corpus_cut_point("ab\n\ncd\n", 7) == 4);
    CHECK(corpus_cut_point("ab\n", 3) == 0);
    CHECK(corpus_cut_point("a\n\xe4\xbd\xa0", 5) == 2);       /* a CJK character starts a piece */
    CHECK(corpus_cut_point("a\n\xe3\x80\x80x", 6) == 0);      /* U+3000 is a space */
    CHECK(corpus_cut_point("a\n\xe4\xbd", 4) == 0);           /* incomplete character: wait */
}

int main(void) {
    RUN(test_hand_worked_example);
    RUN(test_matches_the_reference);
    RUN(test_specials_and_refusals);
    RUN(test_cut_points);
    return check_report("test_bpe_train");
}
