/* tokenizer.h — byte-level BPE tokenizers of the DeepSeek family (DeepSeek LLM/V2, Coder,
 * V3/R1) and of the R1-Distill bases (Qwen2, Llama 3), loaded from GGUF metadata or from a
 * Hugging Face tokenizer.json, producing exactly the ids Hugging Face `tokenizers` produces.
 *
 * Plain text and special tokens: tokenizer_encode without TOK_PARSE_SPECIAL treats every byte
 * as text, so a user who types "<｜User｜>" gets the ids of those characters, never the turn
 * marker. Only code that formats a conversation passes TOK_PARSE_SPECIAL (or appends special
 * ids directly).
 * Owns: vocabulary, merges, special-token table, encode, decode, streaming decode. */
#ifndef WHALE_TOKENIZER_H
#define WHALE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"
#include "whale.h"

typedef struct tokenizer tokenizer;

enum tok_attr {
    TOK_NORMAL = 1,  /* a BPE vocabulary entry (byte-level text) */
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3, /* special: BOS/EOS, <｜User｜> in V3, ...; text stored literally */
    TOK_USER = 4,    /* added but not special (e.g. <think> in R1-Distill); text literal */
    TOK_UNUSED = 5,
    TOK_BYTE = 6,
};

enum {
    TOK_PARSE_SPECIAL = 1, /* recognize added/special tokens' spellings in the text */
    TOK_ADD_BOS = 2,       /* prepend BOS (if the vocabulary has one) */
};

/* A growable id list: the public whale_ids. */
typedef whale_ids tok_ids;
void tok_ids_free(tok_ids *ids);
/* Append one id. Returns 0 or WHALE_E_NOMEM. */
int tok_ids_push(tok_ids *ids, int32_t id);

/* Load from an open GGUF file's tokenizer.ggml.* metadata (model "gpt2"). */
int tokenizer_load_gguf(tokenizer **out, const gguf_file *f, whale_err *err);
/* Load from a tokenizer.json (BPE model). A tokenizer_config.json beside it, if present,
 * names BOS/EOS. */
int tokenizer_load_json(tokenizer **out, const char *path, whale_err *err);
void tokenizer_free(tokenizer *t);

/* Encode text[0..n) (must be valid UTF-8) and append ids to out.
 * Returns 0, WHALE_E_ARG for invalid UTF-8 (message names the byte offset), WHALE_E_NOMEM. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t n, int flags, tok_ids *out,
                     whale_err *err);

int64_t tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t); /* -1 if none */
int32_t tokenizer_eos(const tokenizer *t);
int tokenizer_attr(const tokenizer *t, int32_t id);
/* 1 when id ends a turn: the vocabulary's EOS or any other control token (<|im_end|>,
 * <|endoftext|>, <｜end▁of▁sentence｜>). NULL t: 0. */
int tokenizer_is_end(const tokenizer *t, int32_t id);
/* The token's stored text (byte-level form for normal tokens); NULL for an invalid id. */
const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len);
/* Id of a token by its exact stored text, or -1. Normal (BPE) tokens only. */
int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len);
/* Id of an added token (special or not: <|im_start|>, <think>, <|fim_prefix|>) by its text, or -1. */
int32_t tokenizer_find_added(const tokenizer *t, const char *text, size_t len);
const char *tokenizer_pre_name(const tokenizer *t);
size_t tokenizer_n_merges(const tokenizer *t);

/* Bytes a token stands for (normal tokens: byte-level text mapped back to bytes; added tokens:
 * their literal text). Writes up to cap bytes, returns the full length (or -1: invalid id). */
int tokenizer_token_bytes(const tokenizer *t, int32_t id, char *buf, size_t cap);

/* GPT-2's byte-level alphabet, which vocabularies are written in: the UTF-8 of the character
 * that stands for byte b (1 or 2 bytes) into out (>= 4 bytes); returns its length. */
int tokenizer_byte_char(unsigned char b, char *out);

/* Streaming decode: feed ids one at a time, get only complete UTF-8 characters out. A token
 * that ends inside a multi-byte character emits nothing until the character completes. */
typedef struct tok_stream {
    char pending[8];
    int n_pending;
} tok_stream;
/* Append the printable bytes for id to out (cap bytes). Returns bytes written, or -1 when out
 * is too small or id is invalid. Flush with id = -1 at the end (emits leftover bytes). */
int tokenizer_stream(const tokenizer *t, tok_stream *st, int32_t id, char *out, size_t cap);

/* Write the tokenizer as GGUF metadata (tokenizer.ggml.*). Returns 0, WHALE_E_UNSUPPORTED
 * when its pre-tokenizer has no GGUF name, or WHALE_E_NOMEM. */
int tokenizer_export_gguf(const tokenizer *t, gguf_writer *w, whale_err *err);

/* Decode a whole id list into a malloc'd NUL-terminated string (*len bytes). NULL on OOM. */
char *tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, size_t *len);

#endif
