/* gen.h — what `whale run` and `whale chat` share: generation options and their flags, opening
 * the model and a one-sequence engine (whale.h), and the reply loop (submit, stream the text
 * split into reasoning and answer, stop on Ctrl-C). */
#ifndef WHALE_CLI_GEN_H
#define WHALE_CLI_GEN_H

#include <signal.h>
#include <stdint.h>

#include "whale.h"

typedef struct gen_opts {
    const char *model;
    const char *chat_format; /* override name or NULL */
    whale_sampling sp;
    int64_t n_ctx;      /* 0: model default (capped at 4096) */
    int64_t max_tokens; /* per reply; 0: until the context is full */
    int threads;
    int think;          /* R1: force the reply to start with <think> */
    int spec;           /* enum whale_speculative: --speculative mtp, --draft lookup|MODEL */
    const char *draft;  /* --draft MODEL: the draft model's name or path */
    int draft_max;      /* --draft-max N; 0: the drafter's default */
    int kv_type;         /* --kv-type f32|f16|bf16: OP_KV_* */
    const char *lora;   /* --lora PATH: a PEFT adapter applied to the model */
    int cache;          /* the context cache (--no-cache: 0) */
    int json_mode;      /* --json-mode: the answer is a JSON object */
    int64_t reasoning_budget; /* --reasoning-budget N; -1: none */
    int logprobs;       /* --logprobs K: record log probabilities and K alternatives; -1: off */
} gen_opts;

void gen_opts_default(gen_opts *o);
/* If argv[*i] is a generation flag, consume it (and its value) and return 1; return 0 if it is
 * not one; -1 (message printed) for a bad value. */
int gen_parse_flag(gen_opts *o, int argc, char **argv, int *i, const char *cmd);
/* Lines of --help for the shared flags. */
extern const char gen_flags_help[];

/* Open the model -m names; 0, or 1 with a message printed. */
int gen_open_model(const gen_opts *o, int show_progress, whale_model **m);
/* A one-sequence engine with room for n_ctx tokens (0: o->n_ctx, else the model's), and the
 * draft model --draft names into *draft (NULL without one; the caller closes it after freeing
 * the engine); 0, or 1 with a message printed. */
int gen_open_engine(const gen_opts *o, whale_model *m, int64_t n_ctx, whale_engine **e, whale_model **draft,
                    const char *cmd);
/* "mtp", "lookup", "draft model" for o->spec; NULL for none. */
const char *gen_spec_name(const gen_opts *o);

typedef struct gen_logprob {
    float lp;
    int n_top;
    int32_t top_id[WHALE_MAX_TOP_LOGPROBS];
    float top_lp[WHALE_MAX_TOP_LOGPROBS];
} gen_logprob;

typedef struct gen_stats {
    size_t n_prompt, n_cached, n_gen; /* prompt tokens, of which from the cache; generated */
    double t_prefill, t_decode;       /* seconds to the first token; after it */
    const char *finish;               /* "stop", "length", "cancelled", "error" */
    uint64_t drafted, accepted;       /* speculative decoding: drafts verified and kept */
    whale_ids tokens;                 /* the generated ids (the caller frees them) */
    gen_logprob *lp;                  /* (n_gen) with --logprobs, else NULL (the caller frees) */
} gen_stats;

/* Generate a reply to the prompt ids until an end-of-turn token, max_tokens, a full context, or
 * *cancel becoming nonzero. Text goes to sink split into reasoning and answer (start_in_think:
 * the prompt ended inside <think>). Returns 0 or a negative status (message in err). */
int gen_run(whale_engine *e, const whale_model *m, const gen_opts *o, const int32_t *ids, size_t n, int start_in_think,
            volatile sig_atomic_t *cancel, whale_text_sink sink, void *ctx, gen_stats *st, whale_err *err);
void gen_stats_free(gen_stats *st);

#endif
