/* shards.h — token shards of `whale data prepare`: DIR/<prefix>-000000.bin, -000001.bin, ...,
 * each a run of uint32 little-endian token ids, every document followed by the end-of-text id.
 * A document never straddles two shards (each shard decodes alone): a new shard starts when the
 * next document would take the current one past shard_tokens (a document longer than that gets
 * a shard of its own).
 * Owns: the shard files and the token count of each. */
#ifndef WHALE_DATA_SHARDS_H
#define WHALE_DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

#define SHARD_BUF_TOKENS (1 << 18) /* 1 MiB of ids between writes */

typedef struct shard_set {
    char *dir, *prefix;
    int64_t shard_tokens;
    int64_t *tokens; /* tokens in each shard, n_shards of them; the last is the one being written */
    int64_t n_shards, cap;
    int fd;       /* the last shard */
    uint8_t *buf; /* ids not yet written to fd */
    size_t n_buf;
} shard_set;

/* Open the set. n_resume = 0: shard 0 is created empty (truncating an old file). n_resume > 0:
 * shards 0..n_resume-1 are cut to resume_tokens[i] ids each (WHALE_E_FORMAT if one is missing
 * or shorter) and writing goes on in the last. Either way, shard files of the same prefix past
 * the last are removed (left by an interrupted run). Returns 0, WHALE_E_IO or WHALE_E_NOMEM. */
int shard_set_open(shard_set *s, const char *dir, const char *prefix, int64_t shard_tokens,
                   const int64_t *resume_tokens, int64_t n_resume, whale_err *err);
/* Append one document's ids and then eot. Returns 0, WHALE_E_IO or WHALE_E_NOMEM. */
int shard_set_add(shard_set *s, const int32_t *ids, size_t n, uint32_t eot, whale_err *err);
/* Write what is buffered and fsync the shard being written. 0 or WHALE_E_IO. */
int shard_set_sync(shard_set *s, whale_err *err);
/* The file name of shard i (malloc'd), NULL on OOM. */
char *shard_set_path(const shard_set *s, int64_t i);
int64_t shard_set_total(const shard_set *s);
/* Flush and close (no fsync: call shard_set_sync first for that). Zeroed or closed s: no-op. */
void shard_set_close(shard_set *s);

#endif
