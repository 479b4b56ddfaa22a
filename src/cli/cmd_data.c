/* cmd_data.c — `whale data`: prepare (curated token shards; the work is src/data/prepare.c) and
 * tokenizer (train a BPE vocabulary, cmd_data_tokenizer.c). Argument parsing and printing only. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "cli/cli.h"
#include "data/prepare.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale data prepare INPUT... -m MODEL_OR_TOKENIZER -o DIR [options]\n"
               "       whale data tokenizer INPUT... --vocab-size N -o tokenizer.json\n"
               "\n"
               "  prepare   text, JSONL and directories -> deduplicated, filtered token shards for "
               "training\n"
               "  tokenizer train a byte-level BPE vocabulary (whale data tokenizer --help)\n");
}

static void usage_prepare(FILE *f) {
    prepare_opts d;
    prepare_opts_default(&d);
    fprintf(
        f,
        "usage: whale data prepare INPUT... -m MODEL_OR_TOKENIZER -o DIR [options]\n"
        "\n"
        "Turn text into training shards: DIR/train-000000.bin, ... and DIR/val-000000.bin (uint32\n"
        "little-endian token ids, each document followed by the end-of-text token) and "
        "DIR/manifest.json\n"
        "(inputs, counts per reason, tokens per shard, tokenizer, thresholds).\n"
        "\n"
        "INPUT  a file or a directory (every file under it, in name order; hidden files skipped).\n"
        "       *.jsonl, *.ndjson, *.json: one JSON object per line, its \"text\" is a document.\n"
        "       Any other file is text: documents are separated by blank lines.\n"
        "\n"
        "Each document is dropped when it is malformed, invalid UTF-8, empty, an exact duplicate "
        "of an\n"
        "earlier one, fails a quality rule, or is a near duplicate of a kept one (MinHash LSH); "
        "the\n"
        "counts per reason are printed and kept in the manifest. docs/DATA.md explains every "
        "rule.\n"
        "\n"
        "  -m, --model PATH     the tokenizer: a tokenizer.json, a .gguf, a directory holding one, "
        "or a\n"
        "                       model name (whale list); its <|endoftext|> (else EOS) separates "
        "documents\n"
        "  -o, --out DIR        output directory (created; a killed run there resumes when "
        "re-run)\n"
        "  --val-fraction F     share of documents held out for validation, chosen by a hash of "
        "the\n"
        "                       text (default %g; 0: none; the first kept document always goes "
        "there)\n"
        "  --shard-tokens N     tokens per shard file (default %lld)\n"
        "  --near-threshold J   MinHash Jaccard similarity from which a document is a near "
        "duplicate\n"
        "                       (default %g)\n"
        "  --no-filter          skip the quality rules (deduplication stays)\n"
        "  --quality NAME=V     change one quality threshold (repeatable); defaults:\n"
        "                         min_words=%lld max_nonprintable_ratio=%g max_symbol_ratio=%g\n"
        "                         max_digit_ratio=%g mean_word_length_min=%g "
        "mean_word_length_max=%g\n"
        "                         max_duplicate_line_fraction=%g\n"
        "  --checkpoint-mb N    input between checkpoints (default %lld; does not change the "
        "output)\n"
        "  -t, --threads N      threads measuring, hashing and tokenizing (default: one per CPU; "
        "the\n"
        "                       output is the same for any number)\n",
        d.val_fraction, (long long)d.shard_tokens, d.near_threshold, (long long)d.rules.min_words,
        d.rules.max_nonprintable_ratio, d.rules.max_symbol_ratio, d.rules.max_digit_ratio,
        d.rules.mean_word_length_min, d.rules.mean_word_length_max,
        d.rules.max_duplicate_line_fraction, (long long)(d.checkpoint_bytes >> 20));
}

static void on_note(void *user, const char *msg) {
    progress *bar = user;
    if (bar->tty) fputc('\n', stderr); /* leave the bar's line */
    fprintf(stderr, "whale data prepare: %s\n", msg);
}

static void on_progress(void *user, double done, double total) {
    progress *bar = user;
    bar->total = total;
    progress_update(bar, done);
}

