/* tokenizer_impl.h — the tokenizer's tables, shared by tokenizer.c (loading) and bpe.c
 * (encoding, decoding). Not part of any other module's view. */
#ifndef WHALE_TOKENIZER_IMPL_H
#define WHALE_TOKENIZER_IMPL_H

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

typedef struct tok_merge {
    int32_t a, b;   /* left and right token ids */
    int32_t rank;   /* position in the merge list (lower merges first); -1 marks an empty slot */
    int32_t result; /* id of the merged token */
} tok_merge;

struct tokenizer {
    int64_t n_vocab;
    char *text;      /* all token texts, NUL-separated */
    size_t text_n, text_cap;
    size_t *off;     /* (n_vocab) offset of each token's text */
    uint32_t *len;   /* (n_vocab) its length in bytes */
    uint8_t *attr;   /* (n_vocab) enum tok_attr */
    uint8_t *in_model_vocab; /* loading only (tokenizer.json): added token also in model.vocab */

    int32_t *map;    /* open-addressing index text -> id over BPE-producible tokens; -1 empty */
    size_t map_cap;
    tok_merge *merges; /* open-addressing index (a, b) -> merge */
    size_t merge_cap, n_merges, n_bad_merges;
    int32_t *added;  /* ids of added tokens (control + user), longest text first */
    size_t n_added;
    int32_t byte_tok[256]; /* byte -> id of its byte-level character, -1 if absent */

    pretok_program *pre;
    char pre_name[64];
    int nfc;           /* NFC-normalize input first (Qwen2 family) */
    int ignore_merges; /* a piece found whole in the vocabulary is one token (Llama 3) */
    int32_t bos, eos;
    int add_bos;
};

int tok_merge_find(const tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *result);
/* GPT-2's byte -> code point map: printable Latin-1 bytes map to themselves, the others to
 * U+0100 upwards in byte order. */
uint32_t tok_byte_to_cp(unsigned char b);
/* Inverse; returns -1 for a code point that is not a byte-level character. */
int tok_cp_to_byte(uint32_t cp);

#endif
