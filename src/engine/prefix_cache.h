/* prefix_cache.h — the context cache: computed KV rows kept by token prefix, in memory and on
 * disk, so a prompt that repeats a prefix (a system prompt, the history of a conversation,
 * few-shot examples) is not computed again, even after its sequence slot was reused or the
 * server restarted.
 *
 * The unit is a block of PC_UNIT tokens (64, the granularity DeepSeek's API documents). A block
 * is named by its whole prefix: id(block i) = hash(id(block i-1), its tokens), so the blocks form
 * a tree of prefixes (a radix tree with 64-token edges) whose nodes are found by id. A block
 * holds the cache rows of its positions as one opaque byte string of a fixed size (the caller
 * decides what: all layers' keys and values, or MLA latents), and the ids of its tokens and its
 * parent's id, checked on every hit so that a hash collision can only cost a miss.
 *
 * Tiers: a memory tier of at most ram_bytes (least recently used blocks leave first), and
 * optionally a directory on disk of at most disk_bytes, written through when a block is added
 * (one file per block, written under a temporary name and renamed, with a checksum): blocks
 * evicted from memory, or kept from an earlier run, come back from disk. A damaged or foreign
 * file is a miss (and is deleted), never an error. Several processes may share the directory:
 * each writes its own temporary file (mkstemp) and renames it into place. The key includes a `salt` the caller derives
 * from the model and the cache layout: blocks of another model are never used.
 *
 * Not thread-safe: one owner (the scheduler's engine thread). */
#ifndef WHALE_ENGINE_PREFIX_CACHE_H
#define WHALE_ENGINE_PREFIX_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

#define PC_UNIT 64

typedef struct pcache pcache;

typedef struct pcache_opts {
    size_t block_bytes; /* bytes of cache rows per block (PC_UNIT positions) */
    uint64_t salt;      /* model + layout identity: part of every block id */
    size_t ram_bytes;   /* memory tier budget (0: no memory tier) */
    const char *dir;    /* disk tier directory (created), or NULL */
    size_t disk_bytes;  /* disk tier budget */
} pcache_opts;

/* NULL with a message when the directory cannot be created or memory is short. Indexes the
 * blocks already in the directory (by file name and size: contents are checked on use). */
pcache *pcache_new(const pcache_opts *o, whale_err *err);
void pcache_free(pcache *pc);

/* The ids of the first n_blocks blocks of tokens (the hash chain from the salt), into ids: the
 * calls below take them, so a prompt is hashed once however many blocks are looked up. */
void pcache_chain(const pcache *pc, const int32_t *tokens, size_t n_blocks, uint64_t *ids);

/* How many leading blocks of the chain the cache holds (memory or disk), at most n_blocks.
 * Cheap: looks ids up without reading files. */
size_t pcache_match(pcache *pc, const uint64_t *ids, size_t n_blocks);

/* Copy block i (tokens[i*PC_UNIT .. (i+1)*PC_UNIT), ids from pcache_chain) into dst
 * (block_bytes). 0 on a hit; -1 when it is absent or its file turned out damaged. */
int pcache_get(pcache *pc, const uint64_t *ids, const int32_t *tokens, size_t i, void *dst);

/* Keep block i from src (block_bytes). Nothing happens when it is already kept. A failed disk
 * write only costs the disk copy. */
void pcache_put(pcache *pc, const uint64_t *ids, const int32_t *tokens, size_t i, const void *src);
/* 1 if block i is kept (memory or disk). */
int pcache_has(pcache *pc, const uint64_t *ids, size_t i);

typedef struct pcache_stats {
    size_t ram_blocks, disk_blocks;
    uint64_t ram_bytes, disk_bytes;
    uint64_t hits_ram, hits_disk, puts, disk_errors;
} pcache_stats;
void pcache_stats_get(const pcache *pc, pcache_stats *out);

/* A 64-bit hash of bytes, continuing from h (start with 0): for salts and checksums. */
uint64_t pcache_hash(uint64_t h, const void *p, size_t n);

#endif
