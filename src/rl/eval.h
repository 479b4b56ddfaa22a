/* eval.h — measuring a model on a task through the engine (whale.h): prompts, batched
 * sampling, verification and the metrics `whale eval` prints.
 *
 * Owns the prompt formats (the model's chat format, R1-Zero's plain-text template) and one
 * evaluation's samples and metrics. Does not own problems (task.h), judging (verify.h) or
 * printing (src/cli/cmd_eval.c). Reaches the model only through include/whale.h.
 *
 * Metrics over N problems x K samples:
 *   pass@1   mean over all samples of "correct" (the expected accuracy of one sample)
 *   maj@K    share of problems whose most frequent normalized answer is correct (samples
 *            without a valid answer do not vote; a tie goes to the answer seen first; a problem
 *            where nothing voted counts as wrong)
 *   format   share of samples that kept the think-then-answer format (verify.h)
 *   lengths  mean tokens of reasoning (up to and including </think>) and of the rest of the
 *            text (the end-of-turn token not counted), per sample
 *   speed    generated tokens per second of wall time, all samples together */
#ifndef WHALE_RL_EVAL_H
#define WHALE_RL_EVAL_H

#include <stdint.h>

#include "rl/task.h"
#include "rl/verify.h"
#include "whale.h"

/* Problems x samples in one evaluation: each holds its reply's ids and text until the end. */
#define RL_EVAL_MAX_SAMPLES 100000

enum rl_prompt_mode {
    RL_PROMPT_AUTO = 0, /* chat when the model has a chat format, else r1zero */
    RL_PROMPT_CHAT,     /* the model's chat format, one user message: problem + instruction */
    RL_PROMPT_R1ZERO,   /* DeepSeek-R1-Zero's plain-text template, ending in "Assistant: <think>" */
    RL_PROMPT_PLAIN,    /* the model's chat format, the problem alone, as a user would ask it; a
                           reply not inside <think> is read as reasoning up to its last paragraph,
                           which is the answer (rl_reformat_plain: R1's cold-start post-processing) */
};

/* "chat", "r1zero", "plain", "auto"; mode for a name (-1: unknown). */
const char *rl_prompt_mode_name(int mode);
int rl_prompt_mode_parse(const char *name);
/* The mode AUTO resolves to for m. */
int rl_prompt_mode_resolve(const whale_model *m, int mode);

/* The prompt for a problem as token ids appended to out, and whether it ends inside <think>
 * (*start_in_think: R1-Zero's template, or a chat format that forces reasoning). Returns 0, or
 * WHALE_E_UNSUPPORTED (chat mode on a model without a chat format; no tokenizer) with a message.
 * A GRPO loop builds its rollouts' prompts with this too. */
/* The user message for a problem in a chat mode: the problem and the instruction to think, then
 * answer (chat), or the problem alone (plain); malloc'd, NULL when out of memory. Distillation
 * writes its examples with it. */
char *rl_prompt_user_text(const char *problem, int mode);

int rl_prompt_build(const whale_model *m, int mode, const char *problem, whale_ids *out,
                    int *start_in_think, whale_err *err);

typedef struct rl_eval_params {
    int split;          /* enum rl_split */
    int64_t n;          /* problems (a file task: at most its lines; <= 0: 50) */
    int samples;        /* K per problem (<= 0: 1) */
    float temperature;  /* < 0: 0 when samples is 1, else 0.6 */
    float top_p;        /* 0: 0.95 when sampling, else off */
    int64_t max_tokens; /* per reply (<= 0: 512) */
    uint64_t seed;      /* sampling: sample s of problem i uses a seed derived from (seed, i, s) */
    uint64_t task_seed; /* which problems (the generators' seed) */
    int mode;           /* enum rl_prompt_mode */
    int n_parallel;     /* sequences decoding at once (<= 0: 4); threads are the model's */
    int64_t first;      /* the first problem's index in the split (a file task wraps around) */
    int keep_ids; /* keep each reply's generated ids in its sample (a GRPO loop trains on them) */
} rl_eval_params;

void rl_eval_params_default(rl_eval_params *p);

typedef struct rl_sample {
    rl_verdict v;
    int64_t n_gen;   /* tokens generated (with the end-of-turn token) */
    int64_t n_text;  /* of which text (without it) */
    int64_t n_think; /* of which reasoning (through </think>) */
    char *text;      /* the reply, malloc'd */
    size_t len;
    const char *finish; /* "stop", "length", ... (static) */
    whale_ids ids;      /* with keep_ids: the generated ids (with the end-of-turn token) */
} rl_sample;

typedef struct rl_eval_result {
    int64_t n;   /* problems evaluated */
    int samples; /* K */
    int mode;    /* the resolved prompt mode */
    float temperature;
    double pass1, maj, format_rate, answered_rate;
    double mean_think, mean_answer, mean_gen; /* tokens per sample */
    double tokens_per_s, seconds;
    int64_t n_prompt_tokens, n_gen_tokens;
    rl_item *items;   /* (n) */
    rl_sample *s;     /* (n * samples): problem i's sample k at i * samples + k */
    int *maj_correct; /* (n) */
} rl_eval_result;

/* Called from the evaluating thread as samples end: done of total. */
typedef void (*rl_eval_progress)(void *ctx, int64_t done, int64_t total);

/* Evaluate model m on task t: build every prompt, start an engine with p->n_parallel sequences,
 * submit all samples (so they batch; as many as the engine's queue takes, the rest as jobs
 * end), verify each reply and compute the metrics into *out (free with rl_eval_result_free,
 * also after a failure). Returns 0, or a negative status with a message: the task's, the
 * prompt's, the engine's, or WHALE_E_ARG for more than RL_EVAL_MAX_SAMPLES samples. */
int rl_eval_run(whale_model *m, const rl_task *t, const rl_eval_params *p,
                rl_eval_progress progress, void *ctx, rl_eval_result *out, whale_err *err);
void rl_eval_result_free(rl_eval_result *r);

#endif
