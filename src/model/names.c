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
};
static const struct { const char *g, *hf; } global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

int model_name_to_hf(const char *g, char *out, size_t cap) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(g, global_names[i].g)) return snprintf(out, cap, "%s", global_names[i].hf) < (int)cap;
    int layer, used = 0;
    if (sscanf(g, "blk.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (!strcmp(g + used, layer_names[i].g))
                return snprintf(out, cap, "model.layers.%d.%s", layer, layer_names[i].hf) < (int)cap;
    return 0;
}

int model_name_from_hf(const char *hf, char *out, size_t cap) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(hf, global_names[i].hf)) return snprintf(out, cap, "%s", global_names[i].g) < (int)cap;
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (!strcmp(hf + used, layer_names[i].hf))
                return snprintf(out, cap, "blk.%d.%s", layer, layer_names[i].g) < (int)cap;
    return 0;
}
