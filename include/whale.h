/* whale.h — the public C API of Whale (libwhale).
 *
 * Run DeepSeek-family models from C: open a model, turn text into tokens and back, lay out a
 * conversation in the model's chat format, and generate through the engine — the same
 * continuous-batching engine `whale run`, `whale chat` and `whale serve` use, with its context
 * cache, JSON mode, reasoning budget, log probabilities and MTP speculation.
 *
 *     whale_model *m;  whale_engine *e;  whale_err err;
 *     whale_model_open(&m, "default", NULL, &err);
 *     whale_engine_new(&e, m, NULL, &err);
 *     ... whale_chat_apply(m, msgs, n, WHALE_CHAT_GENERATION_PROMPT, &ids, &err);
 *     ... whale_generate(e, &req, on_token, ctx, &res, &err);   (or whale_submit + whale_job_wait)
 *     whale_engine_free(e);  whale_model_close(m);
 *
 * Conventions.
 * - Every call that can fail returns 0 or a negative WHALE_E_* code and writes a message a user
 *   can act on into its whale_err (which may be NULL when the caller does not want it).
 * - Handles are opaque. Whoever opens or creates a handle frees it; strings and arrays passed in
 *   are borrowed for the call (copied when kept); returned strings are malloc'd and the caller
 *   frees them with free(), unless the comment says "owned by ...".
 * - Thread-safety: a whale_model is read-only once opened; every function taking a const
 *   whale_model * may run on any number of threads at once. A whale_engine's functions may be
 *   called from any thread at once (the engine has its own thread and lock); a whale_job belongs
 *   to the thread that submitted it, except whale_job_cancel, which any thread may call until
 *   the owner releases the job.
 * - Parameter structs: zero-filled means "the default" except where a *_default() function
 *   exists; call it, then change what you need.
 *
 * Library: libwhale.so.WHALE_SOVERSION (and libwhale.a); `pkg-config --cflags --libs whale`. */
#ifndef WHALE_H
#define WHALE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WHALE_VERSION "0.1.0"
#define WHALE_VERSION_MAJOR 0
#define WHALE_VERSION_MINOR 1
#define WHALE_VERSION_PATCH 0
/* The shared library's soname is libwhale.so.WHALE_SOVERSION: it changes when the ABI breaks. */
#define WHALE_SOVERSION 0

/* The library's version string at run time (may differ from WHALE_VERSION, the header's). */
const char *whale_version(void);

/* ---- errors --------------------------------------------------------------------------------- */

enum whale_status {
    WHALE_OK = 0,
    WHALE_E_IO = -1,          /* a file could not be opened, read or mapped */
    WHALE_E_FORMAT = -2,      /* bytes do not follow the format they claim */
    WHALE_E_NOMEM = -3,       /* an allocation failed */
    WHALE_E_ARG = -4,         /* the caller passed something invalid */
    WHALE_E_UNSUPPORTED = -5, /* valid, but not something Whale handles (yet) */
    WHALE_E_NOTFOUND = -6,    /* a named thing (tensor, key, token, model) is missing */
    WHALE_E_BUSY = -7,        /* no capacity now (queue full); try again later */
};

/* Room for one message: "<file>: <what>: <why> (<hint>)". */
#define WHALE_ERR_MAX 512

typedef struct whale_err {
    int code;
    char msg[WHALE_ERR_MAX];
} whale_err;

/* Short name of a status code ("format error", ...). Never NULL. Thread-safe. */
const char *whale_status_str(int code);

/* ---- models --------------------------------------------------------------------------------- */

typedef struct whale_model whale_model;

/* How a model's KV caches store their rows (whale_model_params.kv_type). */
enum {
    WHALE_KV_F32 = 0,  /* the default */
    WHALE_KV_F16 = 1,  /* half the memory, values rounded to 11 bits */
    WHALE_KV_BF16 = 2, /* half the memory, attention computed in bfloat16: faster with AVX512_BF16 */
    WHALE_KV_Q8 = 3    /* MLA (DeepSeek) latent caches only: int8 rows with per-row scales, a quarter
                          of the memory, attention in integers (AVX-512 VNNI) */
};

