/* hf_config.c — Hugging Face config.json -> model_hparams, and architecture names.
 *
 * Fields are read through typed getters that record the first wrong-typed field and ignore
 * the rest (like cursor.h's sticky `bad`), so the mapping below reads as a table. Absent and
 * null fields leave the default in place: a null q_lora_rank (V2-Lite) is 0, "no q low-rank". */
#include "formats/hf_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mapfile.h"

/* Integers in JSON are doubles; beyond 2^53 they are not exact, and no hyperparameter is near. */
#define JSON_MAX_EXACT_INT 9007199254740992.0

const char *model_arch_name(model_arch a) {
    switch (a) {
    case MODEL_ARCH_QWEN2: return "qwen2";
    case MODEL_ARCH_LLAMA: return "llama";
    case MODEL_ARCH_DEEPSEEK2: return "deepseek2";
    default: return "unknown";
    }
}

/* ---------------------------------------------------------------------------------------------
 * Typed getters with a sticky error
 * ------------------------------------------------------------------------------------------- */

typedef struct cfg_reader {
    const char *name; /* file name, for messages */
    whale_err *err;
    int rc; /* first error; later getters do nothing */
} cfg_reader;

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "something else";
}

static int bad_type(cfg_reader *r, const char *prefix, const char *key, const char *want,
                    const cJSON *j) {
    r->rc = err_set(r->err, WHALE_E_FORMAT, "%s: \"%s%s\" should be %s, got %s", r->name, prefix,
                    key, want, json_kind(j));
    return r->rc;
}

/* The member key of obj, or NULL when absent or null (absent and null both mean "default"). */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(j) ? NULL : j;
}

static void get_i64(cfg_reader *r, const cJSON *obj, const char *prefix, const char *key,
                    int64_t *out) {
    if (r->rc) return;
    const cJSON *j = member(obj, key);
    if (!j) return;
    double d = cJSON_IsNumber(j) ? j->valuedouble : -1.0;
    if (!cJSON_IsNumber(j) || !(d >= 0.0) || d > JSON_MAX_EXACT_INT || d != floor(d)) {
        bad_type(r, prefix, key, "a non-negative integer", j);
        return;
    }
    *out = (int64_t)d;
}

static void get_f32(cfg_reader *r, const cJSON *obj, const char *prefix, const char *key,
                    float *out) {
    if (r->rc) return;
    const cJSON *j = member(obj, key);
    if (!j) return;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) {
        bad_type(r, prefix, key, "a number", j);
        return;
    }
    *out = (float)j->valuedouble;
}

static void get_bool(cfg_reader *r, const cJSON *obj, const char *key, int *out) {
    if (r->rc) return;
    const cJSON *j = member(obj, key);
    if (!j) return;
    if (!cJSON_IsBool(j)) {
        bad_type(r, "", key, "true or false", j);
        return;
    }
    *out = cJSON_IsTrue(j);
}

/* A string member, borrowed from the tree; NULL when absent/null or on error. */
static const char *get_str(cfg_reader *r, const cJSON *obj, const char *prefix, const char *key) {
    if (r->rc) return NULL;
    const cJSON *j = member(obj, key);
    if (!j) return NULL;
    if (!cJSON_IsString(j) || !j->valuestring) {
        bad_type(r, prefix, key, "a string", j);
        return NULL;
    }
    return j->valuestring;
}

static void copy_str(char *dst, size_t n, const char *src) {
    snprintf(dst, n, "%s", src ? src : "");
}

/* ---------------------------------------------------------------------------------------------
 * The mapping
 * ------------------------------------------------------------------------------------------- */

static model_arch arch_from_name(const char *s) {
    static const struct {
        const char *name;
        model_arch arch;
    } names[] = {
        {"Qwen2ForCausalLM", MODEL_ARCH_QWEN2},          {"qwen2", MODEL_ARCH_QWEN2},
        {"LlamaForCausalLM", MODEL_ARCH_LLAMA},          {"llama", MODEL_ARCH_LLAMA},
        {"DeepseekV2ForCausalLM", MODEL_ARCH_DEEPSEEK2}, {"deepseek_v2", MODEL_ARCH_DEEPSEEK2},
        {"DeepseekV3ForCausalLM", MODEL_ARCH_DEEPSEEK2}, {"deepseek_v3", MODEL_ARCH_DEEPSEEK2},
    };
    if (!s) return MODEL_ARCH_UNKNOWN;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name)) return names[i].arch;
    return MODEL_ARCH_UNKNOWN;
}

