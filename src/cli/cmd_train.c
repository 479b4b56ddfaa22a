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
#include "train/load.h"
#include "train/dist.h"
#include "train/ops.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: whale train (--init SHAPE | --config config.json | --from MODEL) (--data DIR | --sft FILE.jsonl) --steps N -o RUN_DIR [options]\n"
            "       whale train plot RUN_DIR [-o DIR]\n\n"
            "Trains a model on token shards (`whale data prepare`: DIR/train-*.bin, DIR/val-*.bin) with AdamW.\n"
            "Writes RUN_DIR/metrics.jsonl (one JSON object per step: step, loss, lr, grad_norm,\n"
            "tokens_per_s, mfu, val_loss when evaluated; expert_load and mtp_loss for DeepSeek shapes) and\n"
            "checkpoints RUN_DIR/step-NNNNNN/ (Hugging Face layout: config.json, model.safetensors,\n"
            "tokenizer.json; plus the optimizer state), one always at the end; `whale run -m\n"
            "RUN_DIR/step-NNNNNN` loads one. docs/TRAIN.md explains it all.\n\n"
            "  --init SHAPE        a new model: qwen2:tiny (~10M parameters without the embedding and head),\n"
            "                      qwen2:small (~50M), deepseek2:tiny (~12M: MLA + 16 routed experts, top-2,\n"
            "                      a shared expert, one MTP module; ~3.3M active per token in the main\n"
            "                      model), deepseek2:small (~50M); qwen2:test and deepseek2:test (~0.1M,\n"
            "                      for tests)\n"
            "  --config FILE       a new model of a Hugging Face config.json's shape (Qwen2ForCausalLM,\n"
            "                      LlamaForCausalLM as Qwen2 with zero q/k/v biases, DeepseekV3ForCausalLM),\n"
            "                      initialized as --init does\n"
            "  --from MODEL        full fine-tuning of a model: a name or path Whale resolves (GGUF of a\n"
            "                      Qwen2 model, any type, dequantized to F32; a Hugging Face directory of a\n"
            "                      Qwen2 or DeepSeek-V3 model in F32/BF16/F16; a whale train checkpoint)\n"
            "  --lora-rank R       with --from (a dense model): train low-rank adapters (LoRA) on its\n"
            "                      projections instead of the whole model, which stays frozen; checkpoints\n"
            "                      then hold the adapters alone, as PEFT saves them (adapter_config.json,\n"
            "                      adapter_model.safetensors)\n"
            "  --lora-alpha A      the adapters' scale is A / R (default A = 2R)\n"
            "  --lora-targets L    which projections: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj\n"
            "                      (comma-separated) or all (the default)\n"
            "  --sft FILE.jsonl    fine-tune on conversations, one {\"messages\": [{\"role\", \"content\"}, ...]} per\n"
            "                      line, laid out in the model's chat format (ChatML for a `whale data\n"
            "                      tokenizer` vocabulary); the loss is on the assistant's tokens only; one\n"
            "                      conversation per row, padded; longer ones cut to --ctx (counted)\n"
            "  --val-fraction F    --sft: share of the conversations held out for val_loss (default 0.05)\n"
            "  --chat-format NAME  --sft: chatml, chatml-think or deepseek-r1 instead of the model's own\n"
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
            "  --threads N         threads for the matrix products and attention (default: one per CPU;\n"
            "                      under mpirun, the host's CPUs shared among its ranks)\n"
            "  --bias-update G     MoE: the routers' selection bias moves by G per step toward even expert\n"
            "                      loads (auxiliary-loss-free balancing; default 0.001; 0: off)\n"
            "  --recompute         activation recomputation: keep only each layer's input and run its\n"
            "                      forward again before its backward (less memory, ~1/3 more compute;\n"
            "                      same results)\n"
            "  --resume            continue from RUN_DIR's newest checkpoint: same parameters and loss\n"
            "                      curve as a run that was never stopped\n\n"
            "Data parallel: `mpirun -np N whale train ...` trains on N ranks (processes, on one host or\n"
            "many; needs a whale built with MPI): each step's global batch is B x T x A x N tokens, each\n"
            "rank draws its own micro-batches of it, gradients are summed in rank order, and rank 0 alone\n"
            "writes metrics and checkpoints. N ranks with --accum A end with the parameters of one process\n"
            "with --accum N*A (the same bits when A is 1). See docs/TRAIN.md, \"Many machines\".\n");
}

