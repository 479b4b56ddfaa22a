/* sampler.h — choosing the next token from logits: greedy, temperature, top-k, top-p, min-p,
 * repetition / presence / frequency penalties, with an explicit, seedable random state so a
 * run can be repeated exactly.
 * Order of operations: penalties -> top-k -> temperature -> softmax -> top-p -> min-p -> draw.
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
/* 1 if sampling is deterministic argmax (temperature 0 or top-k 1). */
int sampler_is_greedy(const sampler *s);
/* Reseed (a new run that should repeat an earlier one). */
void sampler_seed(sampler *s, uint64_t seed);

#endif