typedef struct whale_model_params {
    int n_threads; /* threads per engine or scoring call; 0: one per CPU */
    int kv_type;   /* WHALE_KV_F32, _F16, _BF16 or _Q8 */
    int progress;  /* draw a progress bar on stderr while the weights are read in */
    int vocab_only; /* load the vocabulary and chat template only (a .gguf's metadata, a
                       tokenizer.json, or a directory holding one): tokens and chat formats
                       work, engines and scoring do not; fast for tools and request parsing */
} whale_model_params;

/* Open a model: a .gguf file, a Hugging Face checkpoint (a directory with config.json and
 * *.safetensors, or one of its files), or "default" / NULL for $WHALE_HOME/models/default.gguf
 * (WHALE_HOME defaults to ~/.cache/whale). p may be NULL (defaults). */
int whale_model_open(whale_model **out, const char *path, const whale_model_params *p, whale_err *err);
/* After every engine made from it is freed. NULL is fine. */
void whale_model_close(whale_model *m);

/* Apply a LoRA adapter in Hugging Face PEFT's layout (a directory holding adapter_config.json
 * and adapter_model.safetensors, or one of those files) to an opened model: every matrix it
 * names computes W x + scale * B (A x), scale = lora_alpha / r (alpha / sqrt(r) with
 * use_rslora), the base weights kept as they are. Dense models (Qwen2, Llama: q/k/v/o_proj,
 * gate/up/down_proj); DeepSeek models are refused for now (WHALE_E_UNSUPPORTED). Call before
 * any engine or scoring call is made from m; one adapter per model. The context cache keeps
 * an adapted model's blocks apart from the base's. Returns 0, or a negative status with a
 * message naming the file and what is wrong (a module Whale does not know, a shape that
 * differs from the model's, a rank out of range, bad JSON, a missing matrix).
 * Added in 0.1 without an ABI change: a function, not a field of whale_model_params. */
int whale_model_lora(whale_model *m, const char *path, whale_err *err);
/* The path of the adapter applied with whale_model_lora, or NULL; owned by the model. */
const char *whale_model_lora_path(const whale_model *m);

typedef struct whale_model_info {
    const char *path;        /* as opened (resolved "default"); owned by the model */
    const char *name;        /* the model's own name, or "" */
    const char *arch;        /* "qwen2", "llama", "deepseek2", ... */
    const char *chat_format; /* "deepseek-r1", "chatml", or NULL: none known */
    int64_t n_vocab, n_embd, n_layer;
    int64_t n_ctx_train;     /* the context the model was trained for (0: unknown) */
    int has_tokenizer;       /* 0: the model computes from token ids only */
    int has_mtp;             /* a DeepSeek-V3 multi-token prediction module was loaded */
    int reasoning;           /* replies start inside <think> (R1's chat format) */
} whale_model_info;
void whale_model_info_get(const whale_model *m, whale_model_info *out);

/* ---- tokens --------------------------------------------------------------------------------- */

/* A growable list of token ids; zero-filled is empty. Functions that produce ids append. */
typedef struct whale_ids {
    int32_t *v;
    size_t n, cap;
} whale_ids;
void whale_ids_free(whale_ids *ids);
int whale_ids_push(whale_ids *ids, int32_t id); /* 0 or WHALE_E_NOMEM */

enum {
    WHALE_TOK_SPECIAL = 1, /* recognize special tokens' spellings ("<|im_end|>") in the text */
    WHALE_TOK_ADD_BOS = 2, /* start with the vocabulary's BOS token, if it has one */
};
/* Append the ids of text[0..len) (UTF-8). WHALE_E_ARG for invalid UTF-8, WHALE_E_UNSUPPORTED
 * for a model without a tokenizer. */
