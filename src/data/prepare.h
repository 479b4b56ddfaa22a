/* prepare.h — `whale data prepare` as a library call: input files, directories and JSONL in;
 * curated token shards, a validation shard and manifest.json out (docs/DATA.md).
 *
 * Each document passes, in order: well-formed (JSONL) and within DOC_MAX_BYTES -> valid UTF-8
 * -> not empty -> not an exact duplicate of any earlier document -> the quality rules (unless
 * opts.filter is 0) -> not a near duplicate of a kept document -> tokenized, and written to the
 * validation shard (its text hash below val_fraction, or the first kept document) or to the
 * training shards, followed by the end-of-text id. It is counted under the first step it fails.
 *
 * Resumable: at every checkpoint (each checkpoint_bytes of input) the shards and the dedup logs
 * are fsynced and DIR/state.json records where reading stands, the counts and each shard's
 * length. A run started again with the same inputs and settings goes on from there, cutting the
 * shards and logs back to the recorded lengths: the output is the same bytes as one run's.
 * Owns: the run (files in DIR). Prints nothing: notes and progress go to the caller's hooks. */
#ifndef WHALE_DATA_PREPARE_H
#define WHALE_DATA_PREPARE_H

#include <stdint.h>

#include "data/quality.h"
#include "whale.h"

struct tokenizer;

/* Why a document was dropped (or that it was kept), as counted in manifest.json's "counts". */
enum prep_reason {
    PREP_KEPT = 0,
    PREP_MALFORMED_JSONL,
    PREP_TOO_LARGE,
    PREP_INVALID_UTF8,
    PREP_EMPTY,
    PREP_EXACT_DUPLICATE,
    PREP_NEAR_DUPLICATE,
    PREP_QUALITY, /* + quality rule - 1: one reason per rule (QUALITY_MIN_WORDS first) */
    PREP_N = PREP_QUALITY + QUALITY_N - 1
};
const char *prep_reason_name(int reason);

#define PREP_NOTES_PER_REASON                                                                      \
    5 /* file:line notes per kind of bad input; the rest are only counted */

typedef struct prepare_opts {
    const char *const *inputs; /* files or directories (read recursively, sorted, hidden skipped) */
    int n_inputs;
    const char *out_dir;         /* created if missing */
    const char *tokenizer_path;  /* recorded in the manifest */
    const struct tokenizer *tok; /* borrowed */
    double val_fraction;         /* share of documents held out; 0: none */
    int filter;                  /* 1: apply the quality rules */
    double near_threshold; /* Jaccard similarity at or above which a document is a near duplicate */
    int64_t shard_tokens;
    int64_t
        checkpoint_bytes; /* input bytes between checkpoints (not a setting: output is the same) */
    int n_threads;        /* measuring, MinHash and tokenizing; <= 0: one per CPU (same output) */
    quality_rules rules;
    void (*note)(void *user, const char *msg); /* bad input, resume notices; may be NULL */
    void (*progress)(void *user, double done, double total); /* input bytes; may be NULL */
    void *user;
} prepare_opts;

/* The defaults: val_fraction 0.005, filter on, near_threshold 0.8, 50M tokens per shard,
 * checkpoints every 64 MiB, quality_rules_default. */
void prepare_opts_default(prepare_opts *o);

typedef struct prepare_report {
    int64_t counts[PREP_N];
    int64_t documents; /* read, in all */
    int64_t train_docs, val_docs, train_tokens, val_tokens, train_shards, val_shards;
    int64_t bytes_total;  /* of all inputs */
    int64_t bytes_run;    /* read by this call (less than bytes_total after a resume) */
    double seconds;       /* this call */
    int resumed;          /* went on from a checkpoint */
    int already_complete; /* DIR held this run finished: nothing was done */
    int32_t eot;
    int bands, rows; /* the LSH shape used */
} prepare_report;

/* Run (or resume) the preparation. Returns 0 with *rep filled; WHALE_E_ARG for bad options or
 * a DIR holding another run; WHALE_E_IO, WHALE_E_FORMAT (a damaged checkpoint), WHALE_E_NOMEM.
 * Bad documents are not errors: they are counted. */
int data_prepare(const prepare_opts *o, prepare_report *rep, whale_err *err);

#endif
