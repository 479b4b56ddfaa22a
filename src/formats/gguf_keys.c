/* gguf_keys.c — the `<arch>.*` key table (see gguf_keys.h) and the loops that read and write
 * model_hparams through it. Key names as llama.cpp's converters write them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "formats/gguf_keys.h"

/* "<arch>." + the longest key above, with room to spare. */
#define GGUF_KEY_MAX 160

#define F(field) offsetof(model_hparams, field)
const gguf_key gguf_keys[] = {
    {"context_length", F(n_ctx_train), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"embedding_length", F(n_embd), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"block_count", F(n_layer), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS}, /* + MTP modules */
    {"nextn_predict_layers", F(n_nextn_layer), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_IF_SET},
    {"feed_forward_length", F(n_ff), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"attention.head_count", F(n_head), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"attention.head_count_kv", F(n_head_kv), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"attention.key_length", F(head_dim), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"attention.value_length", F(v_head_dim), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"rope.dimension_count", F(qk_rope_head_dim), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"attention.q_lora_rank", F(q_lora_rank), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_IF_SET},
    {"attention.kv_lora_rank", F(kv_lora_rank), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_count", F(n_expert), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_used_count", F(n_expert_used), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_shared_count", F(n_expert_shared), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_feed_forward_length", F(n_ff_expert), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"leading_dense_block_count", F(n_layer_dense_lead), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_group_count", F(n_expert_group), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_group_used_count", F(n_group_used), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_weights_scale", F(expert_weights_scale), GGUF_KEY_F32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_weights_norm", F(expert_weights_norm), GGUF_KEY_BOOL, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"expert_gating_func", F(gating), GGUF_KEY_GATING, GGUF_KEY_DEEPSEEK2, GGUF_KEY_ALWAYS},
    {"rope.scaling.type", F(rope_scaling_type), GGUF_KEY_ROPE_TYPE, GGUF_KEY_DEEPSEEK2, GGUF_KEY_IF_YARN},
    {"rope.scaling.factor", F(rope_factor), GGUF_KEY_F32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_IF_YARN},
    {"rope.scaling.original_context_length", F(rope_orig_ctx), GGUF_KEY_U32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_IF_YARN},
    {"rope.scaling.yarn_log_multiplier", F(yarn_log_multiplier), GGUF_KEY_F32, GGUF_KEY_DEEPSEEK2, GGUF_KEY_IF_YARN},
    {"vocab_size", F(n_vocab), GGUF_KEY_U32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"attention.layer_norm_rms_epsilon", F(rms_eps), GGUF_KEY_F32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
    {"rope.freq_base", F(rope_theta), GGUF_KEY_F32, GGUF_KEY_ALL, GGUF_KEY_ALWAYS},
};
#undef F
const size_t gguf_n_keys = sizeof gguf_keys / sizeof gguf_keys[0];

int gguf_keys_read(model_hparams *hp, const gguf_file *f, const char *arch, whale_err *err) {
    for (size_t i = 0; i < gguf_n_keys; i++) {
        const gguf_key *k = &gguf_keys[i];
        char key[GGUF_KEY_MAX];
        snprintf(key, sizeof key, "%s.%s", arch, k->key);
        void *p = (char *)hp + k->field;
        int64_t v = 0;
        int rc = 0;
        gguf_str s;
        switch (k->kind) {
        case GGUF_KEY_U32: rc = gguf_get_i64(f, key, (int64_t *)p, err); break;
        case GGUF_KEY_F32: rc = gguf_get_f32(f, key, (float *)p, err); break;
        case GGUF_KEY_BOOL:
            if (!gguf_get_i64(f, key, &v, NULL)) *(int *)p = v != 0;
            break;
        case GGUF_KEY_GATING: /* 0 or absent: left for the reader's default (V2 files carry none) */
            if (!gguf_get_i64(f, key, &v, NULL) && v) *(moe_gating *)p = v == 2 ? MOE_GATING_SIGMOID : MOE_GATING_SOFTMAX;
            break;
        case GGUF_KEY_ROPE_TYPE:
            if (!gguf_get_str(f, key, &s, NULL)) {
                if (s.n == 4 && !memcmp(s.s, "yarn", 4)) *(rope_scaling *)p = ROPE_SCALING_YARN;
                else if (s.n == 6 && !memcmp(s.s, "linear", 6)) *(rope_scaling *)p = ROPE_SCALING_LINEAR;
            }
            break;
        }
        if (rc && rc != WHALE_E_NOTFOUND) return rc;
    }
    return 0;
}

/* hp as the file stores it: the inverse of gguf_hparams.c's fixups. */
static model_hparams as_stored(const model_hparams *hp) {
    model_hparams s = *hp;
    s.n_layer = hp->n_layer + hp->n_nextn_layer; /* MTP modules follow the main layers */
    if (hp->arch == MODEL_ARCH_DEEPSEEK2) {
        s.head_dim = hp->qk_nope_head_dim + hp->qk_rope_head_dim;
    } else {
        s.v_head_dim = hp->head_dim;
        s.qk_rope_head_dim = hp->head_dim;
    }
    if (!(s.rope_theta > 0)) s.rope_theta = 10000.0f;
    s.yarn_log_multiplier = 0.1f * hp->yarn_mscale_all_dim; /* llama.cpp's converters' convention */
    return s;
}

int gguf_keys_write(gguf_writer *w, const model_hparams *hp) {
    unsigned mask = hp->arch == MODEL_ARCH_DEEPSEEK2 ? GGUF_KEY_DEEPSEEK2
                    : hp->arch == MODEL_ARCH_QWEN2 || hp->arch == MODEL_ARCH_LLAMA ? GGUF_KEY_DENSE : 0;
    if (!mask) return WHALE_E_ARG;
    const char *a = model_arch_name(hp->arch);
    model_hparams s = as_stored(hp);
    int rc = gguf_writer_add_str(w, "general.architecture", a);
    if (!rc) rc = gguf_writer_add_str(w, "general.name", hp->name[0] ? hp->name : a);
    if (!rc) rc = gguf_writer_add_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT);
    for (size_t i = 0; i < gguf_n_keys && !rc; i++) {
        const gguf_key *k = &gguf_keys[i];
        const void *p = (const char *)&s + k->field;
        if (!(k->archs & mask)) continue;
        if (k->when == GGUF_KEY_IF_YARN && s.rope_scaling_type != ROPE_SCALING_YARN) continue;
        if (k->when == GGUF_KEY_IF_SET && k->kind == GGUF_KEY_U32 && *(const int64_t *)p <= 0) continue;
        char key[GGUF_KEY_MAX];
        snprintf(key, sizeof key, "%s.%s", a, k->key);
        switch (k->kind) {
        case GGUF_KEY_U32: rc = gguf_writer_add_u32(w, key, (uint32_t)*(const int64_t *)p); break;
        case GGUF_KEY_F32: rc = gguf_writer_add_f32(w, key, *(const float *)p); break;
        case GGUF_KEY_BOOL: rc = gguf_writer_add_bool(w, key, *(const int *)p); break;
        case GGUF_KEY_GATING:
            rc = gguf_writer_add_u32(w, key, *(const moe_gating *)p == MOE_GATING_SIGMOID ? 2 : 1);
            break;
        case GGUF_KEY_ROPE_TYPE:
            rc = gguf_writer_add_str(w, key, *(const rope_scaling *)p == ROPE_SCALING_YARN ? "yarn" : "linear");
            break;
        }
    }
    return rc ? WHALE_E_NOMEM : 0;
}