int whale_tokenize(const whale_model *m, const char *text, size_t len, int flags, whale_ids *out, whale_err *err);
/* The text of ids, malloc'd and NUL-terminated (*len bytes; len may be NULL). NULL on OOM or
 * without a tokenizer. */
char *whale_detokenize(const whale_model *m, const int32_t *ids, size_t n, size_t *len);
/* The bytes one token stands for: writes up to cap bytes, returns the full length, -1 for an
 * invalid id. */
int whale_token_bytes(const whale_model *m, int32_t id, char *buf, size_t cap);
/* 1 when id ends a turn (end of sequence, or another control token such as <|im_end|>). */
int whale_token_is_end(const whale_model *m, int32_t id);
/* The id of a special or added token by its exact text ("<think>", "<|fim_prefix|>"), or -1. */
int32_t whale_token_find(const whale_model *m, const char *text);

/* Streaming text: feed generated ids, receive text split into reasoning (between <think> and
 * </think>, newlines around the tags trimmed as DeepSeek's API does) and answer; only ever
 * valid UTF-8 without NUL bytes (a byte the model emits that is not part of a character
 * becomes U+FFFD), whole characters, end-of-turn tokens left out. Not thread-safe: one per reply. */
typedef enum whale_text_kind { WHALE_TEXT_THINK = 0, WHALE_TEXT_ANSWER = 1 } whale_text_kind;
typedef void (*whale_text_sink)(void *ctx, whale_text_kind kind, const char *text, size_t n);
typedef struct whale_text whale_text;
enum {
    WHALE_TEXT_START_IN_THINK = 1, /* the prompt ended inside <think> (R1's generation prompt) */
    WHALE_TEXT_PLAIN = 2,          /* no split: everything is answer (plain completions) */
};
/* flags: WHALE_TEXT_*. NULL on OOM. */
whale_text *whale_text_new(const whale_model *m, int flags, whale_text_sink sink, void *ctx);
void whale_text_feed(whale_text *t, const int32_t *ids, size_t n);
int whale_text_in_think(const whale_text *t); /* inside the reasoning now */
void whale_text_end(whale_text *t);           /* end of the reply: emit what is held back */
void whale_text_free(whale_text *t);

/* ---- chat format ---------------------------------------------------------------------------- */

enum whale_role { WHALE_ROLE_SYSTEM = 0, WHALE_ROLE_USER, WHALE_ROLE_ASSISTANT, WHALE_ROLE_TOOL };

typedef struct whale_msg {
    int role;            /* enum whale_role */
    const char *content; /* UTF-8 */
    /* an assistant's function calls, each the JSON text {"name": ..., "arguments": {...}} */
    const char *const *tool_calls;
    size_t n_tool_calls;
} whale_msg;

enum {
    WHALE_CHAT_GENERATION_PROMPT = 1, /* end with the assistant's opening: the model answers next */
    WHALE_CHAT_NO_FORCED_THINK = 2,   /* reasoning formats: leave out the "<think>\n" that forces it */
};
/* Append the conversation laid out in a chat format (format NULL: the model's; or "chatml",
 * "chatml-think", "deepseek-r1") as token ids. tools: JSON texts of function tools (NULL/0: none). Message text
 * is always plain text: a message cannot forge a turn marker. WHALE_E_UNSUPPORTED when there
 * is no such format for the model, or it has no tools section. */
int whale_chat_apply(const whale_model *m, const char *format, const whale_msg *msgs, size_t n,
                     const char *const *tools, size_t n_tools, int flags, whale_ids *out, whale_err *err);
/* The chat format whale_chat_apply would use ("chatml", "chatml-think", "deepseek-r1"), or
 * NULL: none. */
