/* test_data.c — the pieces of `whale data prepare` (src/data): MinHash estimates and the LSH
 * index (with its log reopened as a resume does), the exact set, the band shape, every quality
 * rule triggered by one crafted document while Chinese prose and the project's own C sources
 * pass, the document readers (blank-line splitting, CRLF, JSONL, restarting at an offset) and
 * the shard writer (documents never straddle shards; a resume cuts back to the checkpoint). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "check.h"
#include "data/dedup.h"
#include "data/docs.h"
#include "data/quality.h"
#include "data/shards.h"

static char g_dir[256];

static const char *tmp_path(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

/* n words "w<seed>_<i>" with a space between: a text whose shingles are all distinct. */
static void words(strbuf *b, int seed, int from, int n) {
    char w[64];
    for (int i = from; i < from + n; i++) {
        snprintf(w, sizeof w, "%sw%d_%d", b->n ? " " : "", seed, i);
        strbuf_add(b, w, strlen(w));
    }
}

static void test_minhash_estimates(void) {
    strbuf a = {0}, b = {0}, c = {0};
    words(&a, 1, 0, 400);
    words(&b, 1, 0, 400);
    words(&c, 2, 0, 400);
    minhash_sig sa, sb, sc;
    minhash_compute(&sa, a.s, a.n, 0);
    minhash_compute(&sb, b.s, b.n, 0);
    minhash_compute(&sc, c.s, c.n, 0);
    CHECK(minhash_similarity(&sa, &sb) == 1.0);
    CHECK(minhash_similarity(&sa, &sc) < 0.05);
    /* word shingles ignore case and punctuation between words */
    strbuf d = {0};
    for (size_t i = 0; i < a.n; i++)
        strbuf_add(&d, a.s[i] == ' ' ? ", " : a.s[i] == 'w' ? "W" : a.s + i, a.s[i] == ' ' ? 2 : 1);
    minhash_sig sd;
    minhash_compute(&sd, d.s, d.n, 0);
    CHECK(minhash_similarity(&sa, &sd) == 1.0);
    /* known overlap: words 0..399 vs 100..499 share 296 of 504 distinct 5-word shingles (J = 0.587)
     */
    strbuf e = {0};
    words(&e, 1, 100, 400);
    minhash_sig se;
    minhash_compute(&se, e.s, e.n, 0);
    double j = 296.0 / 504.0, est = minhash_similarity(&sa, &se);
    CHECKF(est > j - 0.15 && est < j + 0.15, "estimate %.3f for J %.3f", est, j);
    /* characters: the same for a CJK text, and a text without shingles gets all-ones */
    const char *zh =
        "深度学习模型在大量文本上训练，分词器把文字切成词元，再由注意力机制处理上下文。";
    minhash_sig z1, z2;
    minhash_compute(&z1, zh, strlen(zh), 1);
    minhash_compute(&z2, zh, strlen(zh), 1);
    CHECK(minhash_similarity(&z1, &z2) == 1.0);
    minhash_compute(&z2, "", 0, 0);
    CHECK(z2.v[0] == UINT32_MAX && z2.v[MINHASH_PERM - 1] == UINT32_MAX);
    strbuf_free(&a), strbuf_free(&b), strbuf_free(&c), strbuf_free(&d), strbuf_free(&e);
}

static void test_lsh_shape(void) {
    int b, r;
    lsh_choose(0.8, MINHASH_PERM, &b, &r);
    CHECKF(b * r <= MINHASH_PERM && b > 1 && r > 1, "%d x %d", b, r);
    /* the S-curve is steep around the threshold: pairs well above are nearly always candidates,
     * pairs well below nearly never */
    CHECKF(lsh_candidate_probability(0.9, b, r) > 0.99, "%d x %d", b, r);
    CHECKF(lsh_candidate_probability(0.8, b, r) > 0.9, "%d x %d", b, r);
    CHECKF(lsh_candidate_probability(0.5, b, r) < 0.1, "%d x %d", b, r);
    int b2, r2;
    lsh_choose(0.5, MINHASH_PERM, &b2, &r2);
    CHECK(r2 < r); /* a lower threshold: shorter bands */
}