static int parse_num(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || *end || errno || !(x >= lo && x <= hi)) {
        fprintf(stderr, "whale data prepare: %s needs a number in [%g, %g]\n", opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int cmd_data_prepare(int argc, char **argv) {
    prepare_opts o;
    prepare_opts_default(&o);
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    const char *model = NULL;
    int n_in = 0, rc = 2;
    tokenizer *tok = NULL;
    if (!inputs) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        whale_err e = {0};
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_prepare(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!v) goto missing;
            model = v, i++;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!v) goto missing;
            o.out_dir = v, i++;
        } else if (!strcmp(a, "--val-fraction")) {
            if (parse_num(a, v, 0, 1, &o.val_fraction)) goto done;
            i++;
        } else if (!strcmp(a, "--near-threshold")) {
            if (parse_num(a, v, 0.01, 1, &o.near_threshold)) goto done;
            i++;
        } else if (!strcmp(a, "--shard-tokens")) {
            if (parse_num(a, v, 2, 4e12, &x)) goto done;
            o.shard_tokens = (int64_t)x, i++;
        } else if (!strcmp(a, "--checkpoint-mb")) {
            if (parse_num(a, v, 0, 1e9, &x)) goto done;
            o.checkpoint_bytes = (int64_t)(x * (1 << 20)), i++;
            if (o.checkpoint_bytes < 1) o.checkpoint_bytes = 1;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (parse_num(a, v, 1, 4096, &x)) goto done;
            o.n_threads = (int)x, i++;
        } else if (!strcmp(a, "--no-filter")) {
            o.filter = 0;
        } else if (!strcmp(a, "--quality")) {
            if (!v) goto missing;
            if (quality_rules_set(&o.rules, v, &e)) {
                fprintf(stderr, "whale data prepare: %s\n", e.msg);
                goto done;
            }
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "whale data prepare: unknown option %s (see --help)\n", a);
            goto done;
        } else {
            inputs[n_in++] = a;
        }
        continue;
    missing:
        fprintf(stderr, "whale data prepare: %s needs a value\n", a);
        goto done;
    }
    if (!n_in || !model || !o.out_dir) {
        fprintf(stderr, "whale data prepare: %s missing\n\n",
                !n_in    ? "INPUT"
                : !model ? "-m MODEL_OR_TOKENIZER"
                         : "-o DIR");
        usage_prepare(stderr);
        goto done;
    }
    rc = 1;
    whale_err err = {0};
    const char *path = cli_model_path(model);
    if (cli_open_tokenizer(path, &tok, &err)) {
        fprintf(stderr, "whale data prepare: %s\n", err.msg);
        goto done;
    }
    progress bar;
    progress_begin(&bar, "prepare", 1, 1);
    o.inputs = inputs;
    o.n_inputs = n_in;
    char abs_tok[PATH_MAX]; /* recorded absolute, so `whale train --data DIR` finds it from anywhere */
    o.tokenizer_path = realpath(path, abs_tok) ? abs_tok : path;
    o.tok = tok;
    o.note = on_note;
    o.progress = on_progress;
    o.user = &bar;
    prepare_report r;
    int prc = data_prepare(&o, &r, &err);
    if (bar.last_drawn >= 0) progress_end(&bar);
    if (prc) {
        fprintf(stderr, "whale data prepare: %s\n", err.msg);
        goto done;
    }
    if (r.already_complete)
        printf(
            "%s: already prepared with these inputs and settings (manifest.json); nothing to do\n",
            o.out_dir);
    else
        printf("read %.1f MB in %.1f s (%.1f MB/s)%s\n", (double)r.bytes_run / 1e6, r.seconds,
               r.seconds > 0 ? (double)r.bytes_run / 1e6 / r.seconds : 0,
               r.resumed ? ", resumed from a checkpoint" : "");
    printf("documents %lld\n", (long long)r.documents);
    for (int k = 0; k < PREP_N; k++)
        if (k == PREP_KEPT || r.counts[k])
            printf("  %-28s %lld\n", prep_reason_name(k), (long long)r.counts[k]);
    printf("train: %lld documents, %lld tokens in %lld shard%s\n", (long long)r.train_docs,
           (long long)r.train_tokens, (long long)r.train_shards, r.train_shards == 1 ? "" : "s");
    printf("val:   %lld documents, %lld tokens\n", (long long)r.val_docs, (long long)r.val_tokens);
    printf("wrote %s/manifest.json\n", o.out_dir);
    rc = 0;
done:
    tokenizer_free(tok);
    free(inputs);
    return rc;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "tokenizer")) return cmd_data_tokenizer(argc - 1, argv + 1);
    if (!strcmp(argv[1], "prepare")) return cmd_data_prepare(argc - 1, argv + 1);
    fprintf(stderr, "whale data: unknown subcommand '%s'\n", argv[1]);
    return 2;
}