/* rope_scaling: {"type"|"rope_type": "yarn"|"linear"|"llama3"|"default", "factor": ..} */
static void read_rope_scaling(cfg_reader *r, const cJSON *root, model_hparams *hp) {
    const cJSON *rs = member(root, "rope_scaling");
    if (r->rc || !rs) return;
    if (!cJSON_IsObject(rs)) {
        bad_type(r, "", "rope_scaling", "an object or null", rs);
        return;
    }
    const char *type = get_str(r, rs, "rope_scaling.", "type");
    if (!type) type = get_str(r, rs, "rope_scaling.", "rope_type");
    if (r->rc) return;
    if (!type || !strcmp(type, "default")) return;
    if (!strcmp(type, "yarn")) {
        hp->rope_scaling_type = ROPE_SCALING_YARN;
        /* transformers' yarn defaults (DeepseekV2/V3 yarn_get_mscale callers) */
        hp->yarn_beta_fast = 32.0f;
        hp->yarn_beta_slow = 1.0f;
        hp->yarn_mscale = 1.0f;
        hp->yarn_mscale_all_dim = 0.0f;
    } else if (!strcmp(type, "linear")) {
        hp->rope_scaling_type = ROPE_SCALING_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        hp->rope_scaling_type = ROPE_SCALING_LLAMA3;
    } else {
        r->rc = err_set(r->err, WHALE_E_UNSUPPORTED,
                        "%s: rope_scaling type '%.40s' is not supported (Whale knows yarn, linear, "
                        "llama3)",
                        r->name, type);
        return;
    }
    get_f32(r, rs, "rope_scaling.", "factor", &hp->rope_factor);
    get_i64(r, rs, "rope_scaling.", "original_max_position_embeddings", &hp->rope_orig_ctx);
    if (hp->rope_scaling_type == ROPE_SCALING_LLAMA3) {
        get_f32(r, rs, "rope_scaling.", "low_freq_factor", &hp->rope_low_freq_factor);
        get_f32(r, rs, "rope_scaling.", "high_freq_factor", &hp->rope_high_freq_factor);
    }
    if (hp->rope_scaling_type == ROPE_SCALING_YARN) {
        get_f32(r, rs, "rope_scaling.", "beta_fast", &hp->yarn_beta_fast);
        get_f32(r, rs, "rope_scaling.", "beta_slow", &hp->yarn_beta_slow);
        get_f32(r, rs, "rope_scaling.", "mscale", &hp->yarn_mscale);
        get_f32(r, rs, "rope_scaling.", "mscale_all_dim", &hp->yarn_mscale_all_dim);
        /* what convert_hf_to_gguf.py writes as rope.scaling.yarn_log_multiplier */
        hp->yarn_log_multiplier = 0.1f * hp->yarn_mscale_all_dim;
    }
}

/* config.json's top-level numbers and the model_hparams field each one fills, read in this
 * order (the first bad one is the one reported). Nested and derived values (rope_scaling,
 * scoring_func, defaults) are read around this table. The GGUF side of the same fields is
 * formats/gguf_keys.c. */
typedef enum hf_key_kind { HF_KEY_I64, HF_KEY_F32, HF_KEY_BOOL, HF_KEY_ROPE_SCALING } hf_key_kind;
typedef struct hf_key {
    const char *key;
    size_t field; /* offsetof(model_hparams, ...) */
    hf_key_kind kind;
} hf_key;