static void test_lsh_index_and_resume(void) {
    strbuf a = {0}, near = {0}, other = {0};
    words(&a, 3, 0, 600);
    /* an edited copy: 3 words changed out of 600 */
    words(&near, 3, 0, 200);
    strbuf_add(&near, " edited", 7);
    words(&near, 9, 0, 1);
    words(&near, 3, 201, 200);
    strbuf_add(&near, " again", 6);
    words(&near, 3, 402, 198);
    words(&other, 4, 0, 600);
    minhash_sig sa, sn, so;
    minhash_compute(&sa, a.s, a.n, 0);
    minhash_compute(&sn, near.s, near.n, 0);
    minhash_compute(&so, other.s, other.n, 0);
    CHECKF(minhash_similarity(&sa, &sn) >= 0.8, "%.3f", minhash_similarity(&sa, &sn));
    whale_err err = {0};
    lsh_index *x = NULL;
    const char *log = tmp_path("minhash.log");
    CHECK(lsh_index_open(&x, log, 0.8, 0, &err) == 0);
    if (!x) return;
    int64_t match = -1;
    CHECK(lsh_index_add(x, &sa, &match, &err) == 0);
    CHECK(lsh_index_add(x, &so, &match, &err) == 0);
    CHECK(lsh_index_add(x, &sn, &match, &err) == 1 && match == 0);
    CHECK(lsh_index_count(x) == 2);
    lsh_index_close(x);
    /* a resume with one signature: the second is cut off, the first still matches */
    CHECK(lsh_index_open(&x, log, 0.8, 1, &err) == 0);
    match = -1;
    CHECK(lsh_index_add(x, &sn, &match, &err) == 1 && match == 0);
    CHECK(lsh_index_add(x, &so, &match, &err) == 0 && lsh_index_count(x) == 2);
    lsh_index_close(x);
    struct stat st;
    CHECK(stat(log, &st) == 0 && st.st_size == 2 * 4 * MINHASH_PERM);
    /* a checkpoint that names more than the log holds cannot be resumed */
    CHECK(lsh_index_open(&x, log, 0.8, 5, &err) == WHALE_E_FORMAT && !x);
    CHECK(lsh_index_open(&x, log, 1.5, 0, &err) == WHALE_E_ARG);
    strbuf_free(&a), strbuf_free(&near), strbuf_free(&other);
}

static void test_exact_set(void) {
    whale_err err = {0};
    exact_set *s = NULL;
    const char *log = tmp_path("exact.log");
    CHECK(exact_set_open(&s, log, 0, &err) == 0);
    if (!s) return;
    doc_hash h1 = doc_hash_text("one", 3), h2 = doc_hash_text("two", 3),
             h1b = doc_hash_text("one", 3);
    CHECK(h1.lo == h1b.lo && h1.hi == h1b.hi && (h1.lo != h2.lo || h1.hi != h2.hi));
    CHECK(exact_set_add(s, h1, &err) == 1);
    CHECK(exact_set_add(s, h1b, &err) == 0);
    CHECK(exact_set_add(s, h2, &err) == 1);
    for (int i = 0; i < 5000; i++) { /* through several growths */
        char t[32];
        snprintf(t, sizeof t, "doc %d", i);
        CHECK(exact_set_add(s, doc_hash_text(t, strlen(t)), &err) == 1);
    }
    CHECK(exact_set_add(s, h2, &err) == 0 && exact_set_count(s) == 5002);
    exact_set_close(s);
    CHECK(exact_set_open(&s, log, 1, &err) == 0);
    CHECK(exact_set_add(s, h1, &err) == 0 && exact_set_add(s, h2, &err) == 1);
    exact_set_close(s);
}

/* ---- quality ------------------------------------------------------------------------------ */

static int rule_of(const char *text) {
    quality_rules q;
    quality_rules_default(&q);
    text_stats s;
    whale_err err = {0};
    if (text_stats_compute(&s, text, strlen(text), &err)) return -1;
    return quality_check(&q, &s);
}

static const char *repeat(strbuf *b, const char *unit, int n) {
    b->n = 0;
    for (int i = 0; i < n; i++) strbuf_add(b, unit, strlen(unit));
    return b->s;
}

static const char *PROSE =
    "The river runs past the old mill and under two stone bridges before it reaches the town. "
    "In spring the water rises quickly, and the people who live along the banks move their boats "
    "higher up the slope. Children walk to school on the path beside the water, counting the ducks "
    "and the herons that stand very still in the shallows. In the evening the lights of the houses "
    "shine on the surface, and the sound of the current is the last thing many of them hear before "
    "they fall asleep.";

static const char *CHINESE =
    "这座小城坐落在两条河流交汇的地方，清晨的雾气常常笼罩着整个街道。居民们习惯在天亮之前起床，"
    "先去市场买新鲜的蔬菜和鱼，然后回家准备早饭。孩子们背着书包走过石桥，老师在校门口等候他们。"
    "到了中午，阳光照在青瓦屋顶上，茶馆里坐满了聊天的老人。傍晚时分，河边的灯一盏一盏亮起来，"
    "人们沿着河岸散步，谈论一天里发生的事情。";

