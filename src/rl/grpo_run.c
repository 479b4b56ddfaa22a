/* grpo_run.c — the `whale grpo` loop (see grpo_run.h). */
#include "rl/grpo_run.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/err.h"
#include "rl/eval.h"

void rl_grpo_opts_default(rl_grpo_opts *o) {
    memset(o, 0, sizeof *o);
    o->prompts = 8, o->group = 8, o->steps = 100, o->mu = 1;
    o->temperature = 1.0f, o->top_p = 1.0f, o->max_tokens = 256, o->format_weight = 0.2f;
    o->g = (grpo_cfg){.variant = GRPO_STD, .clip_eps = 0.2f, .beta = 0.04f, .adv_eps = 1e-4f};
    o->adam =
        (tr_adamw){.lr = 1e-5f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.0f};
    o->clip = 1.0f, o->min_lr_frac = 1.0f, o->warmup = -1;
    o->eval_every = 10, o->eval_n = 50, o->n_parallel = 8, o->seed = 1;
    o->prompt_mode = RL_PROMPT_AUTO;
}

#define note(o, ...) tr_notef((o)->on_note, (o)->hook_ctx, __VA_ARGS__)

/* ---- the policy the engine samples from ---------------------------------------------------- */

/* Write the current weights (with LoRA: the adapters) as DIR = out/policy and open them for the
 * engine: the directory itself, or the base model with the adapters applied. */
