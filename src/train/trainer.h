/* trainer.h — the training loop: token shards in (whale data prepare's DIR/train-*.bin,
 * val-*.bin: uint32 ids), AdamW steps with a schedule, gradient accumulation and clipping,
 * validation, metrics.jsonl, checkpoints as Hugging Face directories written atomically, and
 * --resume that continues to the same parameters as an uninterrupted run. Dense models for now
 * (train/dense.h); the DeepSeek path plugs in beside it. */
#ifndef WHALE_TRAIN_TRAINER_H
#define WHALE_TRAIN_TRAINER_H

#include <stdint.h>

#include "base/err.h" /* WHALE_PRINTF */

#include "train/deepseek.h"
#include "train/dense.h"
#include "train/optim.h"
#include "train/sft.h"

typedef struct tr_step_info {
    long step, steps;
    double loss, val_loss; /* val_loss < 0: not evaluated at this step */
    float lr;
    double grad_norm, tokens_per_s, elapsed_s;
    double expert_load; /* largest load / mean load (MoE), 0 for dense models */
    double mfu;         /* flops_per_token x tokens/s / tr_peak_flops(); 0 when flops_per_token is 0 */
} tr_step_info;

typedef struct tr_opts {
    const char *data_dir, *out_dir;
    const tr_sft *sft;     /* chat examples (train/sft.h) instead of data_dir's shards; borrowed */
    const char *tokenizer; /* a tokenizer.json copied into every checkpoint (NULL: none) */
    long steps, warmup;    /* warmup < 0: 10% of steps, at most */
    int batch, ctx, accum; /* sequences per micro-batch, tokens per sequence, micro-batches per step */
    tr_adamw adam;
    float min_lr_frac, clip, wsd_decay;
    float bias_gamma; /* the selection bias' step per optimizer step (MoE; DeepSeek-V3: 0.001) */
    tr_lr_kind schedule;
    long eval_every, save_every; /* 0: only at the end */
    int eval_batches;
    uint64_t seed;
    int resume;
    struct tr_dist *dist; /* data parallel over ranks (train/dist.h); NULL: one process */
    double flops_per_token; /* model FLOPs per token, forward + backward, for MFU (0: none) */
    void (*on_step)(void *ctx, const tr_step_info *s);
    void (*on_note)(void *ctx, const char *msg);
    void *hook_ctx;
} tr_opts;

/* Default options (lr 3e-3 peak, betas 0.9/0.95, weight decay 0.1, clip 1.0, cosine to 10%). */
void tr_opts_default(tr_opts *o);

/* What the loop needs of a model: its parameter table, a training step over a batch (forward,
 * loss, backward adding into P->g; loss_scale 0: forward only; weights and logp as in
 * tr_dense_step: NULL for the mean cross-entropy, or per-token loss weights and log-probabilities
 * for a policy-gradient loop such as GRPO's), its config.json. */
typedef struct tr_model {
    tr_params *P;
    void *impl;
    int n_layer;
    double (*step)(void *impl, const int32_t *ids, const int32_t *targets, const float *weights, float *logp, int B, int T,
                   float loss_scale, whale_err *err);
    char *(*config_json)(const void *impl);
    /* MoE models: after each optimizer step, move the routers' selection biases by gamma from
     * the loads counted since the last call (auxiliary-loss-free balancing), reset the counts and
     * return the largest expert load over the mean, averaged over the MoE layers. NULL: dense. */
    double (*balance)(void *impl, float gamma);
    /* Models with multi-token prediction: the last step's MTP cross-entropy (metrics.jsonl's
     * mtp_loss). NULL: none. */
    double (*mtp_loss)(const void *impl);
    int64_t *load; /* MoE: the counts balance() reads, [n_load], summed over ranks before it */
    size_t n_load;
    /* LoRA (dense.h): only the adapters train, and checkpoints hold only them, in PEFT's layout
     * (adapter_config.json naming `base`, adapter_model.safetensors). NULL: the whole model. */
    const tr_lora *lora;
    void (*adapters)(void *impl, int on); /* LoRA: switch the adapters off (0) and on again (1) */
    const char *base; /* the model the adapters apply to (--from), for adapter_config.json */
} tr_model;

void tr_dense_model(tr_dense *d, tr_model *out);
void tr_ds_model(tr_ds *d, tr_model *out);

/* Random initial weights (normal, std 0.02; the projections into the residual stream scaled by
 * 1/sqrt(2 n_layer); norms 1, biases and frozen buffers 0) from seed. */
void tr_init_weights(tr_model *m, uint64_t seed);

/* LoRA's starting point, as PEFT draws it: each lora_A uniform in +-1/sqrt(its inputs)
 * (Kaiming-uniform with a = sqrt(5)) from seed, each lora_B zero, so the adapted model starts
 * as the base. Touches nothing else. */
void tr_init_adapters(tr_model *m, uint64_t seed);

/* Train m (initialized or loaded) per o. Returns 0, or a negative code with err set. */
int tr_train(tr_model *m, const tr_opts *o, whale_err *err);

/* Write m as a Hugging Face checkpoint directory (config.json, model.safetensors, and
 * tokenizer.json when tokenizer is given) into DIR.tmp, for tr_commit_dir. With LoRA: the
 * adapters as PEFT saves them (adapter_config.json, adapter_model.safetensors) instead of the
 * model. */
int tr_save_hf(const tr_model *m, const char *dir, const char *tokenizer, whale_err *err);
/* What resuming needs beside the weights: the step reached, the batch sampler's state and the
 * AdamW moments (n_params each, laid out as the parameter table). */
typedef struct tr_ckpt_state {
    long step;
    uint64_t rng;
    float *m, *v;
} tr_ckpt_state;

/* A checkpoint directory DIR: tr_save_hf's files plus optimizer.safetensors (the moments of the
 * tensors the checkpoint holds) and trainer_state.json, committed atomically. 0 or a code. */
int tr_checkpoint_save(const tr_model *m, const tr_ckpt_state *s, const char *dir, const char *tokenizer, whale_err *err);
/* The newest complete step-* directory under out into dir; its step, or -1 when there is none. */
long tr_checkpoint_latest(const char *out, char *dir, size_t cap);
/* Read a checkpoint back into m (the tensors it holds) and s (m and v allocated by the caller). */
int tr_checkpoint_load(tr_model *m, tr_ckpt_state *s, const char *dir, whale_err *err);

/* printf into on_note(ctx, message) when on_note is set: how loops report (600 bytes at most). */
void tr_notef(void (*on_note)(void *ctx, const char *msg), void *ctx, const char *fmt, ...) WHALE_PRINTF(3, 4);

/* Keep only the lines of a metrics.jsonl whose step is at most step (what a resumed run redoes). */
void tr_metrics_trim(const char *path, long step);

/* Move DIR.tmp (tr_save_hf's output, and whatever was added to it) into place as DIR, replacing
 * an older DIR. Returns 0 or WHALE_E_IO. */
int tr_commit_dir(const char *dir, whale_err *err);

#endif
