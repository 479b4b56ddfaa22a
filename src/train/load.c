/* load.c — models to train from: config.json shapes and F32 master weights from any file Whale
 * loads (see load.h). */
#include "train/load.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "formats/dtype.h"
#include "formats/gguf.h"
#include "formats/gguf_hparams.h"
#include "formats/hf_config.h"
#include "formats/json_file.h"
#include "formats/safetensors.h"
#include "model/model.h"

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_gguf(const char *p) {
    size_t n = strlen(p);
    return n > 5 && !strcmp(p + n - 5, ".gguf");
}

/* hp (from either parser) onto the trainer's shapes. */
static int shape_of(tr_shape *s, const model_hparams *hp, const char *path, whale_err *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->arch, sizeof s->arch, "%s", hp->arch_name);
    if (hp->arch != MODEL_ARCH_QWEN2 && hp->arch != MODEL_ARCH_LLAMA && hp->arch != MODEL_ARCH_DEEPSEEK2)
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: architecture \"%s\" cannot be trained (Qwen2, Llama and "
                                                 "DeepSeek-V3 shapes can)", path, hp->arch_name);
    if (hp->rope_scaling_type != ROPE_SCALING_NONE &&
        !(hp->rope_scaling_type == ROPE_SCALING_YARN && hp->arch == MODEL_ARCH_DEEPSEEK2))
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: rope_scaling is not supported by the trainer (plain RoPE, and "
                                                 "YaRN for DeepSeek, only)", path);
    if (hp->n_vocab < 2 || hp->n_ff < 1 || hp->n_layer < 1 || hp->n_embd < 1 || hp->n_head < 1)
        return err_set(err, WHALE_E_FORMAT, "%s: needs vocab_size, intermediate_size, hidden_size, num_hidden_layers "
                                            "and num_attention_heads", path);
    if (hp->arch != MODEL_ARCH_DEEPSEEK2) {
        tr_dense_cfg *c = &s->dense;
        *c = (tr_dense_cfg){.n_layer = (int)hp->n_layer, .d = (int)hp->n_embd, .n_head = (int)hp->n_head,
                            .n_kv = (int)(hp->n_head_kv ? hp->n_head_kv : hp->n_head),
                            .head_dim = (int)(hp->head_dim ? hp->head_dim : hp->n_embd / hp->n_head),
                            .d_ff = (int)hp->n_ff, .vocab = (int)hp->n_vocab, .eps = hp->rms_eps ? hp->rms_eps : 1e-6f,
                            .rope_theta = hp->rope_theta ? hp->rope_theta : 1e4f,
                            /* Llama: the same block without q/k/v biases; they start at zero here and
                             * the checkpoints say Qwen2 (which has them) */
                            .qkv_bias = 1, .tied = hp->tie_embeddings};
        if (c->n_head % c->n_kv)
            return err_set(err, WHALE_E_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                           path, c->n_head, c->n_kv);
        return 0;
    }
    if (hp->kv_lora_rank < 1 || hp->qk_rope_head_dim < 1 || hp->qk_nope_head_dim < 1 || hp->v_head_dim < 1)
        return err_set(err, WHALE_E_FORMAT, "%s: DeepSeek needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and "
                                            "v_head_dim", path);
    if (hp->n_expert && (hp->n_ff_expert < 1 || hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
        return err_set(err, WHALE_E_FORMAT, "%s: DeepSeek MoE needs moe_intermediate_size and 1 <= "
                                            "num_experts_per_tok <= n_routed_experts", path);
    s->deepseek = 1;
    s->ds = (tr_ds_cfg){.n_layer = (int)hp->n_layer, .d = (int)hp->n_embd, .n_head = (int)hp->n_head,
                        .vocab = (int)hp->n_vocab, .q_lora = (int)hp->q_lora_rank, .kv_lora = (int)hp->kv_lora_rank,
                        .nope = (int)hp->qk_nope_head_dim, .rope = (int)hp->qk_rope_head_dim, .vdim = (int)hp->v_head_dim,
                        .d_ff = (int)hp->n_ff, .moe_ff = (int)hp->n_ff_expert, .n_expert = (int)hp->n_expert,
                        .n_used = (int)hp->n_expert_used, .n_shared = (int)hp->n_expert_shared,
                        .n_group = (int)hp->n_expert_group, .topk_group = (int)hp->n_group_used,
                        .first_dense = (int)(hp->n_expert ? hp->n_layer_dense_lead : hp->n_layer),
                        .route_scale = hp->expert_weights_scale ? hp->expert_weights_scale : 1.0f,
                        .norm_topk = hp->expert_weights_norm, .sigmoid = hp->gating != MOE_GATING_SOFTMAX,
                        .eps = hp->rms_eps ? hp->rms_eps : 1e-6f, .rope_theta = hp->rope_theta ? hp->rope_theta : 1e4f,
                        .balance_alpha = 1e-4f, .n_mtp = (int)hp->n_nextn_layer, .mtp_weight = TR_DS_MTP_WEIGHT};
    if (hp->rope_scaling_type == ROPE_SCALING_YARN) {
        tr_ds_cfg *c = &s->ds;
        c->rope_factor = hp->rope_factor, c->rope_orig_ctx = (int)hp->rope_orig_ctx;
        c->yarn_beta_fast = hp->yarn_beta_fast, c->yarn_beta_slow = hp->yarn_beta_slow;
        c->yarn_mscale = hp->yarn_mscale, c->yarn_mscale_all_dim = hp->yarn_mscale_all_dim;
    }
    return 0;
}

/* Fields a config.json must state outright for --config (transformers would fill in the
 * defaults of a full-size model: a 152k vocabulary for a model meant to be small), and the
 * settings the shapes cannot express. */
static int config_fields(const char *file, whale_err *err) {
    cJSON *j = json_read_file(file, HF_CONFIG_MAX_BYTES, err);
    if (!j) return err && err->code ? err->code : err_set(err, WHALE_E_FORMAT, "%s: not JSON", file);
    static const char *const need[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads"};
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0);
    int rc = 0;
    if (!cJSON_IsString(a)) rc = err_set(err, WHALE_E_FORMAT, "%s: no \"architectures\" (Qwen2ForCausalLM, "
                                                              "LlamaForCausalLM or DeepseekV3ForCausalLM)", file);
    else if (strcmp(a->valuestring, "Qwen2ForCausalLM") && strcmp(a->valuestring, "LlamaForCausalLM") &&
             strcmp(a->valuestring, "DeepseekV3ForCausalLM"))
        rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: architecture %s cannot be trained (Qwen2ForCausalLM, "
                                               "LlamaForCausalLM, DeepseekV3ForCausalLM)", file, a->valuestring);
    for (size_t i = 0; !rc && i < sizeof need / sizeof need[0]; i++)
        if (!cJSON_IsNumber(cJSON_GetObjectItem(j, need[i]))) rc = err_set(err, WHALE_E_FORMAT, "%s: no \"%s\"", file, need[i]);
    const cJSON *act = cJSON_GetObjectItem(j, "hidden_act");
    if (!rc && cJSON_IsString(act) && strcmp(act->valuestring, "silu"))
        rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: hidden_act \"%s\" (the trainer's MLP is SwiGLU: silu)", file,
                     act->valuestring);
    if (!rc && cJSON_IsTrue(cJSON_GetObjectItem(j, "use_sliding_window")))
        rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: use_sliding_window (the trainer attends to the whole context)", file);
    if (!rc && cJSON_IsTrue(cJSON_GetObjectItem(j, "attention_bias")))
        rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: attention_bias (o_proj bias) is not supported", file);
    cJSON_Delete(j);
    return rc;
}

