/* sampler.h — choosing the next token from logits: greedy, temperature, top-k, top-p, min-p,
 * repetition / presence / frequency penalties, with an explicit, seedable random state so a
 * run can be repeated exactly.
 * Order of operations: penalties -> top-k -> temperature -> softmax -> top-p -> min-p -> draw.
 * Cost: O(n_vocab) per token; only top-k's k and top-p's leading candidates are ever sorted.
 * Owns: its random state and scratch for n_vocab candidates (allocated once, none per call). */
#ifndef WHALE_ENGINE_SAMPLER_H
#define WHALE_ENGINE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* The public whale_sampling (whale.h): temperature 0 is greedy (argmax, lowest id on ties); the
 * penalties divide/multiply (repeat) or subtract (presence once, frequency per occurrence) the
 * logits of the last penalty_last_n tokens. */
typedef whale_sampling sampler_params;

#define SAMPLER_SEED_RANDOM WHALE_SEED_RANDOM

/* DeepSeek's recommendation for R1-style models: temperature 0.6, top-p 0.95. */
sampler_params sampler_default_params(void);

typedef struct sampler sampler;
sampler *sampler_init(const sampler_params *p, int64_t n_vocab); /* NULL on OOM */
void sampler_free(sampler *s);
/* Pick a token. logits (n_vocab) are modified (penalties, scaling). history: tokens so far,
 * for the penalties. NaN logits are never picked; if every logit is -inf or NaN, returns 0. */
int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history);
/* Speculative sampling with a deterministic drafter (engine/draft.h): the draft token `draft` was
 * proposed for this position with certainty. Returns draft with the probability p(draft) that
 * sampler_sample would give it, else a token drawn from the other candidates in proportion to
 * their probabilities (p with draft's share removed and renormalized), so the token returned
 * has exactly sampler_sample's distribution whatever the draft (Leviathan et al. 2023, with the
 * draft distribution a point mass). Greedy settings return the best token, as sampler_sample.
 * Consumes one or two random numbers, so a seed gives another sequence than plain sampling. */
int32_t sampler_sample_draft(sampler *s, float *logits, const int32_t *history, size_t n_history, int32_t draft);
/* What sampler_sample would draw from, for tests: the candidates that survive the settings
 * into ids and their probabilities (not renormalized after top-p / min-p) into probs (room for
 * n_vocab each), in no promised order; returns how many (1 with probability 1 when greedy, 0
 * when no logit is finite). Consumes no random numbers. */
int64_t sampler_candidates(sampler *s, float *logits, const int32_t *history, size_t n_history, int32_t *ids,
                           float *probs);
/* The k best of logits[0..n) into ids, best first (the lower id among equal logits, NaN
 * last): a heap of k, O(n log k). Returns how many (k, or n when smaller). */
int sampler_top(const float *logits, int64_t n, int k, int32_t *ids);
/* 1 if sampling is deterministic argmax (temperature 0 or top-k 1). */
int sampler_is_greedy(const sampler *s);
/* Reseed (a new run that should repeat an earlier one). */
void sampler_seed(sampler *s, uint64_t seed);

#endif