typedef struct shape {
    const char *name;
    int deepseek;
    tr_dense_cfg c;
    tr_ds_cfg ds;
} shape;

/* DeepSeek shapes: MLA without the q low-rank path (as V2-Lite), DeepSeekMoE with V3's routing
 * (sigmoid affinities, 4 groups, the best 2 kept, normalized gates scaled by 2.5), one shared
 * expert, the first layer dense, one MTP module (loss weight 0.3, V3's first phase). */
#define DS(L_, d_, H_, kvl, nope_, rope_, v_, ff, E, K, mff)                                                     \
    {.n_layer = L_, .d = d_, .n_head = H_, .kv_lora = kvl, .nope = nope_, .rope = rope_, .vdim = v_, .d_ff = ff, \
     .moe_ff = mff, .n_expert = E, .n_used = K, .n_shared = 1, .n_group = 4, .topk_group = 2, .first_dense = 1,  \
     .route_scale = 2.5f, .norm_topk = 1, .sigmoid = 1, .eps = 1e-6f, .rope_theta = 10000.0f, .balance_alpha = 1e-4f,  \
     .n_mtp = 1, .mtp_weight = TR_DS_MTP_WEIGHT}
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

/* 0 when the tokenizer's ids fit a model of vocab rows; 1 with the reason printed. */
static int check_vocab(const char *tokenizer, int vocab) {
    whale_model *vm = NULL;
    whale_err err = {0};
    whale_model_params mp = {.vocab_only = 1};
    if (whale_model_open(&vm, tokenizer, &mp, &err)) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        return 1;
    }
    whale_model_info mi;
    whale_model_info_get(vm, &mi);
    whale_model_close(vm);
    if (mi.n_vocab > vocab) {
        fprintf(stderr, "whale train: %s has %lld tokens, more than the model's vocab_size %d\n", tokenizer,
                (long long)mi.n_vocab, vocab);
        return 1;
    }
    return 0;
}

/* The conversations of path, tokenized with vocab's tokenizer and chat format; prints what was
 * read. Returns 0, or 1 with the reason printed. */
static int open_sft(tr_sft **out, const char *path, const char *vocab, const char *format, int ctx, double val_fraction) {
    whale_model *vm = NULL;
    whale_err err = {0};
    whale_model_params mp = {.vocab_only = 1};
    if (!vocab) {
        fprintf(stderr, "whale train: --sft needs a tokenizer: pass --tokenizer FILE\n");
        return 1;
    }
    int rc = whale_model_open(&vm, vocab, &mp, &err) || tr_sft_open(out, path, vm, format, ctx, val_fraction, &err);
    whale_model_close(vm);
    if (rc) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        return 1;
    }
    const tr_sft_stats *st = tr_sft_stats_get(*out);
    fprintf(stderr, "whale train: %s: %ld conversations (%ld held out for validation), %lld tokens in the %s format, "
                    "%lld of them the assistant's (the loss's); %ld cut to --ctx %d, %ld dropped (no assistant token "
                    "within it)\n",
            path, st->examples, st->val, (long long)st->tokens, st->format, (long long)st->loss_tokens, st->truncated,
            ctx, st->dropped);
    return 0;
}

/* Under an MPI launcher with several ranks, start MPI (only here: no other command, and no
 * `whale train` run alone, loads or starts it) and share the CPUs among this host's ranks.
 * Returns 0, or the exit code after saying why not. */
static int start_ranks(tr_dist *d) {
    int n = tr_dist_launched_size();
    if (n < 2) return 0;
#ifdef WHALE_HAVE_MPI
    whale_err err = {0};
    if (tr_dist_mpi_open(d, &err)) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        return 1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (d->local_size > 1 && cpus > 0) tr_set_threads(cpus / d->local_size > 1 ? (int)(cpus / d->local_size) : 1);
    return 0;
#else
    (void)d;
    fprintf(stderr, "whale train: started as one of %d MPI ranks, but this whale was built without MPI: install "
                    "Open MPI (Debian: libopenmpi-dev, or scripts/setup) and rebuild, or run whale train alone\n", n);
    return 1;
#endif
}