static void test_quality_rules_each(void) {
    strbuf b = {0};
    CHECK(rule_of(PROSE) == QUALITY_OK);
    CHECK(rule_of(CHINESE) == QUALITY_OK);
    CHECK(rule_of("Too short to be a document.") == QUALITY_MIN_WORDS);
    CHECK(rule_of("短文本") == QUALITY_MIN_WORDS);
    /* binary in the text: one control byte in every few words */
    CHECK(rule_of(repeat(&b, "plain words then \x01\x02 bytes ", 30)) ==
          QUALITY_MAX_NONPRINTABLE_RATIO);
    CHECK(rule_of(repeat(&b, "### *** @@@ !!! ~~~ %% ", 20)) == QUALITY_MAX_SYMBOL_RATIO);
    CHECK(rule_of(repeat(&b, "1234 5678 9012 3456 7890 1234 5678 ab ", 10)) ==
          QUALITY_MAX_DIGIT_RATIO);
    CHECK(rule_of(repeat(&b, "a b c d e f g h i j ", 10)) == QUALITY_MEAN_WORD_LENGTH);
    CHECK(rule_of(repeat(&b, "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ aW5wdXQgdGhhdCBuZXZlciBlbmRz ",
                         40)) == QUALITY_MEAN_WORD_LENGTH);
    CHECK(rule_of(repeat(&b, "Click here to subscribe to our newsletter today\nShare this page\n",
                         12)) == QUALITY_MAX_DUPLICATE_LINE_FRACTION);
    /* thresholds are settings */
    quality_rules q;
    quality_rules_default(&q);
    whale_err err = {0};
    CHECK(quality_rules_set(&q, "min_words=5", &err) == 0 && q.min_words == 5);
    CHECK(quality_rules_set(&q, "max_symbol_ratio=0.25", &err) == 0 && q.max_symbol_ratio == 0.25);
    CHECK(quality_rules_set(&q, "nonsense=1", &err) == WHALE_E_ARG);
    CHECK(quality_rules_set(&q, "min_words", &err) == WHALE_E_ARG);
    CHECK(quality_rules_set(&q, "min_words=x", &err) == WHALE_E_ARG);
    text_stats s;
    CHECK(text_stats_compute(&s, "Too short to be a document.", 27, &err) == 0);
    CHECK(quality_check(&q, &s) == QUALITY_OK);
    CHECK(!strcmp(quality_rule_name(QUALITY_MIN_WORDS), "min_words"));
    strbuf_free(&b);
}

/* Every C file under dir passes (the project's own sources: ordinary code). */
static void sources_pass(const char *dir, int *n_files) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st)) continue;
        if (S_ISDIR(st.st_mode)) {
            sources_pass(p, n_files);
            continue;
        }
        size_t n = strlen(p);
        if (n < 3 || (strcmp(p + n - 2, ".c") && strcmp(p + n - 2, ".h"))) continue;
        FILE *f = fopen(p, "rb");
        char *buf = malloc((size_t)st.st_size + 1);
        size_t got = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        buf[got] = 0;
        if (strlen(buf) == got) { /* no NUL bytes */
            quality_rules q;
            quality_rules_default(&q);
            text_stats s;
            whale_err err = {0};
            CHECK(text_stats_compute(&s, buf, got, &err) == 0);
            int r = quality_check(&q, &s);
            if (s.words >= q.min_words) {
                CHECKF(r == QUALITY_OK,
                       "%s fails %s (symbols %.2f digits %.2f mean word %.2f dup lines %.2f)", p,
                       quality_rule_name(r), (double)s.symbols / (double)s.nonspace,
                       (double)s.digits / (double)s.nonspace,
                       (double)s.run_chars / (double)(s.runs ? s.runs : 1),
                       (double)s.dup_line_chars / (double)(s.line_chars ? s.line_chars : 1));
                (*n_files)++;
            }
        }
        free(buf);
    }
    closedir(d);
}

static void test_quality_keeps_code(void) {
    const char *src = getenv("WHALE_SRC");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/src", src ? src : "..");
    struct stat st;
    if (stat(dir, &st)) {
        check_skip("%s missing (set WHALE_SRC to the checkout)", dir);
        return;
    }
    int n = 0;
    sources_pass(dir, &n);
    CHECKF(n > 100, "only %d source files seen", n);
}

/* ---- readers and shards ------------------------------------------------------------------- */