const char *whale_chat_format(const whale_model *m, const char *format);
/* Whether a format (a name whale_chat_format gives) opens the reply inside <think>: a
 * reasoning model's ("deepseek-r1", "chatml-think"). 0 for NULL or an unknown name. */
int whale_chat_format_thinks(const char *format);
/* A Jinja chat template Whale writes for a format into the models it makes (whale merge
 * --chat-format): "chatml-think" only; NULL for other names. Static. */
const char *whale_chat_template(const char *format);

/* ---- the engine ----------------------------------------------------------------------------- */

typedef struct whale_engine whale_engine;

/* Speculative decoding: a drafter guesses the next tokens and the model verifies them in one
 * batched pass. Greedy requests get exactly plain decoding's tokens; sampled ones keep a guess
 * with the probability the sampling gives it, so their tokens keep plain sampling's distribution
 * (a seed gives another sequence than without speculation). JSON mode and tool calls decode
 * without guesses. MTP: DeepSeek-V3's own module; LOOKUP: the continuation of the last earlier
 * occurrence of the latest tokens in the prompt and reply (free; pays on quoting and editing);
 * DRAFT: a smaller model with the same vocabulary (whale_engine_params.draft). */
enum whale_speculative { WHALE_SPEC_NONE = 0, WHALE_SPEC_MTP = 1, WHALE_SPEC_LOOKUP = 2, WHALE_SPEC_DRAFT = 3 };

typedef struct whale_engine_params {
    int n_parallel;          /* sequences decoding at once; 0: 1 */
    int64_t n_ctx;           /* tokens per sequence (prompt + reply); 0: the model's, at most 4096;
                                more than the model was trained for is capped to that */
    int max_queue;           /* requests waiting beyond which whale_submit says WHALE_E_BUSY; 0: 64 */
    int max_queue_per_owner; /* of those, at most this many from one owner; 0: no such limit */
    int64_t chunk;           /* prompt tokens computed per step over all sequences; 0: 256 */
    /* The context cache (prompts' computed blocks of 64 tokens kept in memory and on disk):
     * cache 0 turns it off. Budgets in bytes per tier (default 1 GiB in memory, 8 GiB on disk; 0:
     * no such tier); cache_dir NULL: $WHALE_HOME/kv-cache ("": no disk tier). Kept per owner
     * (whale_request.owner): a prompt is a cache hit only for the owner who computed it. The
     * directory holds a secret key (cache.key, mode 0600, made on first use) the blocks are
     * named and checked with; its files hold no token ids. */
    int cache;
    size_t cache_ram, cache_disk;
    const char *cache_dir;
    int speculative;         /* enum whale_speculative */
    whale_model *draft;      /* WHALE_SPEC_DRAFT: the draft model (must outlive the engine) */
    int draft_max;           /* guesses per sequence per step (1..16); 0: the mode's default
                                (MTP 1, lookup 7, a draft model 4) */
} whale_engine_params;
/* The defaults above (the cache on, with its budgets); other fields 0. */
void whale_engine_params_default(whale_engine_params *p);

/* Start an engine (its own thread) over a model. p NULL: defaults. */
int whale_engine_new(whale_engine **out, whale_model *m, const whale_engine_params *p, whale_err *err);
/* Stops the thread; every job must have been released first. NULL is fine. */
void whale_engine_free(whale_engine *e);
int64_t whale_engine_n_ctx(const whale_engine *e);
/* What the engine started without (e.g. the disk cache's folder was unusable), or NULL. */
const char *whale_engine_warning(const whale_engine *e);

typedef struct whale_sampling {
    float temperature;       /* 0: greedy */
    int32_t top_k;           /* 0: off */
    float top_p;             /* 1: off */
    float min_p;             /* 0: off */
    float repeat_penalty;    /* 1: off */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    int32_t penalty_last_n;  /* tokens the penalties look back at (-1: all) */
    uint64_t seed;           /* WHALE_SEED_RANDOM: from the clock */
} whale_sampling;
#define WHALE_SEED_RANDOM UINT64_MAX

