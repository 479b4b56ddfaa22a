/* cmd_data_tokenizer.c — `whale data tokenizer`: train a byte-level BPE vocabulary. Argument
 * parsing, the progress bars and the summary; the reading is data/corpus.c, the training and
 * the file data/bpe_train.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/progress.h"
#include "cli/cli.h"
#include "data/bpe_train.h"
#include "data/corpus.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: whale data tokenizer INPUT... --vocab-size N -o tokenizer.json [options]\n\n"
            "Train a byte-level BPE vocabulary on text and write it as a tokenizer.json that Whale\n"
            "(whale tokenize -m tokenizer.json) and Hugging Face tokenizers load with the same ids.\n\n"
            "INPUT is a text file, a .jsonl file (one {\"text\": ...} object per line, each a document),\n"
            "or a directory (every file beneath it, in name order; hidden names skipped). Files are\n"
            "streamed: memory grows with the number of distinct words, not with the corpus.\n\n"
            "  --vocab-size N      ids in the vocabulary, all counted: the 256 byte tokens, the learned\n"
            "                      merges and the added tokens (so N = 8192 learns 8192 - 256 - 5 = 7931\n"
            "                      tokens with the default added tokens). Small models: 4096-16384\n"
            "  -o PATH             the tokenizer.json to write (written whole, then renamed)\n"
            "  --min-frequency N   never merge a pair seen fewer than N times (default 2); a corpus\n"
            "                      too small for N ids then gives fewer, with a note\n"
            "  --pre NAME          the pre-tokenizer that splits text into words before BPE, as the\n"
            "                      models' own: qwen2 (default: Qwen2/R1-Distill-Qwen's regex, NFC,\n"
            "                      single digits) or deepseek-v3 (V3/R1's: digits in 1-3, CJK runs);\n"
            "                      also llama3, deepseek-llm, deepseek-coder, gpt2\n"
            "  --special TOKEN     add a special token after the defaults (repeatable)\n"
            "  --no-default-special  leave out the default added tokens\n\n"
            "Added tokens, after the merges in this order: <|endoftext|> (between documents),\n"
            "<|im_start|>, <|im_end|> (ChatML turns) as special tokens; <think>, </think> as plain\n"
            "added tokens (special=false, as Qwen and the R1 distills: reasoning stays visible text,\n"
            "and a turn does not end at it). Their spellings in the corpus are not learned from.\n"
            "Text that is not valid UTF-8 is read with each bad byte as U+FFFD (counted in the summary).\n"
            "The same inputs and options give the same file, byte for byte.\n");
}

typedef struct ui {
    bpe_trainer *t;
    progress bar;
    int merging;
} ui;

static int feed(void *ctx, const char *text, size_t n, whale_err *err) {
    return bpe_trainer_feed(((ui *)ctx)->t, text, n, err);
}

static void read_progress(void *ctx, uint64_t done) {
    progress_update(&((ui *)ctx)->bar, (double)done);
}

static void merge_progress(void *ctx, int64_t done, int64_t total) {
    (void)total;
    progress_update(&((ui *)ctx)->bar, (double)done);
}

static int parse_count(const char *opt, const char *v, int64_t *out) {
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || x < 0) {
        fprintf(stderr, "whale data tokenizer: %s needs a whole number, got '%s'\n", opt, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_data_tokenizer(int argc, char **argv) {
    int64_t vocab_size = -1, min_freq = 2;
    const char *out = NULL, *pre = "qwen2";
    int defaults = 1;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    bpe_special *sp = calloc(bpe_train_n_default_specials + (size_t)argc, sizeof *sp);
    size_t n_in = 0, n_extra = 0;
    bpe_special *extra = calloc((size_t)argc, sizeof *extra);
    corpus c = {0};
    bpe_trainer *t = NULL;
    whale_err err = {0};
    int rc = 2;
    if (!inputs || !sp || !extra) {
        fprintf(stderr, "whale data tokenizer: out of memory\n");
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--vocab-size")) {
            if (parse_count(a, v, &vocab_size)) goto done;
            i++;
        } else if (!strcmp(a, "--min-frequency")) {
            if (parse_count(a, v, &min_freq)) goto done;
            i++;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) break;
            out = v;
            i++;
        } else if (!strcmp(a, "--pre")) {
            if (!v) break;
            pre = v;
            i++;
        } else if (!strcmp(a, "--special")) {
            if (!v) break;
            extra[n_extra++] = (bpe_special){v, 1};
            i++;
        } else if (!strcmp(a, "--no-default-special")) {
            defaults = 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "whale data tokenizer: unknown option '%s' (see --help)\n", a);
            goto done;
        } else {
            inputs[n_in++] = a;
        }
    }
    if (argc > 1 && argv[argc - 1][0] == '-' && argv[argc - 1][1] &&
        (!strcmp(argv[argc - 1], "-o") || !strcmp(argv[argc - 1], "--output") || !strcmp(argv[argc - 1], "--pre") ||
         !strcmp(argv[argc - 1], "--special"))) {
        fprintf(stderr, "whale data tokenizer: %s needs a value\n", argv[argc - 1]);
        goto done;
    }
    if (!n_in || vocab_size < 0 || !out) {
        fprintf(stderr, "whale data tokenizer: %s\n",
                !n_in ? "no input (give text files, .jsonl files or directories)"
                : vocab_size < 0 ? "--vocab-size N is required (e.g. 8192)" : "-o tokenizer.json is required");
        fprintf(stderr, "usage: whale data tokenizer INPUT... --vocab-size N -o tokenizer.json [options] (--help: more)\n");
        goto done;
    }
    size_t n_sp = 0;
    if (defaults)
        for (size_t k = 0; k < bpe_train_n_default_specials; k++) sp[n_sp++] = bpe_train_default_specials[k];
    for (size_t k = 0; k < n_extra; k++) sp[n_sp++] = extra[k];

    rc = 1;
    if (bpe_trainer_new(&t, pre, sp, n_sp, &err)) goto fail;
    if (vocab_size < 256 + (int64_t)n_sp) { /* refused before reading a corpus for nothing */
        err_set(&err, WHALE_E_ARG, "--vocab-size %lld is too small: the 256 byte tokens and %zu added tokens need %lld",
                (long long)vocab_size, n_sp, (long long)(256 + n_sp));
        goto fail;
    }
    if (min_freq < 1) {
        err_set(&err, WHALE_E_ARG, "--min-frequency must be at least 1");
        goto fail;
    }
    { /* the output must be writable before a long read, not after */
        char part[4096];
        snprintf(part, sizeof part, "%s.part", out);
        FILE *f = fopen(part, "wb");
        if (!f) {
            err_set(&err, WHALE_E_IO, "cannot write %s: %s", part, strerror(errno));
            goto fail;
        }
        fclose(f);
        remove(part);
    }
    for (size_t i = 0; i < n_in; i++)
        if (corpus_add(&c, inputs[i], &err)) goto fail;
    if (!c.n) {
        err_set(&err, WHALE_E_ARG, "no files found in the inputs");
        goto fail;
    }

    ui u = {.t = t};
    double t0 = clock_now_s();
    progress_begin(&u.bar, "reading", (double)c.total_bytes, 1);
    int r = corpus_read(&c, feed, read_progress, &u, &err);
    progress_end(&u.bar);
    if (r) goto fail;
    double t1 = clock_now_s();
    bpe_train_stats st;
    bpe_trainer_stats(t, &st);
    if (!st.distinct) {
        err_set(&err, WHALE_E_ARG, "the inputs hold no text");
        goto fail;
    }
    int64_t want = vocab_size - 256 - (int64_t)n_sp;
    progress_begin(&u.bar, "merging", (double)(want > 0 ? want : 1), 0);
    r = bpe_trainer_learn(t, vocab_size, min_freq, merge_progress, &u, &err);
    progress_end(&u.bar);
    if (r) goto fail;
    double t2 = clock_now_s();
    if (bpe_trainer_write_json(t, out, &err)) goto fail;
    bpe_trainer_stats(t, &st);

    double mb = (double)st.bytes_fed / 1e6;
    fprintf(stderr, "read %.1f MB in %zu file%s: %llu words, %llu distinct, in %.2f s (%.1f MB/s)\n", mb, c.n,
            c.n == 1 ? "" : "s", (unsigned long long)st.pieces, (unsigned long long)st.distinct, t1 - t0,
            t1 > t0 ? mb / (t1 - t0) : 0.0);
    if (st.bad_bytes)
        fprintf(stderr, "note: %llu bytes were not valid UTF-8; each was read as U+FFFD\n",
                (unsigned long long)st.bad_bytes);
    if (st.long_pieces)
        fprintf(stderr, "note: %llu words longer than %d bytes were not learned from\n",
                (unsigned long long)st.long_pieces, BPE_TRAIN_MAX_PIECE);
    fprintf(stderr, "learned %lld merges in %.2f s\n", (long long)st.n_merges, t2 - t1);
    if (st.n_vocab < vocab_size)
        fprintf(stderr, "note: the corpus has no more pairs seen %lld times or more: %lld ids, not %lld "
                        "(more text, or a lower --min-frequency)\n",
                (long long)min_freq, (long long)st.n_vocab, (long long)vocab_size);
    fprintf(stderr, "wrote %s: %lld ids (256 bytes + %lld merged + %zu added), pre-tokenizer %s, %.2f s in all\n", out,
            (long long)st.n_vocab, (long long)(st.n_vocab - 256 - (int64_t)n_sp), n_sp, pre, clock_now_s() - t0);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "whale data tokenizer: %s\n", err.msg);
done:
    bpe_trainer_free(t);
    corpus_free(&c);
    free(inputs);
    free(sp);
    free(extra);
    return rc;
}
