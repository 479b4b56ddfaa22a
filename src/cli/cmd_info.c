/* cmd_info.c — `whale info`: what a model file holds, in a readable table, for GGUF files and
 * safetensors checkpoints (a directory, a .safetensors file or a model.safetensors.index.json)
 * alike: where the weights are, the hyperparameters (GGUF metadata or config.json beside the
 * weights), the tokenizer, the per-dtype summary (formats/dtype_summary.c) and the tensors.
 * Owns only the printing. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "formats/dtype_summary.h"
#include "formats/gguf.h"
#include "formats/gguf_hparams.h"
#include "formats/hf_config.h"
#include "formats/peft.h"
#include "formats/safetensors.h"
#include "kernels/attn.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale info [FILE|DIR] [-m MODEL] [--tensors] [--meta] [--lora PATH]\n\n"
               "Show a model's architecture, hyperparameters, tokenizer and tensors.\n"
               "  FILE|DIR, -m MODEL  a .gguf file, a .safetensors file or checkpoint directory\n"
               "                      (default: the default model); a LoRA adapter's directory\n"
               "  --lora PATH         show a LoRA adapter (PEFT directory): rank, alpha, scale, modules\n"
               "  --tensors           list every tensor (name, type, shape, bytes)\n"
               "  --meta              list every metadata key (GGUF)\n");
}

/* Tensors listed from each end of a safetensors checkpoint's sorted table; the middle is
 * summarized by a count. */
#define INFO_ST_SHOWN 5

/* One "  name  value" line per non-zero field. */
static void info_print_hparams(const model_hparams *hp) {
#define P(field) if (hp->field) printf("  %-22s %lld\n", #field, (long long)hp->field)
#define PF(field) if (hp->field != 0) printf("  %-22s %g\n", #field, (double)hp->field)
    printf("  %-22s %s\n", "arch", model_arch_name(hp->arch));
    P(n_vocab); P(n_ctx_train); P(n_embd); P(n_layer); P(n_ff); P(n_head); P(n_head_kv); P(head_dim);
    PF(rms_eps); PF(rope_theta); P(tie_embeddings); P(attn_bias);
    if (hp->rope_scaling_type) {
        static const char *names[] = {"none", "linear", "yarn", "llama3"};
        printf("  %-22s %s\n", "rope_scaling", names[hp->rope_scaling_type]);
    }
    PF(rope_factor); P(rope_orig_ctx); PF(yarn_beta_fast); PF(yarn_beta_slow); PF(yarn_mscale);
    PF(yarn_mscale_all_dim); PF(yarn_log_multiplier);
    P(q_lora_rank); P(kv_lora_rank); P(qk_nope_head_dim); P(qk_rope_head_dim); P(v_head_dim);
    P(n_expert); P(n_expert_used); P(n_expert_shared); P(n_ff_expert); P(n_layer_dense_lead);
    P(n_expert_group); P(n_group_used); PF(expert_weights_scale); P(expert_weights_norm);
    if (hp->gating) printf("  %-22s %s\n", "gating", hp->gating == MOE_GATING_SIGMOID ? "sigmoid" : "softmax");
    P(n_nextn_layer);
    /* KV cache per token over all layers, F32 as Whale stores it (model/footprint.c): MLA keeps
     * the latent and the rope key; dense models keep K and V of every KV head. */
    long long kvb = (long long)model_kv_bytes_per_token(hp, OP_KV_F32), mtp = (long long)model_kv_bytes_per_token_mtp(hp, OP_KV_F32);
    if (hp->kv_lora_rank > 0 && hp->n_layer > 0) {
        long long full = (long long)hp->n_head * (hp->qk_nope_head_dim + hp->qk_rope_head_dim + hp->v_head_dim) * 4 * hp->n_layer;
        printf("  %-22s %lld (MLA latent; per-head K and V would take %lld, %.1fx more)\n", "kv_bytes_per_token", kvb,
               full, (double)full / (double)kvb);
    } else if (hp->arch != MODEL_ARCH_DEEPSEEK2 && hp->n_head_kv > 0 && hp->head_dim > 0 && hp->n_layer > 0) {
        printf("  %-22s %lld (K and V)\n", "kv_bytes_per_token", kvb);
    }
    if (mtp > 0 && hp->kv_lora_rank > 0)
        printf("  %-22s %lld (the %lld MTP layer%s, when the module is loaded)\n", "kv_bytes_per_token_mtp", mtp,
               (long long)hp->n_nextn_layer, hp->n_nextn_layer == 1 ? "" : "s");
#undef P
#undef PF
}

/* Name, architecture and hyperparameters, or why they could not be read (hp NULL: err says).
 * source follows the "hyperparameters" heading (where they came from). */
static void info_print_model(const model_hparams *hp, const whale_err *err, const char *source) {
    if (!hp) {
        printf("hyperparameters          unreadable: %s\n", err->msg);
        return;
    }
    if (hp->name[0]) printf("name                     %s\n", hp->name);
    printf("architecture             %s\n", hp->arch_name);
    printf("hyperparameters%s\n", source);
    info_print_hparams(hp);
}