int tr_shape_from_config(tr_shape *s, const char *path, whale_err *err) {
    char file[4200];
    snprintf(file, sizeof file, is_dir(path) ? "%s/config.json" : "%s", path);
    model_hparams hp;
    int rc = config_fields(file, err);
    if (!rc) rc = hf_config_load(&hp, file, err);
    return rc ? rc : shape_of(s, &hp, file, err);
}

int tr_shape_from_model(tr_shape *s, const char *path, whale_err *err) {
    model_hparams hp;
    int rc;
    if (is_gguf(path)) {
        gguf_file f;
        if ((rc = gguf_open(&f, path, 0, err))) return rc;
        rc = gguf_hparams_load(&hp, &f, err);
        gguf_close(&f);
        if (!rc && hp.arch == MODEL_ARCH_DEEPSEEK2)
            rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: a DeepSeek GGUF stores its experts merged and MLA's kv_b split; "
                                                   "train from its Hugging Face checkpoint instead", path);
        if (!rc && hp.arch == MODEL_ARCH_LLAMA)
            rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: a Llama GGUF stores q and k permuted for llama.cpp's RoPE; "
                                                   "train from its Hugging Face checkpoint instead", path);
        return rc ? rc : shape_of(s, &hp, path, err);
    }
    char file[4200];
    snprintf(file, sizeof file, is_dir(path) ? "%s/config.json" : "%s", path);
    if (!is_dir(path))
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: not a .gguf file or a Hugging Face directory", path);
    if ((rc = hf_config_load(&hp, file, err))) return rc;
    if (hp.arch == MODEL_ARCH_LLAMA)
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: a Llama checkpoint has no q/k/v biases, which the trainer's "
                                                 "dense block has; use --config with its config.json for a fresh model", path);
    return shape_of(s, &hp, file, err);
}

