/* wtype.c — the weight types convert, quantize and synth write, and Q4_K_M's choice per tensor
 * (see convert.h). */
#include <string.h>
#include <strings.h>

#include "convert/convert.h"

/* general.file_type values from llama.cpp's LLAMA_FTYPE (the gguf package's LlamaFileType):
 * ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_Q4_K_S 14, MOSTLY_Q4_K_M 15, MOSTLY_Q6_K 18,
 * MOSTLY_BF16 32. Plain q4_k (every matrix Q4_K) is closest to Q4_K_S. */
static const convert_wtype wtypes[] = {
    {"f32", WHALE_DTYPE_F32, 0, 0},     {"f16", WHALE_DTYPE_F16, 0, 1},   {"bf16", WHALE_DTYPE_BF16, 0, 32},
    {"q8_0", WHALE_DTYPE_Q8_0, 0, 7},   {"q4_k", WHALE_DTYPE_Q4_K, 0, 14}, {"q6_k", WHALE_DTYPE_Q6_K, 0, 18},
    {"q4_k_m", WHALE_DTYPE_Q4_K, 1, 15},
};

const convert_wtype *convert_wtype_parse(const char *s) {
    for (size_t i = 0; i < sizeof wtypes / sizeof wtypes[0]; i++)
        if (!strcasecmp(s, wtypes[i].name)) return &wtypes[i];
    return NULL;
}

whale_dtype convert_wtype_for(const convert_wtype *t, const char *name) {
    if (t->mix && (strstr(name, "output.weight") || strstr(name, "attn_v.") || strstr(name, "ffn_down")))
        return WHALE_DTYPE_Q6_K;
    return t->type;
}

whale_dtype convert_fit_type(whale_dtype want, int64_t n_in) {
    if (n_in % dtype_get(want)->block_elems == 0) return want;
    return n_in % 32 == 0 ? WHALE_DTYPE_Q8_0 : WHALE_DTYPE_F16;
}