static void print_kv_value(const gguf_kv *kv) {
    gguf_str s;
    switch (kv->type) {
    case GGUF_TYPE_STRING:
        memcpy(&s.n, kv->val, 8);
        s.s = (const char *)kv->val + 8;
        if (s.n > 60) printf("\"%.57s...\" (%llu bytes)", s.s, (unsigned long long)s.n);
        else printf("\"%.*s\"", (int)s.n, s.s);
        break;
    case GGUF_TYPE_ARRAY:
        printf("[%s × %llu]", gguf_type_name(kv->arr_type), (unsigned long long)kv->arr_n);
        break;
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, kv->val, 4); printf("%g", (double)v); break; }
    case GGUF_TYPE_FLOAT64: { double v; memcpy(&v, kv->val, 8); printf("%g", v); break; }
    default: {
        gguf_kv one = *kv;
        one.arr_type = kv->type;
        printf("%lld", (long long)gguf_arr_i64(&one, 0));
    }
    }
}

static void print_shape(const gguf_tensor *t) {
    char b[96];
    int k = 0;
    for (int d = 0; d < t->n_dims; d++)
        k += snprintf(b + k, sizeof b - (size_t)k, d ? " × %lld" : "%lld", (long long)t->ne[d]);
    printf("%-24s", b);
}

/* dtype_name takes an int (GGUF files may name types Whale does not know). */
static const char *gguf_dtype_name(whale_dtype t) { return dtype_name((int)t); }

/* The per-dtype summary: a totals line, then tensors and bytes per dtype (named by `name`). */
static void print_dtype_summary(const dtype_summary *s, const char *(*name)(whale_dtype)) {
    char b[32], pbuf[32];
    double params = s->n_elems;
    if (params >= 1e9) snprintf(pbuf, sizeof pbuf, "%.2f B", params / 1e9);
    else if (params >= 1e6) snprintf(pbuf, sizeof pbuf, "%.2f M", params / 1e6);
    else snprintf(pbuf, sizeof pbuf, "%.0f", params);
    printf("tensors                  %llu, %s parameters, %s (%.2f bits per weight)\n", (unsigned long long)s->n_tensors,
           pbuf, cli_bytes(s->bytes, b, sizeof b), params > 0 ? s->bytes * 8 / params : 0.0);
    for (int j = 0; j < s->n_rows; j++)
        printf("  %-8s %6llu tensors  %s\n", name(s->row[j].type), (unsigned long long)s->row[j].n_tensors,
               cli_bytes(s->row[j].bytes, b, sizeof b));
}

static int info_gguf(const char *path, int list_tensors, int list_meta) {
    gguf_file f;
    whale_err err = {0};
    if (gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, &err)) {
        fprintf(stderr, "whale: %s\n", err.msg);
        return 1;
    }
    char b1[32];
    printf("file                     %s\n", path);
    printf("format                   GGUF v%u, %s, %llu metadata keys, alignment %u\n", f.version,
           cli_bytes((double)f.map.size, b1, sizeof b1), (unsigned long long)f.n_kv, f.alignment);
    if (f.n_missing)
        printf("WARNING                  %llu of %llu tensors lie past the end of the file (truncated download?)\n",
               (unsigned long long)f.n_missing, (unsigned long long)f.n_tensors);
    model_hparams hp;
    int rc = gguf_hparams_load(&hp, &f, &err);
    info_print_model(rc ? NULL : &hp, &err, "");
    tokenizer *tok = NULL;
    if (tokenizer_load_gguf(&tok, &f, &err)) {
        printf("tokenizer                none usable: %s\n", err.msg);
    } else {
        int64_t n_special = 0, n_user = 0;
        for (int32_t i = 0; i < tokenizer_n_vocab(tok); i++) {
            n_special += tokenizer_attr(tok, i) == TOK_CONTROL;
            n_user += tokenizer_attr(tok, i) == TOK_USER;
        }
        printf("tokenizer                byte-level BPE, pre-tokenizer '%s', %lld tokens (%lld special, %lld added), %zu merges\n",
               tokenizer_pre_name(tok), (long long)tokenizer_n_vocab(tok), (long long)n_special, (long long)n_user,
               tokenizer_n_merges(tok));
        size_t l;
        const char *s;
        if (tokenizer_bos(tok) >= 0 && (s = tokenizer_token_text(tok, tokenizer_bos(tok), &l)))
            printf("  bos                    %d %.*s\n", tokenizer_bos(tok), (int)l, s);
        if (tokenizer_eos(tok) >= 0 && (s = tokenizer_token_text(tok, tokenizer_eos(tok), &l)))
            printf("  eos                    %d %.*s\n", tokenizer_eos(tok), (int)l, s);
        tokenizer_free(tok);
    }
    if (gguf_find(&f, "tokenizer.chat_template")) printf("chat template            yes\n");

    dtype_summary sum;
    dtype_summary_gguf(&sum, &f);
    print_dtype_summary(&sum, gguf_dtype_name);
    if (list_meta) {
        printf("metadata\n");
        for (uint64_t i = 0; i < f.n_kv; i++) {
            printf("  %-44.*s ", (int)f.kv[i].key.n, f.kv[i].key.s);
            print_kv_value(&f.kv[i]);
            printf("\n");
        }
    }
    if (list_tensors) {
        printf("%-44s %-8s %-24s %s\n", "  name", "type", "shape (ne0 first)", "bytes");
        for (uint64_t i = 0; i < f.n_tensors; i++) {
            const gguf_tensor *t = &f.tensors[i];
            printf("  %-42.*s %-8s ", (int)t->name.n, t->name.s, dtype_name(t->type));
            print_shape(t);
            printf(" %s%s\n", cli_bytes((double)t->nbytes, b1, sizeof b1), t->data ? "" : "  (missing)");
        }
    }
    gguf_close(&f);
    return 0;
}