static int open_policy(const tr_model *m, const rl_grpo_opts *o, whale_model **out,
                       whale_err *err) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/policy", o->out_dir);
    int rc = tr_save_hf(m, dir, m->lora ? NULL : o->tokenizer, err);
    if (!rc) rc = tr_commit_dir(dir, err);
    if (rc) return rc;
    if ((rc = whale_model_open(out, m->lora ? m->base : dir, NULL, err))) return rc;
    if (m->lora && (rc = whale_model_lora(*out, dir, err))) {
        whale_model_close(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- one group's rows for the trainer ------------------------------------------------------ */

/* The G replies to one prompt as trainer rows of T positions: ids = prompt + reply (the last
 * token dropped), targets = the next token on the reply's positions, -1 elsewhere. */
typedef struct rows {
    int T;
    int32_t *ids, *tg;
    uint8_t *mask;
    float *old, *ref, *cur, *dJ;
} rows;

static void rows_free(rows *r) {
    free(r->ids), free(r->tg), free(r->mask), free(r->old), free(r->ref), free(r->cur), free(r->dJ);
    memset(r, 0, sizeof *r);
}

static int rows_make(rows *r, const whale_ids *prompt, const rl_sample *s, int G, whale_err *err) {
    memset(r, 0, sizeof *r);
    int64_t longest = 0;
    for (int k = 0; k < G; k++)
        if ((int64_t)(prompt->n + s[k].ids.n) - 1 > longest)
            longest = (int64_t)(prompt->n + s[k].ids.n) - 1;
    if (longest < 1) longest = 1;
    r->T = (int)longest;
    size_t n = (size_t)G * (size_t)r->T;
    r->ids = calloc(n, sizeof *r->ids), r->tg = malloc(n * sizeof *r->tg), r->mask = calloc(n, 1);
    r->old = calloc(n, sizeof(float)), r->ref = calloc(n, sizeof(float)),
    r->cur = calloc(n, sizeof(float));
    r->dJ = calloc(n, sizeof(float));
    if (!r->ids || !r->tg || !r->mask || !r->old || !r->ref || !r->cur || !r->dJ)
        return err_set(err, WHALE_E_NOMEM, "out of memory for %d replies of %d tokens", G, r->T);
    for (int k = 0; k < G; k++) {
        int32_t *id = r->ids + (size_t)k * r->T, *tg = r->tg + (size_t)k * r->T;
        size_t np = prompt->n, ng = s[k].ids.n;
        for (int t = 0; t < r->T; t++) {
            size_t at = (size_t)t, nx = at + 1;
            id[t] = at < np ? prompt->v[at] : at - np < ng ? s[k].ids.v[at - np] : 0;
            tg[t] = nx >= np && nx - np < ng ? s[k].ids.v[nx - np] : -1;
            r->mask[(size_t)k * r->T + t] = tg[t] >= 0;
        }
    }
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------------ */

/* One metric as JSON: a number, or null when it is not finite (a diverged run's gradient norm
 * must not make the line unreadable). */
static void metric(FILE *f, const char *key, double v) {
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.6g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

static int append_metrics(const char *out_dir, const rl_grpo_info *s, whale_err *err) {
    char p[4200];
    snprintf(p, sizeof p, "%s/metrics.jsonl", out_dir);
    FILE *f = fopen(p, s->step == 1 ? "w" : "a");
    if (!f) return err_set(err, WHALE_E_IO, "%s: %m", p);
    fprintf(f, "{\"step\": %ld", s->step);
    const struct {
        const char *key;
        double v;
    } m[] = {{"reward", s->reward},
             {"accuracy", s->accuracy},
             {"format", s->format_rate},
             {"response_len", s->response_len},
             {"kl", s->kl},
             {"clip_frac", s->clip_frac},
             {"grad_norm", s->grad_norm},
             {"lr", s->lr},
             {"t_gen", s->t_gen},
             {"t_logp", s->t_logp},
             {"t_backward", s->t_backward},
             {"t_eval", s->t_eval},
             {"gen_tokens_per_s", s->gen_tokens_per_s}};
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) metric(f, m[k].key, m[k].v);
    if (s->heldout >= 0) metric(f, "heldout_accuracy", s->heldout);
    fprintf(f, "}\n");
    return fclose(f) ? err_set(err, WHALE_E_IO, "%s: %m", p) : 0;
}

/* Held-out accuracy of the opened policy: greedy, one sample per problem. */
static int heldout(whale_model *wm, const rl_grpo_opts *o, double *acc, whale_err *err) {
    rl_eval_params ep;
    rl_eval_params_default(&ep);
    ep.split = RL_SPLIT_TEST, ep.n = o->eval_n, ep.samples = 1, ep.temperature = 0;
    ep.max_tokens = o->max_tokens, ep.task_seed = o->task_seed, ep.mode = o->prompt_mode;
    ep.n_parallel = o->n_parallel;
    rl_eval_result r;
    int rc = rl_eval_run(wm, o->task, &ep, NULL, NULL, &r, err);
    if (!rc) *acc = r.pass1;
    rl_eval_result_free(&r);
    return rc;
}

/* --resume: the newest checkpoint's weights (or adapters) and AdamW moments into m and mom, the
 * step to go on from into *first, the held-out accuracy at step 1 from metrics.jsonl (whose
 * later lines are dropped) into *before. No checkpoint: a fresh start. */
static int resume(tr_model *m, const rl_grpo_opts *o, float *mom, size_t np, long *first,
                  double *before, whale_err *err) {
    char dir[4200], p[4300], line[4096];
    if (tr_checkpoint_latest(o->out_dir, dir, sizeof dir) < 0) return 0;
    tr_ckpt_state s = {.m = mom, .v = mom + np};
    int rc = tr_checkpoint_load(m, &s, dir, err);
    if (rc) return rc;
    *first = s.step + 1;
    snprintf(p, sizeof p, "%s/metrics.jsonl", o->out_dir);
    tr_metrics_trim(p, s.step);
    FILE *f = fopen(p, "r");
    while (f && fgets(line, sizeof line, f)) {
        const char *h = strstr(line, "\"heldout_accuracy\": ");
        if (!strncmp(line, "{\"step\": 1,", 11) && h) *before = atof(h + 20);
    }
    if (f) fclose(f);
    note(o, "resuming from %s (step %ld)", dir, s.step);
    return 0;
}

/* One trainer pass over a group's rows: forward only (scale 0, logp out) or forward and backward
 * with the per-token weights w. Returns 0 or the step's error (its loss may be any sign, so the
 * code, not the value, tells). */
static int pass(tr_model *m, const rows *r, const float *w, float *logp, int G, float scale,
                whale_err *err) {
    err->code = 0;
    m->step(m->impl, r->ids, r->tg, w, logp, G, r->T, scale, err);
    return err->code;
}

/* Swap the policy's weights with the reference's (full fine-tuning: a saved copy of the start;
 * LoRA: the adapters switched off). */
static void use_reference(tr_model *m, float *ref_w, float *spare, int on) {
    if (m->lora) {
        m->adapters(m->impl, !on);
        return;
    }
    size_t bytes = m->P->n * sizeof(float);
    if (on)
        memcpy(spare, m->P->w, bytes), memcpy(m->P->w, ref_w, bytes);
    else
        memcpy(m->P->w, spare, bytes);
}

int rl_grpo_run(tr_model *m, const rl_grpo_opts *o, whale_err *err) {
    const int P = o->prompts, G = o->group;
    if (P < 1 || G < 2 || o->steps < 1 || o->mu < 1 || !o->task || !o->out_dir)
        return err_set(
            err, WHALE_E_ARG,
            "grpo: needs a task, an output directory, steps >= 1, prompts >= 1, a group of "
            "at least 2 and mu >= 1");
    if (mkdir(o->out_dir, 0755) && errno != EEXIST)
        return err_set(err, WHALE_E_IO, "%s: %m", o->out_dir);
    size_t np = m->P->n;
    int full = !m->lora, rc = 0;
    float *mom = calloc(2 * np, sizeof(float)); /* AdamW's m and v */
    float *ref_w = full && o->g.beta > 0 ? malloc(np * sizeof(float)) : NULL;
    float *spare = full && o->g.beta > 0 ? malloc(np * sizeof(float)) : NULL;
    rows *R = calloc((size_t)P, sizeof *R);
    float *adv = calloc((size_t)P * G, sizeof(float)), *rew = calloc((size_t)G, sizeof(float));
    if (!mom || !R || !adv || !rew || (full && o->g.beta > 0 && (!ref_w || !spare))) {
        rc = err_set(err, WHALE_E_NOMEM,
                     "out of memory for the optimizer state and the reference weights");
        goto done;
    }
    if (ref_w) memcpy(ref_w, m->P->w, np * sizeof(float)); /* the start, also when resuming */
    double before = -1;
    long warmup = o->warmup >= 0 ? o->warmup : o->steps * o->mu / 10, updates = 0,
         total_updates = o->steps * o->mu, first = 1;
    if (o->resume && (rc = resume(m, o, mom, np, &first, &before, err))) goto done;
    char last[4200];
    long at = o->resume ? -1 : tr_checkpoint_latest(o->out_dir, last, sizeof last);
    if (at >= 0) { /* a new run over an old one's checkpoints would leave them for --resume to find */
        rc = err_set(err, WHALE_E_ARG, "%s already holds a run's checkpoints (%s): --resume to continue it, or another -o",
                     o->out_dir, last);
        goto done;
    }
    updates = (first - 1) * o->mu;
    for (long step = first; step <= o->steps && !rc; step++) {
        rl_grpo_info info = {.step = step, .steps = o->steps, .heldout = -1};
        double t0 = clock_now_s();
        whale_model *wm = NULL;
        if ((rc = open_policy(m, o, &wm, err))) break;
        int eval_now = o->eval_every > 0 && (step == 1 || step % o->eval_every == 0);
        if (eval_now && (rc = heldout(wm, o, &info.heldout, err))) {
            whale_model_close(wm);
            break;
        }
        if (step == 1 && eval_now) before = info.heldout;
        double t1 = clock_now_s();
        info.t_eval = t1 - t0;
        /* rollouts: P problems x G samples, one batch through the engine */
        rl_eval_params ep;
        rl_eval_params_default(&ep);
        ep.split = RL_SPLIT_TRAIN, ep.first = (step - 1) * P, ep.n = P, ep.samples = G;
        ep.temperature = o->temperature, ep.top_p = o->top_p, ep.max_tokens = o->max_tokens;
        ep.seed = o->seed * 1000003u + (uint64_t)step, ep.task_seed = o->task_seed,
        ep.mode = o->prompt_mode;
        ep.n_parallel = o->n_parallel, ep.keep_ids = 1;
        rl_eval_result ro = {0};
        whale_ids *prompts = calloc((size_t)P, sizeof *prompts);
        int in_think = 0;
        rc = prompts ? rl_eval_run(wm, o->task, &ep, NULL, NULL, &ro, err)
                     : err_set(err, WHALE_E_NOMEM, "out of memory");
        for (int i = 0; !rc && i < P; i++)
            rc = rl_prompt_build(wm, ro.mode, ro.items[i].prompt, &prompts[i], &in_think, err);
        whale_model_close(wm);
        double t2 = clock_now_s();
        info.t_gen = t2 - t1;
        info.gen_tokens_per_s = ro.tokens_per_s;
        /* rewards, advantages, rows, and the old and reference log-probabilities */
        int64_t n_s = (int64_t)P * G, correct = 0, fmt = 0, gen = 0;
        double rsum = 0;
        for (int i = 0; !rc && i < P; i++) {
            const rl_sample *s = &ro.s[(size_t)i * G];
            for (int k = 0; k < G; k++) {
                rew[k] = (float)s[k].v.correct + o->format_weight * (float)s[k].v.format_ok;
                rsum += rew[k], correct += s[k].v.correct, fmt += s[k].v.format_ok,
                    gen += s[k].n_gen;
            }
            if ((rc = grpo_advantages(adv + (size_t)i * G, rew, G, &o->g, err))) break;
            if ((rc = rows_make(&R[i], &prompts[i], s, G, err))) break;
            /* With one update and no KL the ratio is 1 on every token and dJ/dlogp_t is the
             * advantage (times the aggregation): no need to know logp first. Otherwise the old
             * policy's. */
            if (o->mu > 1 || o->g.beta > 0) rc = pass(m, &R[i], NULL, R[i].old, G, 0, err);
        }
        if (!rc && o->g.beta > 0) { /* the reference's, all groups under one swap of the weights */
            use_reference(m, ref_w, spare, 1);
            for (int i = 0; !rc && i < P; i++) rc = pass(m, &R[i], NULL, R[i].ref, G, 0, err);
            use_reference(m, ref_w, spare, 0);
        }
        if (!rc && ro.n > 0) info.sample = ro.s[0].text;
        info.reward = rsum / (double)n_s, info.accuracy = (double)correct / (double)n_s;
        info.format_rate = (double)fmt / (double)n_s, info.response_len = (double)gen / (double)n_s;
        double t3 = clock_now_s();
        info.t_logp = t3 - t2;
        /* mu updates on this batch */
        for (int it = 0; !rc && it < o->mu; it++) {
            memset(m->P->g, 0, np * sizeof(float));
            double kl = 0, clip = 0;
            int64_t ntok = 0;
            for (int i = 0; !rc && i < P; i++) {
                rows *r = &R[i];
                int moves = o->g.beta > 0; /* a group of equal rewards and no KL adds nothing */
                for (int k = 0; k < G; k++) moves |= adv[(size_t)i * G + k] != 0;
                if (!moves) continue;
                if (it > 0 && (rc = pass(m, r, NULL, r->cur, G, 0, err))) break;
                double J;
                grpo_stats st;
                grpo_cfg g = o->g;
                if (g.variant == GRPO_DR && g.max_len < 1) g.max_len = (int)o->max_tokens;
                if ((rc = grpo_objective(&J, r->dJ, &st, it ? r->cur : r->old, r->old, r->ref,
                                         r->mask, adv + (size_t)i * G, G, r->T, &g, err)))
                    break;
                for (size_t x = 0; x < (size_t)G * r->T; x++)
                    r->dJ[x] /= (float)P; /* the batch's J: the groups' mean */
                kl += st.kl_mean * (double)st.n_tokens, clip += st.clip_frac * (double)st.n_tokens,
                    ntok += st.n_tokens;
                rc = pass(m, r, r->dJ, NULL, G, 1, err);
            }
            if (rc) break;
            float *gb = m->P->g;
            size_t len = np;
            info.grad_norm = tr_clip_grad_norm(&gb, &len, 1, o->clip);
            float lr = tr_lr_at(updates, total_updates, warmup, o->adam.lr,
                                o->adam.lr * o->min_lr_frac, TR_LR_COSINE, 0);
            tr_adamw c = o->adam;
            c.lr = lr;
            updates++;
            for (int i = 0; i < m->P->n_t; i++) {
                tr_param *q = &m->P->t[i];
                if (!q->frozen)
                    tr_adamw_step(q->w, q->g, mom + q->off, mom + np + q->off, q->n, updates, &c,
                                  q->decay);
            }
            info.lr = lr;
            info.kl = ntok ? kl / (double)ntok : 0, info.clip_frac = ntok ? clip / (double)ntok : 0;
        }
        info.t_backward = clock_now_s() - t3;
        if (!rc) rc = append_metrics(o->out_dir, &info, err);
        if (!rc && o->on_step) o->on_step(o->hook_ctx, &info);
        for (int i = 0; i < P; i++) rows_free(&R[i]);
        for (int i = 0; prompts && i < P; i++) whale_ids_free(&prompts[i]);
        free(prompts);
        rl_eval_result_free(&ro);
        if (!rc && ((o->save_every > 0 && step % o->save_every == 0) || step == o->steps)) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/step-%06ld", o->out_dir, step);
            tr_ckpt_state cs = {.step = step, .m = mom, .v = mom + np};
            rc = tr_checkpoint_save(m, &cs, dir, m->lora ? NULL : o->tokenizer, err);
            if (!rc) note(o, "checkpoint %s", dir);
        }
    }
    if (!rc && o->eval_every > 0) { /* the end's held-out accuracy, beside the start's */
        whale_model *wm = NULL;
        double after = 0;
        if (!(rc = open_policy(m, o, &wm, err)) && !(rc = heldout(wm, o, &after, err))) {
            char p[4200];
            snprintf(p, sizeof p, "%s/summary.json", o->out_dir);
            FILE *f = fopen(p, "w");
            if (!f)
                rc = err_set(err, WHALE_E_IO, "%s: %m", p);
            else {
                fprintf(f,
                        "{\"steps\": %ld, \"heldout_n\": %lld, \"heldout_before\": %.6g, "
                        "\"heldout_after\": %.6g}\n",
                        o->steps, (long long)o->eval_n, before, after);
                if (fclose(f)) rc = err_set(err, WHALE_E_IO, "%s: %m", p);
            }
            note(o, "held-out accuracy: %.1f%% before, %.1f%% after %ld steps", 100 * before,
                 100 * after, o->steps);
        }
        whale_model_close(wm);
    }
done:
    free(mom), free(ref_w), free(spare), free(R), free(adv), free(rew);
    return rc;
}
