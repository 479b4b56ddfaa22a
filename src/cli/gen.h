/* gen.h — what `whale run` and `whale chat` share: generation options and their flags, loading
 * a model for chat, and the token loop (sample, decode, split reasoning from answer, stop). */
#ifndef WHALE_CLI_GEN_H
#define WHALE_CLI_GEN_H

#include <signal.h>
#include <stdint.h>

#include "engine/chat_format.h"
#include "engine/reasoning.h"
#include "engine/session.h"

typedef struct gen_opts {
    const char *model;
    const char *chat_format; /* override name or NULL */
    sampler_params sp;
    int64_t n_ctx;      /* 0: model default (capped at 4096) */
    int64_t max_tokens; /* per reply; 0: until the context is full */
    int threads;
    int think;          /* R1: force the reply to start with <think> */
    int spec_mtp;       /* --speculative mtp */
    int kv_f16;         /* --kv-type f16 */
} gen_opts;

void gen_opts_default(gen_opts *o);
/* If argv[*i] is a generation flag, consume it (and its value) and return 1; return 0 if it is
 * not one; -1 (message printed) for a bad value. */
int gen_parse_flag(gen_opts *o, int argc, char **argv, int *i, const char *cmd);
/* Lines of --help for the shared flags. */
extern const char gen_flags_help[];
/* Turn on what gen_opts asks of a new session (speculative decoding); message printed on error. */
int gen_session_setup(session *s, const gen_opts *o, const char *cmd);

typedef struct gen_stats {
    size_t n_prompt, n_prefill, n_gen;
    double t_prefill, t_decode; /* seconds */
    const char *finish;         /* "stop", "length", "cancelled", "error" */
    uint64_t drafted, accepted; /* speculative decoding: drafts made and accepted in this reply */
} gen_stats;

typedef void (*gen_sink)(void *ctx, reasoning_kind kind, const char *text, size_t n);

/* Prompt the session with ids and generate until an end-of-turn token, max_tokens, a full
 * context, or *cancel becoming nonzero. Text goes to sink split into reasoning and answer
 * (start_in_think: the prompt ended inside <think>). Returns 0 or a negative status. */
int gen_run(session *s, const tokenizer *t, const int32_t *ids, size_t n, int64_t max_tokens, int start_in_think,
            volatile sig_atomic_t *cancel, gen_sink sink, void *ctx, gen_stats *st, whale_err *err);

#endif