static void print_st_tensor(const st_tensor *t) {
    char shape[128], bytes[32];
    int k = snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t->n_dims && k > 0 && (size_t)k < sizeof shape; d++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, d ? ", %" PRId64 : "%" PRId64,
                      t->shape[d]);
    if (k > 0 && (size_t)k < sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
    printf("  %-50s %-8s %-22s %s\n", t->name, st_dtype_name(t->dtype), shape,
           cli_bytes((double)t->nbytes, bytes, sizeof bytes));
}

static int info_safetensors(const char *path) {
    st_model m;
    whale_err err = {0};
    if (st_open(&m, path, &err)) {
        fprintf(stderr, "whale: %s\n", err.msg);
        return 1;
    }
    char b1[32];
    size_t mapped = 0;
    for (int i = 0; i < m.n_shards; i++) mapped += m.shards[i].size;
    printf("file                     %s\n", m.path);
    printf("format                   safetensors, %d shard%s, %s\n", m.n_shards,
           m.n_shards == 1 ? "" : "s", cli_bytes((double)mapped, b1, sizeof b1));
    const char *fmt = st_metadata(&m, "format");
    if (fmt) printf("saved by                 %s\n", fmt);

    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", m.dir);
    FILE *probe = fopen(cfg, "rb");
    if (probe) {
        fclose(probe);
        model_hparams hp;
        int rc = hf_config_load(&hp, cfg, &err);
        info_print_model(rc ? NULL : &hp, &err, "          (config.json)");
    } else {
        printf("hyperparameters          no config.json beside the weights\n");
    }

    dtype_summary sum;
    dtype_summary_st(&sum, &m);
    print_dtype_summary(&sum, st_dtype_name);

    printf("%-52s %-8s %-22s %s\n", "  name", "dtype", "shape", "bytes");
    for (size_t i = 0; i < m.n_tensors; i++) {
        if (m.n_tensors > 2 * INFO_ST_SHOWN && i == INFO_ST_SHOWN) {
            printf("  ... %zu more ...\n", m.n_tensors - 2 * INFO_ST_SHOWN);
            i = m.n_tensors - INFO_ST_SHOWN - 1;
            continue;
        }
        print_st_tensor(&m.tensors[i]);
    }
    st_close(&m);
    return 0;
}

/* A PEFT LoRA adapter: its rank, scale rule, target modules and size. */
static int info_lora(const char *path) {
    peft_adapter a;
    whale_err err = {0};
    if (peft_load(&a, path, &err)) {
        fprintf(stderr, "whale: %s\n", err.msg);
        return 1;
    }
    int64_t params = 0;
    for (int i = 0; i < a.n_mods; i++) params += a.r * (a.mods[i].n_in + a.mods[i].n_out);
    printf("lora adapter             %s\n", path);
    printf("rank                     %lld\n", (long long)a.r);
    printf("alpha                    %g\n", a.alpha);
    printf("scale                    %g (%s)\n", (double)a.scale, a.rslora ? "alpha / sqrt(r), rsLoRA" : "alpha / r");
    printf("target modules          ");
    for (int i = 0; i < a.n_targets; i++) printf(" %s", a.targets[i]);
    printf("%s\n", a.n_targets ? "" : " (a pattern)");
    printf("matrices                 %d, %lld parameters\n", a.n_mods, (long long)params);
    peft_free(&a);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int list_tensors = 0, list_meta = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--tensors")) list_tensors = 1;
        else if (!strcmp(argv[i], "--meta")) list_meta = 1;
        else if (!strcmp(argv[i], "--lora")) {
            if (++i >= argc) {
                fprintf(stderr, "whale info: --lora needs an adapter directory\n");
                return 2;
            }
            return info_lora(argv[i]);
        }
        else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (++i >= argc) {
                fprintf(stderr, "whale info: -m needs a value\n");
                return 2;
            }
            path = argv[i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "whale info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else path = argv[i];
    }
    path = cli_model_path(path);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "whale: %s: no such file%s\n", path,
                strstr(path, "default.gguf") ? " (run scripts/setup to fetch the default model)" : "");
        return 1;
    }
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", path);
    if (S_ISDIR(st.st_mode) && stat(cfg, &st) == 0) return info_lora(path);
    if (S_ISDIR(st.st_mode) || cli_is_safetensors_path(path)) return info_safetensors(path);
    return info_gguf(path, list_tensors, list_meta);
}
