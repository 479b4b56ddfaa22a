/* cmd_train.c — `whale train`: pretraining and fine-tuning (src/train). Dense Qwen2-shape
 * models for now; the DeepSeek shapes (MLA + MoE + MTP) come with the DeepSeek training path. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "formats/json_file.h"
#include "train/ops.h"
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
            "                      qwen2:small (~50M), deepseek2:tiny (~10M: MLA + 16 routed experts, top-2,\n"
            "                      and a shared expert), deepseek2:small (~50M); qwen2:test and\n"
            "                      deepseek2:test (~0.1M, for tests)\n"
            "  --from CKPT         continue from a checkpoint directory written by whale train\n"
            "  --tokenizer FILE    tokenizer.json (its vocabulary sizes the model; copied into checkpoints);\n"
            "                      default: the one DIR/manifest.json names\n"
            "  --steps N           optimizer steps\n"
            "  --batch B           sequences per micro-batch (default 8)\n"
            "  --ctx T             tokens per sequence (default 128)\n"
            "  --precision P       matrix products in bf16 (operands rounded, F32 sums and master weights)\n"
            "                      or f32; default bf16 when the CPU has AVX512_BF16, else f32\n"
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
            "  --bias-update G     MoE: the routers' selection bias moves by G per step toward even expert\n"
            "                      loads (auxiliary-loss-free balancing; default 0.001; 0: off)\n"
            "  --resume            continue from RUN_DIR's newest checkpoint: same parameters and loss\n"
            "                      curve as a run that was never stopped\n");
}

typedef struct shape {
    const char *name;
    int deepseek;
    tr_dense_cfg c;
    tr_ds_cfg ds;
} shape;

/* DeepSeek shapes: MLA without the q low-rank path (as V2-Lite), DeepSeekMoE with V3's routing
 * (sigmoid affinities, 4 groups, the best 2 kept, normalized gates scaled by 2.5), one shared
 * expert, the first layer dense. */
#define DS(L_, d_, H_, kvl, nope_, rope_, v_, ff, E, K, mff)                                                     \
    {.n_layer = L_, .d = d_, .n_head = H_, .kv_lora = kvl, .nope = nope_, .rope = rope_, .vdim = v_, .d_ff = ff, \
     .moe_ff = mff, .n_expert = E, .n_used = K, .n_shared = 1, .n_group = 4, .topk_group = 2, .first_dense = 1,  \
     .route_scale = 2.5f, .norm_topk = 1, .sigmoid = 1, .eps = 1e-6f, .rope_theta = 10000.0f, .balance_alpha = 1e-4f}
static const shape shapes[] = {
    {"qwen2:test", 0, {.n_layer = 2, .d = 64, .n_head = 4, .n_kv = 2, .head_dim = 16, .d_ff = 160}, {0}},
    {"qwen2:tiny", 0, {.n_layer = 14, .d = 256, .n_head = 4, .n_kv = 2, .head_dim = 64, .d_ff = 704}, {0}},
    {"qwen2:small", 0, {.n_layer = 16, .d = 512, .n_head = 8, .n_kv = 4, .head_dim = 64, .d_ff = 1408}, {0}},
    {"deepseek2:test", 1, {0}, DS(2, 64, 4, 32, 16, 8, 16, 160, 8, 2, 32)},
    {"deepseek2:tiny", 1, {0}, DS(8, 256, 4, 128, 32, 16, 32, 704, 16, 2, 96)},
    {"deepseek2:small", 1, {0}, DS(12, 512, 8, 256, 32, 16, 32, 1408, 16, 2, 128)},
};
#undef DS

static cJSON *read_json(const char *path) { return json_read_file(path, 16 << 20, NULL); }

/* A checkpoint's config.json: 0 Qwen2 (into c), 1 DeepSeek-V3 (into dc), negative otherwise. */
static int cfg_from_json(const char *dir, tr_dense_cfg *c, tr_ds_cfg *dc) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cJSON *j = read_json(p);
    if (!j) return -1;
