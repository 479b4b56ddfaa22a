/* bpe_train.h — learning a byte-level BPE vocabulary from text, written as a tokenizer.json
 * that Whale (tokenizer_load_json) and Hugging Face `tokenizers` load with the same ids.
 *
 * Text is split by one of the builtin pre-tokenizer programs (pretokenize.c: Qwen2's pattern
 * by default, DeepSeek-V3's on request), exactly as encoding will split it; each distinct
 * piece is counted once in a hash map, so memory grows with the number of distinct pieces, not
 * with the corpus. Learning starts from the 256 byte tokens (GPT-2's byte-level alphabet, ids
 * in the order of their characters) and repeatedly merges the most frequent adjacent pair,
 * counted over all pieces weighted by how often each occurs. Ties go to the pair with the
 * smaller left id, then the smaller right id. Pair counts are kept up to date only in the
 * pieces that hold the merged pair, and a lazy max-heap finds the next pair, so a merge costs
 * the occurrences it touches. Special tokens follow the merges.
 * Owns: the piece counts, the learned merges, the written file. Reading files is corpus.h's. */
#ifndef WHALE_DATA_BPE_TRAIN_H
#define WHALE_DATA_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* A piece longer than this many bytes is not counted (a base64 blob, a run of one letter):
 * BPE learns nothing from it that shorter pieces do not teach, and each would be a map entry
 * as long as itself. Encoding still handles such pieces. */
#define BPE_TRAIN_MAX_PIECE 1024
/* Added tokens beyond the defaults: a handful is what chat formats use. */
#define BPE_TRAIN_MAX_SPECIAL 64

typedef struct bpe_trainer bpe_trainer;

/* An added token: text matched literally before pre-tokenization, never split or merged. */
typedef struct bpe_special {
    const char *text;
    int special; /* 1: special=true (a control token: Whale ends a turn at it, decoders may skip it) */
} bpe_special;

/* The tokens every trained vocabulary gets, in id order after the merges: <|endoftext|>
 * (between documents), <|im_start|> and <|im_end|> (ChatML turns, as Qwen), and <think>,
 * </think> — these two as plain added tokens (special=false, as in Qwen and the R1 distills):
 * reasoning stays visible text when special tokens are skipped, and Whale ends a turn at every
 * control token, which a reasoning tag must not do. */
extern const bpe_special bpe_train_default_specials[];
extern const size_t bpe_train_n_default_specials;

typedef struct bpe_train_stats {
    uint64_t bytes_fed;   /* text bytes given to bpe_trainer_feed */
    uint64_t pieces;      /* pre-tokenizer pieces counted */
    uint64_t long_pieces; /* pieces skipped for length (BPE_TRAIN_MAX_PIECE) */
    uint64_t bad_bytes;   /* bytes that were not valid UTF-8, each counted as U+FFFD */
    uint64_t specials;    /* special-token spellings found in the text (not counted as pieces) */
    uint64_t distinct;    /* distinct pieces */
    int64_t n_merges;     /* merges learned */
    int64_t n_vocab;      /* ids: 256 + new tokens + specials */
} bpe_train_stats;

/* A trainer for builtin pre-tokenizer `pre` ("qwen2", "deepseek-v3", ... pretok_builtin_names;
 * NULL: "qwen2") with added tokens sp[0..n_sp) (ids in that order, after the merges). Returns
 * 0, WHALE_E_ARG (unknown pre-tokenizer, empty or repeated token, too many), WHALE_E_NOMEM. */
int bpe_trainer_new(bpe_trainer **out, const char *pre, const bpe_special *sp, size_t n_sp, whale_err *err);
void bpe_trainer_free(bpe_trainer *t);

/* Count the pieces of text[0..n), a span that can be pre-tokenized on its own (a document, or
 * a part of one cut where no piece crosses: corpus.h). Bytes that are not valid UTF-8 count as
 * U+FFFD each (stats.bad_bytes); spellings of the added tokens are cut out first, as encoding
 * does; the text is NFC-normalized first when the pre-tokenizer's models do so (Qwen2).
 * Returns 0, WHALE_E_NOMEM, or WHALE_E_FORMAT (the regex engine failed). */
int bpe_trainer_feed(bpe_trainer *t, const char *text, size_t n, whale_err *err);

/* Told the merges done so far (of `total` wanted), every few hundred merges. */
typedef void (*bpe_train_progress_fn)(void *ctx, int64_t done, int64_t total);

/* Learn merges until the vocabulary holds vocab_size ids (256 bytes + new tokens + added
 * tokens) or no pair occurs min_frequency times (then fewer: see stats). Runs once per trainer.
 * Returns 0, WHALE_E_ARG (vocab_size below 256 + added tokens, min_frequency < 1, called twice),
 * WHALE_E_NOMEM. */
int bpe_trainer_learn(bpe_trainer *t, int64_t vocab_size, int64_t min_frequency, bpe_train_progress_fn progress,
                      void *ctx, whale_err *err);

/* Write tokenizer.json to path (through path.part, renamed when complete). Returns 0 or
 * WHALE_E_IO / WHALE_E_NOMEM; WHALE_E_ARG before bpe_trainer_learn. */
int bpe_trainer_write_json(const bpe_trainer *t, const char *path, whale_err *err);

void bpe_trainer_stats(const bpe_trainer *t, bpe_train_stats *out);
/* Merge i (0-based, learned order): left and right token ids, result id. 0, or -1 out of range. */
int bpe_trainer_merge(const bpe_trainer *t, int64_t i, int32_t *a, int32_t *b, int32_t *result);
/* The bytes token id stands for (borrowed: valid while t lives); NULL for an id out of range or
 * an added token. */
const char *bpe_trainer_token(const bpe_trainer *t, int32_t id, size_t *len);

#endif