#define WHALE_MAX_TOP_LOGPROBS 20

typedef struct whale_request {
    const int32_t *prompt; /* copied by whale_submit */
    size_t n_prompt;
    whale_sampling sampling;
    int64_t max_tokens;       /* 0: until the end of the turn or a full context */
    int64_t reasoning_budget; /* R1: after this many tokens of reasoning, close it (</think>) and
                                 answer; -1: no budget (whale_request_default; 0 closes at once) */
    int json_mode;            /* the answer is kept a valid JSON object */
    int start_in_think;       /* the prompt ends inside <think> (JSON mode starts after it) */
    int tool_calls;           /* tools offered: keep <tool_call> bodies JSON; */
    int tool_force;           /* 1: a call is required, 2: a call of tool_name */
    const char *tool_name;
    int logprobs;             /* record each token's log probability, and */
    int top_logprobs;         /* this many best alternatives (0..WHALE_MAX_TOP_LOGPROBS) */
    int64_t owner;            /* who asks (a user id; 0: nobody in particular): admission is fair
                                 between owners, and cached prompts are reused only for the same
                                 owner (one user's cache hits say nothing about another's prompts) */
} whale_request;
/* DeepSeek's recommended sampling for R1 (temperature 0.6, top-p 0.95), no budget, owner 0. */
void whale_request_default(whale_request *r);

typedef struct whale_job whale_job;
/* Queue a request. WHALE_E_BUSY (queue full), WHALE_E_ARG (empty, a token outside the
 * vocabulary, or not shorter than a sequence: n_prompt >= whale_engine_n_ctx),
 * WHALE_E_UNSUPPORTED (JSON mode or tools on a model without a tokenizer). */
int whale_submit(whale_engine *e, const whale_request *r, whale_job **out, whale_err *err);
/* Wait up to timeout_ms for generated ids after the first `have`: copies up to cap into out and
 * returns how many (0 on timeout). *done is set once the job has ended and every id is out. */
size_t whale_job_wait(whale_job *j, size_t have, int32_t *out, size_t cap, int timeout_ms, int *done);
/* Log probabilities of generated token i (the model's distribution before sampling settings and
 * constraints): *lp for the token, the best alternatives into ids/lps (room for
 * WHALE_MAX_TOP_LOGPROBS). Returns how many alternatives, or -1 when not recorded. */
int whale_job_logprobs(whale_job *j, size_t i, float *lp, int32_t *ids, float *lps);
/* Stop generating; safe from any thread, also after the end, until whale_job_release. */
void whale_job_cancel(whale_job *j);

typedef struct whale_result {
    const char *finish;     /* "stop", "length", "cancelled", "error"; "running" before the end; static */
    size_t n_prompt;        /* prompt tokens, of which */
    size_t n_cached;        /* came from the cache: not computed (DeepSeek's cache hits) */
    size_t n_gen;           /* tokens generated */
    double t_queue;         /* seconds waiting for a free sequence */
    double t_first;         /* seconds from submitting to the first generated token */
    uint64_t drafted, accepted; /* speculation: drafts verified and drafts kept */
    size_t n_prompt_done;   /* prompt tokens in the sequence when it ended, cached or computed: all of
                               them once a token was generated, none for a job cancelled while
                               queued, part for one cancelled mid-prompt (the rest never computed) */
} whale_result;
void whale_job_result(whale_job *j, whale_result *out);
/* Let go of the job (cancels it if it still runs). */
void whale_job_release(whale_job *j);

/* Submit, wait and release in one call: on_token(ctx, id) for each generated id in order (return
 * nonzero to stop), then *res. Blocks the calling thread; other threads may use the engine
 * meanwhile. */
typedef int (*whale_token_cb)(void *ctx, int32_t id);
int whale_generate(whale_engine *e, const whale_request *r, whale_token_cb on_token, void *ctx, whale_result *res,
                   whale_err *err);

