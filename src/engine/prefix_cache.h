/* prefix_cache.h — the context cache: computed KV rows kept by token prefix, in memory and on
 * disk, so a prompt that repeats a prefix (a system prompt, the history of a conversation,
 * few-shot examples) is not computed again, even after its sequence slot was reused or the
 * server restarted.
 *
 * The unit is a block of PC_UNIT tokens (64, the granularity DeepSeek's API documents). A block
 * is named by its whole prefix and its owner: id(block 0) = H(root(owner), its tokens), id(block
 * i) = H(id(block i-1), its tokens), root(owner) = H(salt, owner), so the blocks form one tree
 * of prefixes per owner (a radix tree with 64-token edges) whose nodes are found by id. A block
 * holds the cache rows of its positions as one opaque byte string of a fixed size (the caller
 * decides what: all layers' keys and values, or MLA latents), and a check value of its tokens
 * and its parent's id, compared on every hit so that an id collision can only cost a miss.
 *
 * Owners (users) are kept apart (issue #18): one owner's prompt is never a hit for another, so
 * hit counts say nothing about what others sent. H is SipHash-2-4 under a random key
 * (base/siphash.h): ids cannot be computed, forged or traced back to tokens without it. With a
 * disk tier the key is the file PC_KEY_FILE in the cache directory (32 random bytes, mode 0600,
 * made on first use), shared by every model and process using that directory; without one, a
 * key per cache. Files hold no token ids, only the check value, and a keyed 128-bit check over
 * the header, the check value and the rows, so a damaged, moved or forged file is a miss.
 *
 * Tiers: a memory tier of at most ram_bytes (least recently used blocks leave first), and
 * optionally a directory on disk of at most disk_bytes, written through when a block is added:
 * blocks evicted from memory, or kept from an earlier run, come back from disk. Layout:
 *     <dir>/cache.key                        the key
 *     <dir>/<salt>/<owner tag>/<id>.kvb      one file per block (hex names; the owner tag is a
 *                                            keyed hash of the owner: purging an owner removes
 *                                            one folder per model)
 * A file is written under a temporary name (mkstemp, so several processes may share the
 * directory) and renamed. A damaged or foreign file is a miss (and is deleted), never an error;
 * files of the earlier layout (<salt>/<id>.kvb, with token ids in clear) are deleted. The salt
 * is what the caller derives from the model and the cache layout: blocks of another model are
 * never used.
 *
 * Not thread-safe: one owner (the scheduler's engine thread); pcache_dir_purge is free-standing. */
#ifndef WHALE_ENGINE_PREFIX_CACHE_H
#define WHALE_ENGINE_PREFIX_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

#define PC_UNIT 64
#define PC_KEY_FILE "cache.key"

typedef struct pcache pcache;

typedef struct pcache_opts {
    size_t block_bytes; /* bytes of cache rows per block (PC_UNIT positions) */
    uint64_t salt;      /* model + layout identity: part of every block id */
    size_t ram_bytes;   /* memory tier budget (0: no memory tier) */
    const char *dir;    /* the cache directory (created; its key, and a folder per salt), or NULL:
                           no disk tier */
    size_t disk_bytes;  /* disk tier budget */
} pcache_opts;

/* NULL with a message when the directory or its key cannot be used (a key readable by other
 * users is refused) or memory is short. Indexes the blocks already in the directory (by file
 * name and size: contents are checked on use). */
pcache *pcache_new(const pcache_opts *o, whale_err *err);
void pcache_free(pcache *pc);

/* The ids of the first n_blocks blocks of tokens for owner (the hash chain from root(owner)),
 * into ids: the calls below take them, so a prompt is hashed once however many blocks are
 * looked up. owner: whale_request.owner (a user id; 0 for a single-user process). */
void pcache_chain(const pcache *pc, int64_t owner, const int32_t *tokens, size_t n_blocks, uint64_t *ids);

/* How many leading blocks of the chain the cache holds (memory or disk), at most n_blocks.
 * Cheap: looks ids up without reading files. */
size_t pcache_match(pcache *pc, const uint64_t *ids, size_t n_blocks);

/* Copy block i (tokens[i*PC_UNIT .. (i+1)*PC_UNIT), ids from pcache_chain for the same owner)
 * into dst (block_bytes). 0 on a hit; -1 when it is absent or its file turned out damaged. */
int pcache_get(pcache *pc, int64_t owner, const uint64_t *ids, const int32_t *tokens, size_t i, void *dst);

/* Keep block i from src (block_bytes). Nothing happens when it is already kept. A failed disk
 * write only costs the disk copy. */
void pcache_put(pcache *pc, int64_t owner, const uint64_t *ids, const int32_t *tokens, size_t i, const void *src);
/* 1 if block i is kept (memory or disk). */
int pcache_has(pcache *pc, const uint64_t *ids, size_t i);

typedef struct pcache_stats {
    size_t ram_blocks, disk_blocks;
    uint64_t ram_bytes, disk_bytes;
    uint64_t hits_ram, hits_disk, puts, disk_errors;
} pcache_stats;
void pcache_stats_get(const pcache *pc, pcache_stats *out);

/* Forget owner: its blocks leave memory, and its folder goes from every model's folder of the
 * cache directory (pcache_dir_purge with this cache's key). 0, or WHALE_E_IO with a message
 * when files could not be removed (the memory part is done all the same). */
int pcache_purge(pcache *pc, int64_t owner, whale_err *err);

/* The disk part alone, for a process without the cache open: remove owner's folder under every
 * model's folder of dir, with the key found there. 0 also when dir or its key does not exist
 * (nothing was ever kept); WHALE_E_IO or WHALE_E_FORMAT (a damaged key) with a message. A cache
 * open elsewhere keeps what it holds in memory. Any thread. */
int pcache_dir_purge(const char *dir, int64_t owner, whale_err *err);

/* A 64-bit hash of bytes, continuing from h (start with 0), not keyed: for salts and model
 * identities, never for names a user could probe. */
uint64_t pcache_hash(uint64_t h, const void *p, size_t n);

#endif
