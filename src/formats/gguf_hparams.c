/* gguf_hparams.c — model_hparams from GGUF metadata (`<arch>.*` keys as llama.cpp's
 * converters write them, for qwen2, llama and deepseek2). The keys that map onto a field are
 * read through the one table in gguf_keys.c (which the writers use too); this file owns the
 * fixups after it: defaults, YaRN's derived numbers, the deepseek2 MLA/MTP conventions. */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "formats/gguf_hparams.h"
#include "formats/gguf_keys.h"

/* The keys that only adjust fields the table filled (YaRN betas, llama.cpp's MLA sizes): an
 * absent key leaves *out as it was. */
static int get_i(const gguf_file *f, const char *arch, const char *key, int64_t *out, whale_err *err) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int rc = gguf_get_i64(f, k, out, err);
    return rc == WHALE_E_NOTFOUND ? 0 : rc;
}
static int get_f(const gguf_file *f, const char *arch, const char *key, float *out, whale_err *err) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int rc = gguf_get_f32(f, k, out, err);
    return rc == WHALE_E_NOTFOUND ? 0 : rc;
}

int gguf_hparams_load(model_hparams *hp, const gguf_file *f, whale_err *err) {
    memset(hp, 0, sizeof *hp);
    gguf_str a;
    int rc = gguf_get_str(f, "general.architecture", &a, err);
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "general.architecture is missing");
    if (rc) return rc;
    snprintf(hp->arch_name, sizeof hp->arch_name, "%.*s", (int)(a.n < 31 ? a.n : 31), a.s);
    const char *arch = hp->arch_name;
    if (!strcmp(arch, "qwen2")) hp->arch = MODEL_ARCH_QWEN2;
    else if (!strcmp(arch, "llama")) hp->arch = MODEL_ARCH_LLAMA;
    else if (!strcmp(arch, "deepseek2")) hp->arch = MODEL_ARCH_DEEPSEEK2;
    gguf_str name;
    if (!gguf_get_str(f, "general.name", &name, NULL))
        snprintf(hp->name, sizeof hp->name, "%.*s", (int)(name.n < 127 ? name.n : 127), name.s);

    if ((rc = gguf_keys_read(hp, f, arch, err))) return rc;
    if (!hp->gating && hp->n_expert) hp->gating = MOE_GATING_SOFTMAX; /* older deepseek2 files (V2) carry no gating key */
    if (hp->rope_scaling_type == ROPE_SCALING_YARN) {
        /* llama.cpp's converters store 0.1 * mscale_all_dim as yarn_log_multiplier and leave the
         * betas at YaRN's defaults. */
        if (hp->yarn_log_multiplier > 0) hp->yarn_mscale_all_dim = hp->yarn_mscale = hp->yarn_log_multiplier / 0.1f;
        float bf = 0, bs = 0;
        if (!get_f(f, arch, "rope.scaling.yarn_beta_fast", &bf, NULL) && bf > 0) hp->yarn_beta_fast = bf;
        if (!get_f(f, arch, "rope.scaling.yarn_beta_slow", &bs, NULL) && bs > 0) hp->yarn_beta_slow = bs;
        if (!hp->yarn_beta_fast) hp->yarn_beta_fast = 32;
        if (!hp->yarn_beta_slow) hp->yarn_beta_slow = 1;
    }
    if (hp->arch == MODEL_ARCH_DEEPSEEK2) {
        /* llama.cpp's newer deepseek2 files describe attention as the absorbed MQA it runs
         * (key_length = kv_lora_rank + rope, value_length = kv_lora_rank, one KV head) and move
         * the per-head sizes to key_length_mla / value_length_mla. */
        int64_t klm = 0, vlm = 0;
        if (!get_i(f, arch, "attention.key_length_mla", &klm, NULL) && klm > 0) {
            hp->head_dim = klm;
            hp->n_head_kv = hp->n_head;
            if (!get_i(f, arch, "attention.value_length_mla", &vlm, NULL) && vlm > 0) hp->v_head_dim = vlm;
        }
        if (hp->head_dim > hp->qk_rope_head_dim && hp->qk_rope_head_dim)
            hp->qk_nope_head_dim = hp->head_dim - hp->qk_rope_head_dim; /* key_length = nope + rope */
        /* MTP modules, as GGUF stores them (GLM-4.5's convention, which llama.cpp reads): counted
         * in block_count, after the main layers, with blk.N.nextn.* tensors. Whale's n_layer
         * counts the main layers only. */
        if (hp->n_nextn_layer > 0 && hp->n_nextn_layer < hp->n_layer) {
            char t[96];
            snprintf(t, sizeof t, "blk.%lld.nextn.eh_proj.weight", (long long)(hp->n_layer - hp->n_nextn_layer));
            if (gguf_find_tensor(f, t)) hp->n_layer -= hp->n_nextn_layer;
            else hp->n_nextn_layer = 0; /* declared but not stored: the file has no MTP module */
        }
    }
    if (!hp->n_head_kv) hp->n_head_kv = hp->n_head;
    if (!hp->head_dim && hp->n_head) hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->arch == MODEL_ARCH_QWEN2) hp->attn_bias = 1;
    if (!hp->n_vocab) {
        const gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
        if (tok && tok->type == GGUF_TYPE_ARRAY) hp->n_vocab = (int64_t)tok->arr_n;
    }
    hp->tie_embeddings = gguf_find_tensor(f, "output.weight") == NULL && gguf_find_tensor(f, "token_embd.weight") != NULL;
    return 0;
}
