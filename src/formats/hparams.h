/* hparams.h — one description of a model's hyperparameters, whichever file it came from.
 *
 * Filled from GGUF metadata (gguf_hparams.c: `<arch>.block_count`, ...) or from a Hugging Face
 * config.json (hf_config.c). Zero means "not present / not used" for every optional field.
 * Owns no memory. Field names follow the GGUF/llama.cpp vocabulary with HF names in comments. */
#ifndef WHALE_FORMATS_HPARAMS_H
#define WHALE_FORMATS_HPARAMS_H

#include <stdint.h>

typedef enum model_arch {
    MODEL_ARCH_UNKNOWN = 0,
    MODEL_ARCH_QWEN2,    /* R1-Distill-Qwen, Qwen2/2.5 */
    MODEL_ARCH_LLAMA,    /* R1-Distill-Llama, Llama 3 */
    MODEL_ARCH_DEEPSEEK2 /* DeepSeek-V2, V2-Lite, V3, R1 (GGUF "deepseek2") */
} model_arch;

typedef enum rope_scaling {
    ROPE_SCALING_NONE = 0,
    ROPE_SCALING_LINEAR,
    ROPE_SCALING_YARN,
    ROPE_SCALING_LLAMA3
} rope_scaling;

typedef enum moe_gating {
    MOE_GATING_NONE = 0,
    MOE_GATING_SOFTMAX, /* V2: scoring_func "softmax" */
    MOE_GATING_SIGMOID  /* V3/R1: scoring_func "sigmoid" with e_score_correction_bias */
} moe_gating;

typedef struct model_hparams {
    model_arch arch;
    char arch_name[32]; /* as written in the file: "qwen2", "deepseek2", "DeepseekV3ForCausalLM" */
    char name[128];     /* general.name or model_type, for display */

    int64_t n_vocab;     /* vocab_size */
    int64_t n_ctx_train; /* max_position_embeddings / <arch>.context_length */
    int64_t n_embd;      /* hidden_size */
    int64_t n_layer;     /* num_hidden_layers */
    int64_t n_ff;        /* intermediate_size (dense FFN) */
    int64_t n_head;      /* num_attention_heads */
    int64_t n_head_kv;   /* num_key_value_heads */
    int64_t head_dim;    /* per-head dim of keys (dense models): hidden_size / n_head unless given */
    float rms_eps;       /* rms_norm_eps */
    float rope_theta;    /* rope_theta / <arch>.rope.freq_base */
    int tie_embeddings;  /* tie_word_embeddings */
    int attn_bias;       /* q/k/v projections have biases (Qwen2) */

    rope_scaling rope_scaling_type;
    float rope_factor;            /* rope_scaling.factor */
    int64_t rope_orig_ctx;        /* rope_scaling.original_max_position_embeddings */
    float yarn_beta_fast;         /* rope_scaling.beta_fast */
    float yarn_beta_slow;         /* rope_scaling.beta_slow */
    float yarn_mscale;            /* rope_scaling.mscale */
    float yarn_mscale_all_dim;    /* rope_scaling.mscale_all_dim */
    float yarn_log_multiplier;    /* GGUF rope.scaling.yarn_log_multiplier (0.1*mscale_all_dim) */
    float rope_low_freq_factor;   /* rope_scaling.low_freq_factor (llama3) */
    float rope_high_freq_factor;  /* rope_scaling.high_freq_factor (llama3) */

    /* MLA (deepseek2) */
    int64_t q_lora_rank;      /* 0: no low-rank q path (V2-Lite) */
    int64_t kv_lora_rank;     /* latent width cached per token */
    int64_t qk_nope_head_dim; /* per-head non-rope part of q/k */
    int64_t qk_rope_head_dim; /* decoupled rope key width */
    int64_t v_head_dim;

    /* MoE (deepseek2) */
    int64_t n_expert;              /* n_routed_experts */
    int64_t n_expert_used;         /* num_experts_per_tok */
    int64_t n_expert_shared;       /* n_shared_experts */
    int64_t n_ff_expert;           /* moe_intermediate_size */
    int64_t n_layer_dense_lead;    /* first_k_dense_replace */
    int64_t n_expert_group;        /* n_group */
    int64_t n_group_used;          /* topk_group */
    float expert_weights_scale;    /* routed_scaling_factor */
    int expert_weights_norm;       /* norm_topk_prob */
    moe_gating gating;             /* scoring_func */
    int64_t n_nextn_layer;         /* num_nextn_predict_layers (MTP) */
} model_hparams;

const char *model_arch_name(model_arch a);

#endif