#define I(k) (cJSON_IsNumber(cJSON_GetObjectItem(j, k)) ? (int)cJSON_GetObjectItem(j, k)->valuedouble : 0)
#define F(k, dflt) (cJSON_IsNumber(cJSON_GetObjectItem(j, k)) ? (float)cJSON_GetObjectItem(j, k)->valuedouble : (dflt))
    const cJSON *mt = cJSON_GetObjectItem(j, "model_type");
    int kind = !cJSON_IsString(mt) ? -2 : !strcmp(mt->valuestring, "qwen2") ? 0 : !strcmp(mt->valuestring, "deepseek_v3") ? 1 : -2;
    if (kind == 0) {
        c->n_layer = I("num_hidden_layers"), c->d = I("hidden_size"), c->n_head = I("num_attention_heads");
        c->n_kv = I("num_key_value_heads"), c->d_ff = I("intermediate_size"), c->vocab = I("vocab_size");
        c->head_dim = c->n_head ? c->d / c->n_head : 0;
        c->eps = F("rms_norm_eps", 1e-6f), c->rope_theta = F("rope_theta", 1e4f);
        c->tied = cJSON_IsTrue(cJSON_GetObjectItem(j, "tie_word_embeddings"));
        c->qkv_bias = 1;
    } else if (kind == 1) {
        const cJSON *sf = cJSON_GetObjectItem(j, "scoring_func");
        *dc = (tr_ds_cfg){.n_layer = I("num_hidden_layers"), .d = I("hidden_size"), .n_head = I("num_attention_heads"),
                          .vocab = I("vocab_size"), .q_lora = I("q_lora_rank"), .kv_lora = I("kv_lora_rank"),
                          .nope = I("qk_nope_head_dim"), .rope = I("qk_rope_head_dim"), .vdim = I("v_head_dim"),
                          .d_ff = I("intermediate_size"), .moe_ff = I("moe_intermediate_size"), .n_expert = I("n_routed_experts"),
                          .n_used = I("num_experts_per_tok"), .n_shared = I("n_shared_experts"), .n_group = I("n_group"),
                          .topk_group = I("topk_group"), .first_dense = I("first_k_dense_replace"),
                          .route_scale = F("routed_scaling_factor", 1.0f),
                          .norm_topk = cJSON_IsTrue(cJSON_GetObjectItem(j, "norm_topk_prob")),
                          .sigmoid = !cJSON_IsString(sf) || !strcmp(sf->valuestring, "sigmoid"), .eps = F("rms_norm_eps", 1e-6f),
                          .rope_theta = F("rope_theta", 1e4f), .balance_alpha = 1e-4f};
    }
#undef I
#undef F
    cJSON_Delete(j);
    return kind;
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
    char mfu[32] = "";
    if (s->mfu > 0) snprintf(mfu, sizeof mfu, "  MFU %.0f%%", 100 * s->mfu);
    fprintf(stderr, "%sstep %ld/%ld  loss %.4f%s  lr %.2e  %.0f tok/s%s  ETA %.0fs%s", u->tty ? "\r\033[K" : "", s->step,
            s->steps, s->loss, val, s->lr, s->tokens_per_s, mfu, eta,
            u->tty && s->val_loss < 0 && s->step < s->steps ? "" : "\n");
}