/* The end of a run under MPI: a rank that failed ends every rank (none may wait forever on it);
 * otherwise MPI_Finalize. Returns code. */
static int stop_ranks(tr_dist *d, int code) {
#ifdef WHALE_HAVE_MPI
    if (d->size > 1 && code) d->abort(d, code);
    if (d->size > 1) tr_dist_mpi_close(d);
#else
    (void)d;
#endif
    return code;
}

int cmd_train(int argc, char **argv) {
    tr_opts o;
    tr_opts_default(&o);
    const char *init = NULL, *from = NULL, *config = NULL, *sched = "cosine", *sft = NULL, *chat_format = NULL;
    double val_fraction = 0.05;
    if (argc > 1 && !strcmp(argv[1], "plot")) return cmd_train_plot(argc - 1, argv + 1);
    int precision = tr_precision_default(), threads = 0, recompute = 0;
    tr_lora lora = {0};
    const char *lora_targets = "all";
    int lora_given = 0; /* bits: --lora-rank, --lora-alpha, --lora-targets */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
#define ARG(flag) (!strcmp(a, flag) && v && ++i)
        if (ARG("--init")) init = v;
        else if (ARG("--from")) from = v;
        else if (ARG("--config")) config = v;
        else if (ARG("--data")) o.data_dir = v;
        else if (ARG("--sft")) sft = v;
        else if (ARG("--val-fraction")) val_fraction = atof(v);
        else if (ARG("--chat-format")) chat_format = v;
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
        else if (ARG("--threads")) {
            int n = atoi(v);
            if (n < 1 || n > 1024) {
                fprintf(stderr, "whale train: --threads is 1 to 1024, not '%s'\n", v);
                return 2;
            }
            threads = n;
        }
        else if (ARG("--bias-update")) o.bias_gamma = (float)atof(v);
        else if (ARG("--lora-rank")) lora.rank = atoi(v), lora_given |= 1;
        else if (ARG("--lora-alpha")) lora.alpha = (float)atof(v), lora_given |= 2;
        else if (ARG("--lora-targets")) lora_targets = v, lora_given |= 4;
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--recompute")) recompute = 1;
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
    if (!!init + !!from + !!config != 1 || !o.data_dir == !sft || !o.out_dir || o.steps < 1) {
        fprintf(stderr, "whale train: needs one of --init SHAPE, --config FILE or --from MODEL, one of --data DIR or --sft FILE.jsonl, "
                        "--steps N and -o RUN_DIR "
                        "(see --help)\n");
        return 2;
    }
    if (!strcmp(sched, "wsd")) o.schedule = TR_LR_WSD;
    else if (strcmp(sched, "cosine")) {
        fprintf(stderr, "whale train: --schedule is cosine or wsd\n");
        return 2;
    }
    tr_dist dist = {.rank = 0, .size = 1, .local_size = 1};
    int rc = start_ranks(&dist);
    if (rc) return rc;
    if (threads) tr_set_threads(threads); /* after the ranks' share, which it overrides */
    o.dist = dist.size > 1 ? &dist : NULL;
    char tok[4200];
    if (!o.tokenizer && o.data_dir) { /* the shards' tokenizer */
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
            return stop_ranks(&dist, 2);
        }
        c = s->c, dc = s->ds, deepseek = s->deepseek;
        c.eps = 1e-6f, c.rope_theta = 10000.0f, c.qkv_bias = 1, c.tied = 0;
        whale_model *vm = NULL;
        whale_err err = {0};
        whale_model_params mp = {.vocab_only = 1};
        if (!o.tokenizer || whale_model_open(&vm, o.tokenizer, &mp, &err)) {
            fprintf(stderr, "whale train: %s\n", o.tokenizer ? err.msg : "no tokenizer: pass --tokenizer FILE");
            return stop_ranks(&dist, 1);
        }
        whale_model_info mi;
        whale_model_info_get(vm, &mi);
        c.vocab = dc.vocab = vocab = (int)mi.n_vocab;
        whale_model_close(vm);
    } else {
        tr_shape sh;
        whale_err e = {0};
        char where[4200];
        if (from && whale_model_resolve(from, where, sizeof where, &e)) {
            fprintf(stderr, "whale train: %s\n", e.msg);
            return stop_ranks(&dist, 1);
        }
        if (from) from = strdup(where);
        if (from ? tr_shape_from_model(&sh, from, &e) : tr_shape_from_config(&sh, config, &e)) {
            fprintf(stderr, "whale train: %s\n", e.msg);
            free((char *)from);
            return stop_ranks(&dist, 1);
        }
        c = sh.dense, dc = sh.ds, deepseek = sh.deepseek;
        vocab = deepseek ? dc.vocab : c.vocab;
        if (from && !o.tokenizer) { /* a Hugging Face directory's own tokenizer.json */
            snprintf(tok, sizeof tok, "%s/tokenizer.json", from);
            if (!access(tok, R_OK)) o.tokenizer = tok;
        }
        if (o.tokenizer && check_vocab(o.tokenizer, vocab)) {
            free((char *)from);
            return stop_ranks(&dist, 1);
        }
    }
    tr_dense m;
    tr_ds ds;
    tr_model model;
    whale_err err = {0};
    if (lora_given) {
        const char *why = !(lora_given & 1) ? "--lora-alpha and --lora-targets need --lora-rank"
                          : lora.rank < 1 || lora.rank > TR_LORA_MAX_RANK ? "--lora-rank must be 1 to 1024"
                          : (lora_given & 2) && !(lora.alpha > 0 && isfinite(lora.alpha)) ? "--lora-alpha must be above 0"
                          : !from ? "--lora-rank needs --from MODEL (adapters on a trained model)"
                          : deepseek ? "--lora-rank: adapters for DeepSeek models (MLA, experts) are not built yet; "
                                       "fine-tune it whole (without --lora-rank)"
                                     : NULL;
        if (why || tr_lora_targets_parse(lora_targets, &lora.targets, &err)) {
            fprintf(stderr, "whale train: %s\n", why ? why : err.msg);
            free((char *)from);
            return stop_ranks(&dist, 2);
        }
        if (!(lora_given & 2)) lora.alpha = 2.0f * (float)lora.rank;
        c.lora = lora;
    }
    if (deepseek ? tr_ds_init(&ds, &dc, &err) : tr_dense_init(&m, &c, &err)) {
        fprintf(stderr, "whale train: %s\n", err.msg);
        return stop_ranks(&dist, 1);
    }
    if (deepseek) ds.recompute = recompute, tr_ds_model(&ds, &model);
    else m.recompute = recompute, tr_dense_model(&m, &model);
    model.base = from;
    /* what it is and what it costs, before it starts */
    int d = deepseek ? dc.d : c.d, L = deepseek ? dc.n_layer : c.n_layer, H = deepseek ? dc.n_head : c.n_head;
    int hd = deepseek ? dc.nope + dc.rope : c.head_dim;
    size_t emb = (size_t)vocab * d * 2, n = model.P->n;
    double active = (double)(n - emb);
    int mtp = deepseek ? dc.n_mtp : 0; /* MTP: one more block and one more pass of the head per module */
    if (deepseek && dc.n_expert) /* per token, only n_used of the routed experts run */
        active -= (double)(L + mtp - dc.first_dense) * (dc.n_expert - dc.n_used) * 3.0 * dc.d * dc.moe_ff;
    /* a frozen weight costs its forward and its input gradient (4 FLOPs per parameter, not 6) */
    double per_param = model.lora ? 4.0 : 6.0;
    double flops = per_param * (active + (double)vocab * d * (1 + mtp)) + 6.0 * (L + mtp) * o.ctx * H * hd;
    size_t trainable = 0;
    for (int i = 0; i < model.P->n_t; i++) trainable += model.P->t[i].frozen ? 0 : model.P->t[i].n;
    size_t mtp_n = 0;
    for (int i = 0; i < model.P->n_t; i++) {
        int l = -1;
        if (sscanf(model.P->t[i].name, "model.layers.%d.", &l) == 1 && l >= L) mtp_n += model.P->t[i].n;
    }
    double per_layer = deepseek ? (double)o.ctx * (d * 5 + H * hd * 3 + dc.kv_lora * 3 + H * (dc.nope + dc.vdim) +
                                                   H * dc.vdim * 2 + dc.d_ff * 3 + dc.n_used * (3 * dc.moe_ff + d + 2) +
                                                   dc.n_expert * 2)
                                : (double)o.ctx * (d * 4 + H * hd * 2 + c.n_kv * hd * 2 + c.d_ff * 3);
    /* --recompute keeps one layer's activations of each kind and every layer's input */
    double kept = recompute ? (deepseek ? 2 : 1) + mtp : L + mtp;
    double act = kept * (per_layer + (double)H * o.ctx * o.ctx) * 4.0 + (double)o.ctx * vocab * 4.0 +
                 (recompute ? (double)(L + 1) * o.ctx * d * 4.0 : 0);
    double need = (double)n * (o.accum > 1 ? 20 : 16) + act; /* w, g, Adam m and v; the micro-batch sum */
    double avail = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    char b1[32], b2[32];
    tr_set_precision(precision);
    o.flops_per_token = flops;
    if (!rc && dist.rank == 0) {
        fprintf(stderr, "whale train: %s, %.2fM parameters (%.2fM without the embedding and head%s), vocabulary %d\n"
                        "whale train: %.1f MFLOP per token (forward + backward), about %s of memory (%s available)\n",
                init ? init : from ? from : config, n / 1e6, (n - emb) / 1e6, deepseek ? "; fewer active per token" : "", vocab,
                flops / 1e6, cli_bytes(need, b1, sizeof b1), cli_bytes(avail, b2, sizeof b2));
        if (model.lora)
            fprintf(stderr, "whale train: LoRA rank %d, alpha %g on %s: %.3fM trainable parameters, the model's frozen\n",
                    model.lora->rank, (double)model.lora->alpha, lora_targets, trainable / 1e6);
        if (mtp)
            fprintf(stderr, "whale train: multi-token prediction: %d module%s, %.2fM parameters (in the count above), "
                            "loss weight %.2f\n", mtp, mtp > 1 ? "s" : "", mtp_n / 1e6, dc.mtp_weight);
        if (dist.size > 1)
            fprintf(stderr, "whale train: ranks: %d; global batch %d x %d x %d x %d = %.0f tokens per step\n", dist.size,
                    o.batch, o.ctx, o.accum, dist.size, (double)o.batch * o.ctx * o.accum * dist.size);
        fprintf(stderr, "whale train: %s matrix products, peak %.1f GFLOP/s (this machine's 256^3 product; MFU against it)\n",
                tr_precision_name(precision), tr_peak_flops() / 1e9);
        if (need > avail) {
            fprintf(stderr, "whale train: it will not fit: lower --batch/--ctx or choose a smaller shape\n");
            rc = 1;
        }
    }
    /* the weights only once the memory is known to suffice */
    if (!rc && from && (rc = tr_load_weights(model.P, from, &err))) fprintf(stderr, "whale train: %s\n", err.msg);
    if (!rc && !from) tr_init_weights(&model, o.seed);
    if (!rc && model.lora) tr_init_adapters(&model, o.seed);
    tr_sft *examples = NULL;
    if (!rc && sft && (rc = open_sft(&examples, sft, o.tokenizer ? o.tokenizer : from, chat_format, o.ctx, val_fraction)))
        rc = 1;
    o.sft = examples;
    ui u = {.tty = isatty(2)};
    o.on_step = on_step, o.on_note = on_note, o.hook_ctx = &u;
    if (!rc && (rc = tr_train(&model, &o, &err))) fprintf(stderr, "whale train: %s\n", err.msg);
    if (!rc && dist.rank == 0) printf("%s/step-%06ld\n", o.out_dir, o.steps);
    tr_sft_free(examples);
    free((char *)from);
    if (deepseek) tr_ds_free(&ds);
    else tr_dense_free(&m);
    return stop_ranks(&dist, rc ? 1 : 0);
}