#define F(field) offsetof(model_hparams, field)
static const hf_key hf_keys[] = {
    {"vocab_size", F(n_vocab), HF_KEY_I64},
    {"max_position_embeddings", F(n_ctx_train), HF_KEY_I64},
    {"hidden_size", F(n_embd), HF_KEY_I64},
    {"num_hidden_layers", F(n_layer), HF_KEY_I64},
    {"intermediate_size", F(n_ff), HF_KEY_I64},
    {"num_attention_heads", F(n_head), HF_KEY_I64},
    {"num_key_value_heads", F(n_head_kv), HF_KEY_I64},
    {"head_dim", F(head_dim), HF_KEY_I64},
    {"rms_norm_eps", F(rms_eps), HF_KEY_F32},
    {"rope_theta", F(rope_theta), HF_KEY_F32},
    {"tie_word_embeddings", F(tie_embeddings), HF_KEY_BOOL},
    {"attention_bias", F(attn_bias), HF_KEY_BOOL},
    {"rope_scaling", 0, HF_KEY_ROPE_SCALING},
    {"q_lora_rank", F(q_lora_rank), HF_KEY_I64},
    {"kv_lora_rank", F(kv_lora_rank), HF_KEY_I64},
    {"qk_nope_head_dim", F(qk_nope_head_dim), HF_KEY_I64},
    {"qk_rope_head_dim", F(qk_rope_head_dim), HF_KEY_I64},
    {"v_head_dim", F(v_head_dim), HF_KEY_I64},
    {"n_routed_experts", F(n_expert), HF_KEY_I64},
    {"num_experts_per_tok", F(n_expert_used), HF_KEY_I64},
    {"n_shared_experts", F(n_expert_shared), HF_KEY_I64},
    {"moe_intermediate_size", F(n_ff_expert), HF_KEY_I64},
    {"first_k_dense_replace", F(n_layer_dense_lead), HF_KEY_I64},
    {"n_group", F(n_expert_group), HF_KEY_I64},
    {"topk_group", F(n_group_used), HF_KEY_I64},
    {"routed_scaling_factor", F(expert_weights_scale), HF_KEY_F32},
    {"norm_topk_prob", F(expert_weights_norm), HF_KEY_BOOL},
    {"num_nextn_predict_layers", F(n_nextn_layer), HF_KEY_I64},
};
#undef F