int cmd_train(int argc, char **argv) {
    tr_opts o;
    tr_opts_default(&o);
    const char *init = NULL, *from = NULL, *sched = "cosine";
    int precision = tr_precision_default();
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
        else if (ARG("--bias-update")) o.bias_gamma = (float)atof(v);
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (ARG("--precision")) {
            if ((precision = tr_precision_parse(v)) < 0) {
                fprintf(stderr, "whale train: --precision is f32 or bf16, not '%s'\n", v);
                return 2;
            }
        }
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
        const cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "settings"), "tokenizer"); /* whale data prepare's */
        if (!t) t = cJSON_GetObjectItem(j, "tokenizer");
        const cJSON *p = cJSON_IsObject(t) ? cJSON_GetObjectItem(t, "path") : t;
        if (cJSON_IsString(p)) snprintf(tok, sizeof tok, "%s", p->valuestring), o.tokenizer = tok;
        cJSON_Delete(j);
    }
    tr_dense_cfg c = {0};
    tr_ds_cfg dc = {0};
    int deepseek = 0, vocab = 0;
    if (init) {
        const shape *s = NULL;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            if (!strcmp(shapes[i].name, init)) s = &shapes[i];
        if (!s) {
            fprintf(stderr, "whale train: unknown shape '%s' (qwen2:test, qwen2:tiny, qwen2:small, deepseek2:test, "
                            "deepseek2:tiny, deepseek2:small)\n", init);
            return 2;
        }
        c = s->c, dc = s->ds, deepseek = s->deepseek;
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
        c.vocab = dc.vocab = vocab = (int)mi.n_vocab;
        whale_model_close(vm);
    } else {
        int k = cfg_from_json(from, &c, &dc);
        if (k < 0) {
            fprintf(stderr, "whale train: %s: not a checkpoint written by whale train (config.json of a Qwen2 or "
                            "DeepSeek-V3 model)\n", from);
            return 1;
        }
        deepseek = k == 1;
        vocab = deepseek ? dc.vocab : c.vocab;
    }
    tr_dense m;
    tr_ds ds;
    tr_model model;
    whale_err err = {0};
    if (deepseek ? tr_ds_init(&ds, &dc, &err) : tr_dense_init(&m, &c, &err)) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        return 1;
    }
    if (deepseek) tr_ds_model(&ds, &model);
    else tr_dense_model(&m, &model);
    char p[4300];
    snprintf(p, sizeof p, "%s/model.safetensors", from ? from : "");
    int rc = 0;
    if (from && (rc = tr_params_load(model.P, p, &err))) fprintf(stderr, "whale train: %s\n", err.msg);
    if (!from) tr_init_weights(&model, o.seed);
    /* what it is and what it costs, before it starts */
    int d = deepseek ? dc.d : c.d, L = deepseek ? dc.n_layer : c.n_layer, H = deepseek ? dc.n_head : c.n_head;
    int hd = deepseek ? dc.nope + dc.rope : c.head_dim;
    size_t emb = (size_t)vocab * d * 2, n = model.P->n;
    double active = (double)(n - emb);
    if (deepseek && dc.n_expert) /* per token, only n_used of the routed experts run */
        active -= (double)(L - dc.first_dense) * (dc.n_expert - dc.n_used) * 3.0 * dc.d * dc.moe_ff;
    double flops = 6.0 * (active + (double)vocab * d) + 6.0 * L * o.ctx * H * hd;
    double per_layer = deepseek ? (double)o.ctx * (d * 5 + H * hd * 3 + dc.kv_lora * 3 + H * (dc.nope + dc.vdim) +
                                                   H * dc.vdim * 2 + dc.d_ff * 3 + dc.n_used * (3 * dc.moe_ff + d + 2) +
                                                   dc.n_expert * 2)
                                : (double)o.ctx * (d * 4 + H * hd * 2 + c.n_kv * hd * 2 + c.d_ff * 3);
    double act = (double)L * (per_layer + (double)H * o.ctx * o.ctx) * 4.0 + (double)o.ctx * vocab * 4.0;
    double need = (double)n * 16 + act;
    double avail = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    char b1[32], b2[32];
    if (!rc) {
        fprintf(stderr, "whale train: %s, %.2fM parameters (%.2fM without the embedding and head%s), vocabulary %d\n"
                        "whale train: %.1f MFLOP per token (forward + backward), about %s of memory (%s available)\n",
                init ? init : from, n / 1e6, (n - emb) / 1e6, deepseek ? "; fewer active per token" : "", vocab,
                flops / 1e6, cli_bytes(need, b1, sizeof b1), cli_bytes(avail, b2, sizeof b2));
        tr_set_precision(precision);
        o.flops_per_token = flops;
        fprintf(stderr, "whale train: %s matrix products, peak %.1f GFLOP/s (this machine's 256^3 product; MFU against it)\n",
                tr_precision_name(precision), tr_peak_flops() / 1e9);
        if (need > avail) {
            fprintf(stderr, "whale train: it will not fit: lower --batch/--ctx or choose a smaller shape\n");
            rc = 1;
        }
    }
    ui u = {.tty = isatty(2)};
    o.on_step = on_step, o.on_note = on_note, o.hook_ctx = &u;
    if (!rc && (rc = tr_train(&model, &o, &err))) fprintf(stderr, "whale train: %s\n", err.msg);
    if (!rc) printf("%s/step-%06ld\n", o.out_dir, o.steps);
    if (deepseek) tr_ds_free(&ds);
    else tr_dense_free(&m);
    return rc ? 1 : 0;
}
