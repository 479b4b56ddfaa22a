/* pretokenize.h — splitting text into pieces before BPE, as Hugging Face `tokenizers` does.
 *
 * A program is a list of steps applied in order; each step splits every current piece
 * further. SPLIT keeps both the matches of its regex and the gaps between them as pieces
 * (tokenizers' Split with behavior "Isolated"); DIGITS isolates each numeric character. The
 * byte-level mapping that follows (tokenizers' ByteLevel with use_regex false) is done by the
 * BPE stage. Regexes run on PCRE2 with Unicode properties (and JIT where available).
 * Owns: compiled programs and the builtin programs behind GGUF's `tokenizer.ggml.pre` names. */
#ifndef WHALE_TOKENIZER_PRETOKENIZE_H
#define WHALE_TOKENIZER_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* At most this many split steps: the longest real program (deepseek-llm) has 6. */
#define PRETOK_MAX_STEPS 16

typedef struct pretok_program pretok_program;

/* A piece of the input: [start, start+len) in bytes. */
typedef struct pretok_piece {
    size_t start, len;
} pretok_piece;

/* A growable piece list, reused across calls to avoid per-call allocation. */
typedef struct pretok_pieces {
    pretok_piece *v;
    size_t n, cap;
} pretok_pieces;

pretok_program *pretok_new(void);
void pretok_free(pretok_program *p);
/* Append a regex split step (pattern in tokenizers' syntax, UTF-8). Returns 0 or
 * WHALE_E_FORMAT with the regex error and its offset in err. */
int pretok_add_split(pretok_program *p, const char *pattern, size_t len, whale_err *err);
/* Append a step that isolates each numeric (\p{N}) character. */
int pretok_add_digits(pretok_program *p, whale_err *err);

/* Build the program for a GGUF `tokenizer.ggml.pre` name. Returns 0, or WHALE_E_UNSUPPORTED
 * for an unknown name. *nfc and *ignore_merges receive the matching tokenizer settings. */
int pretok_builtin(pretok_program **out, const char *name, int *nfc, int *ignore_merges, whale_err *err);
/* The split patterns of a builtin program (tokenizers' syntax, non-ASCII as \x{...}),
 * NULL-terminated, and its settings; NULL for an unknown name. What a writer of tokenizer.json
 * files (the BPE trainer) puts in its Split steps, so the file encodes as the builtin does. */
const char *const *pretok_builtin_patterns(const char *name, int *nfc, int *ignore_merges);
/* Names pretok_builtin knows, NULL-terminated (for messages). */
extern const char *const pretok_builtin_names[];
/* The builtin name whose program p equals (same split patterns), or NULL. */
const char *pretok_builtin_match(const pretok_program *p);
/* GPT-2's split pattern (tokenizers' ByteLevel with use_regex true). */
extern const char pretok_gpt2_pattern[];

/* Split text[0..n) (valid UTF-8) into pieces (appended to out after clearing it).
 * Returns 0 or WHALE_E_NOMEM / WHALE_E_FORMAT (regex engine failure, e.g. match limit). */
int pretok_run(const pretok_program *p, const char *text, size_t n, pretok_pieces *out, whale_err *err);
void pretok_pieces_free(pretok_pieces *ps);

#endif