static int map_config(model_hparams *hp, const cJSON *root, cfg_reader *r) {
    if (!cJSON_IsObject(root))
        return err_set(r->err, WHALE_E_FORMAT, "%s: not a JSON object (not a config.json?)", r->name);

    /* Architecture: architectures[0], else model_type. */
    const char *arch0 = NULL;
    const cJSON *archs = member(root, "architectures");
    if (archs) {
        if (!cJSON_IsArray(archs)) return bad_type(r, "", "architectures", "an array", archs);
        const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
        if (a0 && !cJSON_IsString(a0)) return bad_type(r, "", "architectures[0]", "a string", a0);
        if (a0) arch0 = a0->valuestring;
    }
    const char *model_type = get_str(r, root, "", "model_type");
    if (r->rc) return r->rc;
    hp->arch = arch_from_name(arch0);
    if (hp->arch == MODEL_ARCH_UNKNOWN) hp->arch = arch_from_name(model_type);
    copy_str(hp->arch_name, sizeof hp->arch_name, arch0 ? arch0 : model_type);
    copy_str(hp->name, sizeof hp->name, model_type ? model_type : arch0);
    int deepseek = hp->arch == MODEL_ARCH_DEEPSEEK2;

    /* Defaults of the transformers config classes for fields a file may leave out. */
    hp->rms_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    if (deepseek) {
        /* V3/R1 route with sigmoid scores; V2 with softmax (each config usually says so too). */
        int v3 = (arch0 && strstr(arch0, "V3")) || (model_type && strstr(model_type, "v3"));
        hp->gating = v3 ? MOE_GATING_SIGMOID : MOE_GATING_SOFTMAX;
        hp->expert_weights_scale = 1.0f;
    }

    for (size_t i = 0; i < sizeof hf_keys / sizeof hf_keys[0]; i++) {
        const hf_key *k = &hf_keys[i];
        void *field = (char *)hp + k->field;
        switch (k->kind) {
        case HF_KEY_I64: get_i64(r, root, "", k->key, (int64_t *)field); break;
        case HF_KEY_F32: get_f32(r, root, "", k->key, (float *)field); break;
        case HF_KEY_BOOL: get_bool(r, root, k->key, (int *)field); break;
        case HF_KEY_ROPE_SCALING: read_rope_scaling(r, root, hp); break;
        }
    }
    const char *scoring = get_str(r, root, "", "scoring_func");
    if (r->rc) return r->rc;
    if (scoring) {
        if (!strcmp(scoring, "softmax")) hp->gating = MOE_GATING_SOFTMAX;
        else if (!strcmp(scoring, "sigmoid")) hp->gating = MOE_GATING_SIGMOID;
        else
            return err_set(r->err, WHALE_E_UNSUPPORTED,
                           "%s: scoring_func '%.40s' is not supported (Whale knows softmax, sigmoid)",
                           r->name, scoring);
    }

    /* Derived values and the checks a forward pass relies on. */
    if (hp->arch == MODEL_ARCH_QWEN2) hp->attn_bias = 1; /* Qwen2 q/k/v always have biases */
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0)
        return err_set(r->err, WHALE_E_FORMAT,
                       "%s: hidden_size, num_hidden_layers and num_attention_heads must all be "
                       "present and positive (not a causal LM config?)",
                       r->name);
    if (!hp->n_head_kv) hp->n_head_kv = hp->n_head;
    if (hp->n_head % hp->n_head_kv != 0)
        return err_set(r->err, WHALE_E_FORMAT,
                       "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                       r->name, (long long)hp->n_head, (long long)hp->n_head_kv);
    if (!hp->head_dim) {
        /* DeepSeek's key heads are the non-rope part plus the rope part (128 + 64 = 192). */
        if (deepseek && hp->qk_nope_head_dim + hp->qk_rope_head_dim > 0)
            hp->head_dim = hp->qk_nope_head_dim + hp->qk_rope_head_dim;
        else
            hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->n_expert_used > hp->n_expert)
        return err_set(r->err, WHALE_E_FORMAT,
                       "%s: num_experts_per_tok %lld exceeds n_routed_experts %lld", r->name,
                       (long long)hp->n_expert_used, (long long)hp->n_expert);
    if (hp->n_group_used > hp->n_expert_group)
        return err_set(r->err, WHALE_E_FORMAT, "%s: topk_group %lld exceeds n_group %lld", r->name,
                       (long long)hp->n_group_used, (long long)hp->n_expert_group);
    if (!hp->n_expert) hp->gating = MOE_GATING_NONE;
    return 0;
}

int hf_config_parse(model_hparams *hp, const char *json, size_t len, const char *name,
                    whale_err *err) {
    memset(hp, 0, sizeof *hp);
    char *buf = malloc(len + 1);
    if (!buf) return err_set(err, WHALE_E_NOMEM, "%s: out of memory", name);
    if (len) memcpy(buf, json, len);
    buf[len] = 0;
    cJSON *root = len ? cJSON_ParseWithLength(buf, len) : NULL;
    free(buf);
    if (!root) return err_set(err, WHALE_E_FORMAT, "%s: not valid JSON", name);
    cfg_reader r = {name, err, 0};
    int rc = map_config(hp, root, &r);
    if (!rc) rc = r.rc;
    cJSON_Delete(root);
    if (rc) memset(hp, 0, sizeof *hp);
    return rc;
}

int hf_config_load(model_hparams *hp, const char *path, whale_err *err) {
    memset(hp, 0, sizeof *hp);
    mapfile f;
    int rc = mapfile_open(&f, path, err);
    if (rc) return rc;
    if (f.size > HF_CONFIG_MAX_BYTES) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: %zu bytes, over the %u MiB limit for a config.json",
                     path, f.size, HF_CONFIG_MAX_BYTES >> 20);
    } else {
        rc = hf_config_parse(hp, (const char *)f.data, f.size, path, err);
    }
    mapfile_close(&f);
    return rc;
}
