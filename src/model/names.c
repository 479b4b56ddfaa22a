/* names.c — tensor names: GGUF's (llama.cpp's) naming, which Whale uses internally, and Hugging
 * Face's, both ways. */
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const struct { const char *g, *hf; } layer_names[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"}, {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.weight", "self_attn.k_proj.weight"}, {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.weight", "self_attn.v_proj.weight"}, {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"}, {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    /* DeepSeek V2/V3 (MLA + MoE) */
    {"attn_q_a.weight", "self_attn.q_a_proj.weight"},
    {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
    {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
    {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
    {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
    {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
    {"ffn_gate_inp.weight", "mlp.gate.weight"},
    {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
    {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
    {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"},
    /* DeepSeek-V3's MTP module (layer num_hidden_layers), as GGUF names the NextN tensors */
    {"nextn.eh_proj.weight", "eh_proj.weight"},
    {"nextn.enorm.weight", "enorm.weight"},
    {"nextn.hnorm.weight", "hnorm.weight"},
    {"nextn.shared_head_norm.weight", "shared_head.norm.weight"},
    {"nextn.shared_head_head.weight", "shared_head.head.weight"},
    {"nextn.embed_tokens.weight", "embed_tokens.weight"},
};
/* Routed experts: GGUF stacks them in one 3-D tensor per projection; Hugging Face stores one
 * matrix per expert. Internally one expert's matrix is named "blk.L.ffn_<p>_exp.E.weight". */
static const char *const expert_proj[] = {"gate", "up", "down"};
static const struct { const char *g, *hf; } global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

int model_name_to_hf(const char *g, char *out, size_t cap) {
    int l, e, used = 0;
    char proj[8];
    if (sscanf(g, "blk.%d.ffn_%4[a-z]_exp.%d.weight%n", &l, proj, &e, &used) == 3 && !g[used])
        for (size_t i = 0; i < 3; i++)
            if (!strcmp(proj, expert_proj[i]))
                return snprintf(out, cap, "model.layers.%d.mlp.experts.%d.%s_proj.weight", l, e, proj) < (int)cap;
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(g, global_names[i].g)) return snprintf(out, cap, "%s", global_names[i].hf) < (int)cap;
    int layer;
    used = 0;
    if (sscanf(g, "blk.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (!strcmp(g + used, layer_names[i].g))
                return snprintf(out, cap, "model.layers.%d.%s", layer, layer_names[i].hf) < (int)cap;
    return 0;
}

int model_name_from_hf(const char *hf, char *out, size_t cap) {
    int l, e, used = 0;
    char proj[8];
    if (sscanf(hf, "model.layers.%d.mlp.experts.%d.%4[a-z]_proj.weight%n", &l, &e, proj, &used) == 3 && !hf[used])
        for (size_t i = 0; i < 3; i++)
            if (!strcmp(proj, expert_proj[i]))
                return snprintf(out, cap, "blk.%d.ffn_%s_exp.%d.weight", l, proj, e) < (int)cap;
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(hf, global_names[i].hf)) return snprintf(out, cap, "%s", global_names[i].g) < (int)cap;
    int layer;
    used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (!strcmp(hf + used, layer_names[i].hf))
                return snprintf(out, cap, "blk.%d.%s", layer, layer_names[i].g) < (int)cap;
    return 0;
}
