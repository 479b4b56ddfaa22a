/* corpus.h — training text streamed from files, directories and JSON lines, in spans that can
 * each be pre-tokenized on their own, so no corpus is ever held in memory whole.
 *
 * A text file is read in blocks and cut just after a newline that a non-space character
 * follows: no pre-tokenizer piece of the builtin programs (pretokenize.c) crosses such a point,
 * so the spans split exactly as the whole file would. A `.jsonl` / `.ndjson` file holds one
 * JSON object per line whose "text" string is one document (one span). A directory stands for
 * every regular file beneath it, in name order, hidden names skipped.
 * Owns: the file list and the reading; what is done with the text is the caller's. */
#ifndef WHALE_DATA_CORPUS_H
#define WHALE_DATA_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* Bytes read from a text file at a time. */
#define CORPUS_BLOCK (1u << 20)
/* A text file with no cut point (a newline followed by a non-space character) for this long is
 * cut anyway, at a character boundary: one span must fit in memory, and a 64 MiB line is not
 * prose. Pieces at such a cut may split differently from the whole file. */
#define CORPUS_MAX_SPAN (64u << 20)
/* One JSON line longer than this is refused (a runaway line must not take all memory). */
#define CORPUS_MAX_LINE (256u << 20)

typedef struct corpus_file {
    char *path;
    uint64_t size;
    int jsonl; /* 1: JSON lines with a "text" string each */
} corpus_file;

typedef struct corpus {
    corpus_file *files;
    size_t n, cap;
    uint64_t total_bytes; /* sum of the files' sizes, for progress */
} corpus;

/* Add a file or, recursively, a directory's files. Returns 0, or WHALE_E_IO ("PATH: why") when
 * a path cannot be read, WHALE_E_NOMEM. A zeroed corpus is an empty one. */
int corpus_add(corpus *c, const char *path, whale_err *err);
void corpus_free(corpus *c);

/* Receives one span of valid-or-not UTF-8 text (borrowed for the call). Returns 0 to go on or a
 * negative status (its message in err) to stop the read. */
typedef int (*corpus_text_fn)(void *ctx, const char *text, size_t n, whale_err *err);
/* Told the bytes read so far, over all files, after each block or line batch. May be NULL. */
typedef void (*corpus_progress_fn)(void *ctx, uint64_t done);

/* Read every file in order, handing spans to fn. Returns 0, fn's status, WHALE_E_IO (a read
 * failed), WHALE_E_FORMAT ("PATH:LINE: ..." for a JSON line that is not an object with a
 * "text" string) or WHALE_E_NOMEM. */
int corpus_read(const corpus *c, corpus_text_fn fn, corpus_progress_fn progress, void *ctx, whale_err *err);

/* Where a text buffer s[0..n) may be cut: the largest i in (0, n) such that s[i-1] is '\n' and
 * a complete non-space character starts at i; 0 when there is none. */
size_t corpus_cut_point(const char *s, size_t n);

#endif
