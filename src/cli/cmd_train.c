/* cmd_train.c — `whale train`: pretraining and fine-tuning (src/train). Dense Qwen2-shape
 * models for now; the DeepSeek shapes (MLA + MoE + MTP) come with the DeepSeek training path. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/readall.h"
#include "cli/cli.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: whale train (--init SHAPE | --from CKPT) --data DIR --steps N -o RUN_DIR [options]\n\n"
            "Trains a model on token shards (`whale data prepare`: DIR/train-*.bin, DIR/val-*.bin) with AdamW.\n"
            "Writes RUN_DIR/metrics.jsonl (one JSON object per step: step, loss, lr, grad_norm,\n"
            "tokens_per_s, val_loss when evaluated) and checkpoints RUN_DIR/step-NNNNNN/ (Hugging Face\n"
            "layout: config.json, model.safetensors, tokenizer.json; plus the optimizer state), one always\n"
            "at the end; `whale run -m RUN_DIR/step-NNNNNN` loads one.\n\n"
            "  --init SHAPE        a new model: qwen2:tiny (~10M parameters without the embedding and head),\n"
            "                      qwen2:small (~50M), qwen2:test (~0.1M, for tests)\n"
            "  --from CKPT         continue from a checkpoint directory written by whale train\n"
            "  --tokenizer FILE    tokenizer.json (its vocabulary sizes the model; copied into checkpoints);\n"
            "                      default: the one DIR/manifest.json names\n"
            "  --steps N           optimizer steps\n"
            "  --batch B           sequences per micro-batch (default 8)\n"
            "  --ctx T             tokens per sequence (default 128)\n"
            "  --accum A           micro-batches per step (default 1)\n"
            "  --lr LR             peak learning rate (default 3e-3)\n"
            "  --min-lr-frac F     the schedule ends at F x LR (default 0.1)\n"
            "  --warmup N          warmup steps (default and at most: 10%% of --steps)\n"
            "  --schedule S        cosine (default) or wsd (warmup, stable, linear decay over the last 20%%)\n"
            "  --weight-decay W    AdamW's decoupled weight decay on matrices (default 0.1)\n"
            "  --clip C            clip the gradients' global norm to C (default 1.0; 0: off)\n"
            "  --eval-every N      validation loss every N steps (default: at the end)\n"
            "  --save-every N      a checkpoint every N steps (default: at the end)\n"
            "  --seed S            initial weights and batch order (default 1)\n"
            "  --resume            continue from RUN_DIR's newest checkpoint: same parameters and loss\n"
            "                      curve as a run that was never stopped\n");
}

typedef struct shape {
    const char *name;
    tr_dense_cfg c;
} shape;

static const shape shapes[] = {
    {"qwen2:test", {.n_layer = 2, .d = 64, .n_head = 4, .n_kv = 2, .head_dim = 16, .d_ff = 160}},
    {"qwen2:tiny", {.n_layer = 14, .d = 256, .n_head = 4, .n_kv = 2, .head_dim = 64, .d_ff = 704}},
    {"qwen2:small", {.n_layer = 16, .d = 512, .n_head = 8, .n_kv = 4, .head_dim = 64, .d_ff = 1408}},
};

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = 0;
    int big = 0;
    char *t = read_all(f, 16 << 20, &n, &big);
    fclose(f);
    cJSON *j = t ? cJSON_ParseWithLength(t, n) : NULL;
    free(t);
    return j;
}

static int cfg_from_json(const char *dir, tr_dense_cfg *c) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cJSON *j = read_json(p);
    if (!j) return -1;
#define I(k) (cJSON_IsNumber(cJSON_GetObjectItem(j, k)) ? (int)cJSON_GetObjectItem(j, k)->valuedouble : 0)
    c->n_layer = I("num_hidden_layers"), c->d = I("hidden_size"), c->n_head = I("num_attention_heads");
    c->n_kv = I("num_key_value_heads"), c->d_ff = I("intermediate_size"), c->vocab = I("vocab_size");
#undef I
    c->head_dim = c->n_head ? c->d / c->n_head : 0;
    c->eps = cJSON_GetObjectItem(j, "rms_norm_eps") ? (float)cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble : 1e-6f;
    c->rope_theta = cJSON_GetObjectItem(j, "rope_theta") ? (float)cJSON_GetObjectItem(j, "rope_theta")->valuedouble : 1e4f;
    c->tied = cJSON_IsTrue(cJSON_GetObjectItem(j, "tie_word_embeddings"));
    c->qkv_bias = 1;
    const cJSON *mt = cJSON_GetObjectItem(j, "model_type");
    int ok = cJSON_IsString(mt) && !strcmp(mt->valuestring, "qwen2");
    cJSON_Delete(j);
    return ok ? 0 : -2;
}

typedef struct ui {
    double t0;
    int tty;
} ui;

static void on_note(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "whale train: %s\n", msg);
}

static void on_step(void *ctx, const tr_step_info *s) {
    ui *u = ctx;
    double eta = s->elapsed_s / (double)s->step * (double)(s->steps - s->step);
    char val[32] = "";
    if (s->val_loss >= 0) snprintf(val, sizeof val, " val %.4f", s->val_loss);
    fprintf(stderr, "%sstep %ld/%ld  loss %.4f%s  lr %.2e  %.0f tok/s  ETA %.0fs%s", u->tty ? "\r\033[K" : "", s->step,
            s->steps, s->loss, val, s->lr, s->tokens_per_s, eta, u->tty && s->val_loss < 0 && s->step < s->steps ? "" : "\n");
}

int cmd_train(int argc, char **argv) {
    tr_opts o;
    tr_opts_default(&o);
    const char *init = NULL, *from = NULL, *sched = "cosine";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
#define ARG(flag) (!strcmp(a, flag) && v && ++i)
        if (ARG("--init")) init = v;
        else if (ARG("--from")) from = v;
        else if (ARG("--data")) o.data_dir = v;
        else if (ARG("-o") || (!strcmp(a, "--out") && v && ++i)) o.out_dir = v;
        else if (ARG("--tokenizer")) o.tokenizer = v;
        else if (ARG("--steps")) o.steps = atol(v);
        else if (ARG("--batch")) o.batch = atoi(v);
        else if (ARG("--ctx")) o.ctx = atoi(v);
        else if (ARG("--accum")) o.accum = atoi(v);
        else if (ARG("--lr")) o.adam.lr = (float)atof(v);
        else if (ARG("--min-lr-frac")) o.min_lr_frac = (float)atof(v);
        else if (ARG("--warmup")) o.warmup = atol(v);
        else if (ARG("--schedule")) sched = v;
        else if (ARG("--weight-decay")) o.adam.weight_decay = (float)atof(v);
        else if (ARG("--clip")) o.clip = (float)atof(v);
        else if (ARG("--eval-every")) o.eval_every = atol(v);
        else if (ARG("--save-every")) o.save_every = atol(v);
        else if (ARG("--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else {
            fprintf(stderr, "whale train: bad option '%s' (see --help)\n", a);
            return 2;
        }
#undef ARG
    }
    if (!!init == !!from || !o.data_dir || !o.out_dir || o.steps < 1) {
        fprintf(stderr, "whale train: needs one of --init SHAPE or --from CKPT, --data DIR, --steps N and -o RUN_DIR "
                        "(see --help)\n");
        return 2;
    }
    if (!strcmp(sched, "wsd")) o.schedule = TR_LR_WSD;
    else if (strcmp(sched, "cosine")) {
        fprintf(stderr, "whale train: --schedule is cosine or wsd\n");
        return 2;
    }
    char tok[4200];
    if (!o.tokenizer) { /* the shards' tokenizer */
        snprintf(tok, sizeof tok, "%s/manifest.json", o.data_dir);
        cJSON *j = read_json(tok);
        const cJSON *t = cJSON_GetObjectItem(j, "tokenizer"), *p = cJSON_IsObject(t) ? cJSON_GetObjectItem(t, "path") : t;
        if (cJSON_IsString(p)) snprintf(tok, sizeof tok, "%s", p->valuestring), o.tokenizer = tok;
        cJSON_Delete(j);
    }
    tr_dense_cfg c = {0};
    if (init) {
        const shape *s = NULL;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            if (!strcmp(shapes[i].name, init)) s = &shapes[i];
        if (!s) {
            fprintf(stderr, "whale train: unknown shape '%s'%s (qwen2:test, qwen2:tiny, qwen2:small)\n", init,
                    strncmp(init, "deepseek2:", 10) ? "" : ": the DeepSeek shapes are not built yet");
            return 2;
        }
        c = s->c;
        c.eps = 1e-6f, c.rope_theta = 10000.0f, c.qkv_bias = 1, c.tied = 0;
        whale_model *vm = NULL;
        whale_err err = {0};
        whale_model_params mp = {.vocab_only = 1};
        if (!o.tokenizer || whale_model_open(&vm, o.tokenizer, &mp, &err)) {
            fprintf(stderr, "whale train: %s\n", o.tokenizer ? err.msg : "no tokenizer: pass --tokenizer FILE");
            return 1;
        }
        whale_model_info mi;
        whale_model_info_get(vm, &mi);
        c.vocab = (int)mi.n_vocab;
        whale_model_close(vm);
    } else if (cfg_from_json(from, &c)) {
        fprintf(stderr, "whale train: %s: not a Qwen2 checkpoint written by whale train (config.json)\n", from);
        return 1;
    }
    tr_dense m;
    whale_err err = {0};
    if (tr_dense_init(&m, &c, &err)) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        return 1;
    }
    char p[4300];
    snprintf(p, sizeof p, "%s/model.safetensors", from ? from : "");
    if (from && tr_params_load(&m.P, p, &err)) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        tr_dense_free(&m);
        return 1;
    }
    tr_model model;
    tr_dense_model(&m, &model);
    if (!from) tr_init_weights(&model, o.seed);
    /* what it is and what it costs, before it starts */
    size_t emb = (size_t)c.vocab * c.d * (c.tied ? 1 : 2);
    double flops = 6.0 * (double)(m.P.n - emb + (size_t)c.vocab * c.d) + 6.0 * c.n_layer * o.ctx * c.n_head * c.head_dim;
    double act = (double)c.n_layer * ((double)o.ctx * (c.d * 4 + c.n_head * c.head_dim * 2 + c.n_kv * c.head_dim * 2 + c.d_ff * 3) +
                                      (double)c.n_head * o.ctx * o.ctx) * 4.0 + (double)o.ctx * c.vocab * 4.0;
    double need = (double)m.P.n * 16 + act;
    double avail = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    char b1[32], b2[32];
    fprintf(stderr, "whale train: %s, %.2fM parameters (%.2fM without the embedding and head), vocabulary %d\n"
                    "whale train: %.1f MFLOP per token (forward + backward), about %s of memory (%s available)\n",
            init ? init : from, m.P.n / 1e6, (m.P.n - emb) / 1e6, c.vocab, flops / 1e6, cli_bytes(need, b1, sizeof b1),
            cli_bytes(avail, b2, sizeof b2));
    if (need > avail) {
        fprintf(stderr, "whale train: it will not fit: lower --batch/--ctx or choose a smaller shape\n");
        tr_dense_free(&m);
        return 1;
    }
    ui u = {.tty = isatty(2)};
    o.on_step = on_step, o.on_note = on_note, o.hook_ctx = &u;
    int rc = tr_train(&model, &o, &err);
    if (rc) fprintf(stderr, "whale train: %s\n", err.msg);
    else printf("%s/step-%06ld\n", o.out_dir, o.steps);
    tr_dense_free(&m);
    return rc ? 1 : 0;
}