/* Cancel every waiting and running job (shutting down). */
void whale_engine_cancel_all(whale_engine *e);

/* Forget everything the engine's caches keep for an owner (whale_request.owner), e.g. when a
 * user's account is deleted: its context cache blocks in memory, its files in the engine's
 * cache directory (for every model using that directory) and the rows its last requests left
 * in the engine's sequences. Thread-safe: any thread, while the engine runs; returns once done
 * (between two steps of the engine). The owner's jobs already submitted, running or waiting,
 * end as usual but leave nothing in the caches; jobs submitted after the call are cached
 * again, so stop taking the owner's requests first. Returns 0, or WHALE_E_IO when files could
 * not be removed (the rest is done; calling again retries), WHALE_E_ARG while the engine is
 * being freed. */
int whale_engine_purge_owner(whale_engine *e, int64_t owner, whale_err *err);

/* The same for a context cache directory alone, for a process without a running engine over it
 * (`whale admin` deleting a user while a server runs separately): removes the owner's files of
 * every model in cache_dir (NULL: $WHALE_HOME/kv-cache, as whale_engine_params.cache_dir; "":
 * nothing to do), found with the directory's key, and files of the layout before owners
 * existed (their owner is unknown). An engine running over the directory still holds what it
 * keeps in memory: call whale_engine_purge_owner in that process too. Thread-safe (touches no
 * engine). Returns 0, also when the directory or its key does not exist (nothing was kept);
 * WHALE_E_IO, or WHALE_E_FORMAT for a damaged key file. */
int whale_cache_purge_owner(const char *cache_dir, int64_t owner, whale_err *err);

typedef struct whale_stats {
    int active, waiting, n_parallel;
    uint64_t tokens_generated, prompt_tokens, cached_tokens, steps;
    int64_t kv_tokens;         /* tokens held in the sequences' caches */
    int64_t kv_pages_used, kv_pages; /* KV pages (64 positions, every layer) in use, and in all;
                                        sequences with a common prefix share its pages */
    size_t kv_page_bytes;
    uint64_t cache_ram_blocks, cache_disk_blocks, cache_ram_bytes, cache_disk_bytes;
    uint64_t cache_hits_ram, cache_hits_disk;
    uint64_t drafted, accepted; /* speculation: drafts verified and kept, */
    uint64_t spec_steps;        /* over this many sequence-steps that verified drafts */
    const char *drafter;        /* "mtp", "lookup", "model", or NULL: none (static) */
} whale_stats;
void whale_engine_stats(whale_engine *e, whale_stats *out);

/* ---- scoring -------------------------------------------------------------------------------- */

/* Teacher forcing: the log probability of each given token under the model, out[i - from] =
 * log p(ids[i] | ids[0..i)) for i in [from, n), from >= 1. Blocks the calling thread; each call
 * makes its own cache and worker pool (whale_model_params.n_threads threads), so several calls
 * at once, or beside an engine, share the cores between their pools. */
int whale_score(const whale_model *m, const int32_t *ids, size_t n, size_t from, float *out, whale_err *err);

/* ---- files ---------------------------------------------------------------------------------- */

/* $WHALE_HOME/<sub> (WHALE_HOME: ~/.cache/whale unless set) into buf; returns buf. */
const char *whale_home_path(const char *sub, char *buf, size_t cap);
/* What a model argument names, as a path into buf: NULL or "default" is the default model; a
 * catalog name or alias (`whale list`, `whale show NAME`) is its pulled file; a name registered
 * with `whale pull PATH --name N` is its path; anything else is a path. WHALE_E_NOTFOUND with a
 * message saying what to do for a name not pulled yet, or a word that names nothing.
 * whale_model_open resolves its path argument this way. */
int whale_model_resolve(const char *name, char *buf, size_t cap, whale_err *err);

#ifdef __cplusplus
}
#endif

#endif