static void test_docs_text_and_resume(void) {
    const char *p = tmp_path("in.txt");
    write_file(p,
               "\n\nfirst doc line one\nline two\n\n \t\nsecond\r\nwith crlf\r\n\r\nthird at eof");
    doc_reader r;
    whale_err err = {0};
    CHECK(doc_reader_open(&r, p, 0, 0, 0, &err) == 0);
    CHECK(doc_reader_next(&r, &err) == 1 && !strcmp(r.doc.s, "first doc line one\nline two") &&
          r.doc_line == 3);
    int64_t off = r.resume_offset, line = r.resume_line;
    CHECK(doc_reader_next(&r, &err) == 1 && !strcmp(r.doc.s, "second\r\nwith crlf") &&
          r.doc_line == 7);
    CHECK(doc_reader_next(&r, &err) == 1 && !strcmp(r.doc.s, "third at eof") && r.doc_line == 10);
    CHECK(doc_reader_next(&r, &err) == 0);
    doc_reader_close(&r);
    /* restarting where the first document ended gives the rest, with the same line numbers */
    CHECK(doc_reader_open(&r, p, 0, off, line, &err) == 0);
    CHECK(doc_reader_next(&r, &err) == 1 && !strcmp(r.doc.s, "second\r\nwith crlf") &&
          r.doc_line == 7);
    doc_reader_close(&r);
}

static void test_docs_jsonl(void) {
    const char *p = tmp_path("in.jsonl");
    write_file(p, "{\"text\": \"a\\nb\"}\n\n{\"text\": 3}\nnot json\n[1]\n{\"text\": \"\\u4e2d\", "
                  "\"id\": 1}");
    doc_reader r;
    whale_err err = {0};
    CHECK(doc_reader_open(&r, p, 1, 0, 0, &err) == 0);
    CHECK(doc_reader_next(&r, &err) == 1 && r.status == DOC_OK && !strcmp(r.doc.s, "a\nb"));
    CHECK(doc_reader_next(&r, &err) == 1 && r.status == DOC_MALFORMED && r.doc_line == 3);
    CHECK(doc_reader_next(&r, &err) == 1 && r.status == DOC_MALFORMED && r.doc_line == 4);
    CHECK(doc_reader_next(&r, &err) == 1 && r.status == DOC_MALFORMED && r.doc_line == 5);
    CHECK(doc_reader_next(&r, &err) == 1 && r.status == DOC_OK && !strcmp(r.doc.s, "中") &&
          r.doc_line == 6);
    CHECK(doc_reader_next(&r, &err) == 0);
    doc_reader_close(&r);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) ? -1 : (long)st.st_size;
}

static void test_shards(void) {
    shard_set s;
    whale_err err = {0};
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(shard_set_open(&s, g_dir, "t", 8, NULL, 0, &err) == 0);
    CHECK(shard_set_add(&s, ids, 3, 99, &err) == 0);  /* 4 tokens */
    CHECK(shard_set_add(&s, ids, 3, 99, &err) == 0);  /* 8: still fits */
    CHECK(shard_set_add(&s, ids, 2, 99, &err) == 0);  /* a new shard */
    CHECK(shard_set_add(&s, ids, 10, 99, &err) == 0); /* longer than a shard: one of its own */
    CHECK(s.n_shards == 3 && s.tokens[0] == 8 && s.tokens[1] == 3 && s.tokens[2] == 11);
    CHECK(shard_set_sync(&s, &err) == 0);
    shard_set_close(&s);
    CHECK(file_size(tmp_path("t-000000.bin")) == 32 && file_size(tmp_path("t-000002.bin")) == 44);
    FILE *f = fopen(tmp_path("t-000000.bin"), "rb");
    uint8_t b[32];
    CHECK(fread(b, 1, 32, f) == 32);
    fclose(f);
    CHECK(b[0] == 1 && b[1] == 0 && b[12] == 99 && b[13] == 0 &&
          b[28] == 99); /* little-endian, eot after each */
    /* resume at the checkpoint "8, 3": shard 1 is current again, shard 2 goes */
    int64_t at[2] = {8, 3};
    CHECK(shard_set_open(&s, g_dir, "t", 8, at, 2, &err) == 0);
    CHECK(file_size(tmp_path("t-000002.bin")) == -1);
    CHECK(shard_set_add(&s, ids, 1, 99, &err) == 0 && s.tokens[1] == 5);
    shard_set_close(&s);
    CHECK(file_size(tmp_path("t-000001.bin")) == 20);
    int64_t too_long[2] = {8, 50};
    CHECK(shard_set_open(&s, g_dir, "t", 8, too_long, 2, &err) == WHALE_E_FORMAT);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/whale_test_data_%d", (int)getpid());
    mkdir(g_dir, 0755);
    RUN(test_minhash_estimates);
    RUN(test_lsh_shape);
    RUN(test_lsh_index_and_resume);
    RUN(test_exact_set);
    RUN(test_quality_rules_each);
    RUN(test_quality_keeps_code);
    RUN(test_docs_text_and_resume);
    RUN(test_docs_jsonl);
    RUN(test_shards);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_report("test_data");
}
