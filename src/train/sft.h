/* sft.h — supervised fine-tuning examples for the trainer: a JSONL file of conversations in
 * OpenAI's chat shape ({"messages": [{"role": ..., "content": ...}, ...]} per line), each laid out
 * in the model's chat format by the engine's renderer (whale_chat_apply), tokenized, and marked
 * so that only the assistant's tokens (its text and its end-of-turn marker) carry loss. Examples
 * are padded, one conversation per row, never packed: the model has no document mask, so a packed
 * neighbour would be attended to. Longer ones are cut to the row. A fixed share is held out for
 * validation. Owns the tokens; borrows nothing after tr_sft_open returns. */
#ifndef WHALE_TRAIN_SFT_H
#define WHALE_TRAIN_SFT_H

#include <stdint.h>

#include "whale.h"

typedef struct tr_sft tr_sft;

typedef struct tr_sft_stats {
    long lines;       /* non-blank lines read */
    long examples;    /* conversations kept (train + val) */
    long val;         /* of those, held out for validation */
    long truncated;   /* cut to ctx + 1 tokens */
    long dropped;     /* no assistant token left inside the row after cutting */
    int64_t tokens;      /* tokens kept, over all examples */
    int64_t loss_tokens; /* of those, the assistant's: positions that carry loss */
    const char *format;  /* the chat format used ("chatml", "deepseek-r1") */
} tr_sft_stats;

/* Read path with tok's vocabulary and chat format (format NULL: the model's own, else "chatml" or
 * "deepseek-r1"); rows of ctx + 1 tokens; val_fraction of the examples (spread evenly over the
 * file; at least one when > 0) held out. Returns 0, or a negative code with err naming file:line
 * for a line that is not a conversation (not JSON, no "messages" array, a message without a
 * string content, an unknown role, no assistant turn) — bad data is refused, not skipped. */
int tr_sft_open(tr_sft **out, const char *path, const whale_model *tok, const char *format, int ctx,
                double val_fraction, whale_err *err);
void tr_sft_free(tr_sft *s);
const tr_sft_stats *tr_sft_stats_get(const tr_sft *s);

/* B rows of up to T tokens (T <= ctx) into ids and targets (-1: no loss; pad positions hold id
 * 0 and target -1), cut to the longest row (tr_sft_trim): returns that row length T', the rows
 * lying at ids[B][T'] and targets[B][T']. Training rows: examples drawn with *rng (so a resumed
 * run replays the same batches); validation rows (val != 0): the held-out examples in order from
 * index first, wrapping. */
int tr_sft_batch(const tr_sft *s, int val, uint64_t *rng, int64_t first, int B, int T, int32_t *ids, int32_t *targets);

/* Cut a padded batch to its longest row: the positions after every row's last target change no
 * loss (the model's attention is causal), so B rows of T are repacked in place as B rows of the
 * returned T' <= T (at least 1): the same losses and gradients for less work. */
int tr_sft_trim(int32_t *ids, int32_t *targets, int B, int T);

#endif