/* One parameter from a tensor of type t with n elements at data. */
static int take(tr_param *q, whale_dtype t, int64_t n, const void *data, const char *path, const char *name, whale_err *err) {
    if ((size_t)n != q->n)
        return err_set(err, WHALE_E_FORMAT, "%s: %s has %lld elements, the shape needs %zu", path, name, (long long)n, q->n);
    if (t == WHALE_DTYPE_F8_E4M3 || t == WHALE_DTYPE_F8_E5M2 || !dtype_get(t)->can_dequantize)
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: %s is %s, which cannot be trained from (F32, F16, BF16 or a "
                                                 "GGUF quantization)", path, name, dtype_get(t)->name);
    if (!data) return err_set(err, WHALE_E_FORMAT, "%s: %s has no data (a partial file?)", path, name);
    dequantize_row(t, data, q->w, n);
    return 0;
}

/* LoRA's adapters (PEFT's names) are not in the model they adapt. */
static int is_adapter(const tr_param *q) { return !strncmp(q->name, "base_model.model.", 17); }

int tr_load_weights(tr_params *P, const char *path, whale_err *err) {
    int rc = 0;
    if (is_gguf(path)) {
        gguf_file f;
        if ((rc = gguf_open(&f, path, 0, err))) return rc;
        for (int i = 0; i < P->n_t && !rc; i++) {
            tr_param *q = &P->t[i];
            if (is_adapter(q)) continue;
            char g[160];
            const gguf_tensor *t = model_name_from_hf(q->name, g, sizeof g) ? gguf_find_tensor(&f, g) : NULL;
            if (!t) {
                rc = err_set(err, WHALE_E_NOTFOUND, "%s: no tensor for %s", path, q->name);
                break;
            }
            int64_t n = 1;
            for (int d = 0; d < t->n_dims; d++) n *= t->ne[d];
            rc = take(q, t->type, n, t->data, path, g, err);
        }
        gguf_close(&f);
        return rc;
    }
    st_model st;
    if ((rc = st_open(&st, path, err))) return rc;
    for (int i = 0; i < P->n_t && !rc; i++) {
        tr_param *q = &P->t[i];
        if (is_adapter(q)) continue;
        const st_tensor *t = st_find(&st, q->name);
        if (!t) rc = err_set(err, WHALE_E_NOTFOUND, "%s: no tensor %s", path, q->name);
        else rc = take(q, t->dtype, t->n_elems, t->data, path, q->name, err);
    }
    st_close(&st);
    return rc;
}

int tr_loaded_open(tr_loaded *l, const char *path, const tr_lora *lora, uint64_t seed, whale_err *err) {
    memset(l, 0, sizeof *l);
    tr_shape sh;
    int rc = tr_shape_from_model(&sh, path, err);
    if (rc) return rc;
    l->deepseek = sh.deepseek;
    if (lora && lora->rank > 0) {
        if (sh.deepseek)
            return err_set(err, WHALE_E_UNSUPPORTED, "%s: LoRA adapters for DeepSeek models (MLA, experts) are not built yet",
                           path);
        sh.dense.lora = *lora;
    }
    if ((rc = sh.deepseek ? tr_ds_init(&l->ds, &sh.ds, err) : tr_dense_init(&l->dense, &sh.dense, err))) return rc;
    if (sh.deepseek) tr_ds_model(&l->ds, &l->model);
    else tr_dense_model(&l->dense, &l->model);
    l->model.base = path;
    if ((rc = tr_load_weights(l->model.P, path, err))) return rc;
    if (l->model.lora) tr_init_adapters(&l->model, seed);
    return 0;
}

void tr_loaded_free(tr_loaded *l) {
    if (l->deepseek) tr_ds_free(&l->ds);
    else if (l->model.P) tr_dense_free(&l->dense);
    memset(l, 0, sizeof *l);
}
