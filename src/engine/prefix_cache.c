/* prefix_cache.c — blocks of cache rows by token prefix, in memory and on disk; see
 * prefix_cache.h.
 *
 * One table of entries by block id (chained buckets). An entry is in memory (data != NULL),
 * on disk (on_disk), or both; when it is neither it goes. Both tiers evict the least recently
 * used entry (a tick counter; a few thousand entries at most, so a linear scan). The disk tier
 * is written through: a block is on disk from the moment it is added, so memory pressure and
 * restarts only cost a file read. */
#include "engine/prefix_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"

#define PC_MAGIC "WHKVB001"
#define PC_STALE_TMP_S 3600 /* a temporary file this old was left by a crash: removed on indexing */

typedef struct pc_ent {
    uint64_t id, parent;
    int32_t tok[PC_UNIT];
    int known;      /* tok and parent are valid (memory entries; disk entries once read) */
    uint8_t *data;  /* memory tier copy, or NULL */
    int on_disk;
    uint64_t tick;  /* last use */
    struct pc_ent *next;
} pc_ent;

typedef struct pc_file_head {
    char magic[8];
    uint64_t salt, id, parent, block_bytes, checksum;
    int32_t tok[PC_UNIT];
} pc_file_head;

struct pcache {
    pcache_opts o;
    char *dir; /* <o.dir>/<salt in hex>, or NULL */
    pc_ent **bucket;
    size_t n_bucket, n_ent;
    uint64_t tick;
    size_t file_bytes;
    pcache_stats st;
};

uint64_t pcache_hash(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    const uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xc2b2ae3d27d4eb4full;
    h ^= (uint64_t)n * k1;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ (w * k2)) * k1;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, b, n);
    h = (h ^ (w * k2)) * k1;
    h ^= h >> 32;
    h *= k2;
    h ^= h >> 29;
    return h;
}

void pcache_chain(const pcache *pc, const int32_t *tokens, size_t n_blocks, uint64_t *ids) {
    uint64_t h = pc->o.salt;
    for (size_t b = 0; b < n_blocks; b++) {
        h = pcache_hash(h, tokens + b * PC_UNIT, PC_UNIT * sizeof *tokens);
        ids[b] = h ? h : 1;
        h = ids[b];
    }
}

static pc_ent *find(const pcache *pc, uint64_t id) {
    for (pc_ent *e = pc->bucket[id & (pc->n_bucket - 1)]; e; e = e->next)
        if (e->id == id) return e;
    return NULL;
}

static pc_ent *add(pcache *pc, uint64_t id) {
    if (pc->n_ent >= pc->n_bucket * 2) { /* grow: rehash into twice the buckets */
        size_t nb = pc->n_bucket * 2;
        pc_ent **b = calloc(nb, sizeof *b);
        if (b) {
            for (size_t i = 0; i < pc->n_bucket; i++)
                for (pc_ent *e = pc->bucket[i], *nx; e; e = nx) {
                    nx = e->next;
                    e->next = b[e->id & (nb - 1)];
                    b[e->id & (nb - 1)] = e;
                }
            free(pc->bucket);
            pc->bucket = b;
            pc->n_bucket = nb;
        }
    }
    pc_ent *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->id = id;
    e->next = pc->bucket[id & (pc->n_bucket - 1)];
    pc->bucket[id & (pc->n_bucket - 1)] = e;
    pc->n_ent++;
    return e;
}

static void drop_if_empty(pcache *pc, pc_ent *e) {
    if (e->data || e->on_disk) return;
    for (pc_ent **pp = &pc->bucket[e->id & (pc->n_bucket - 1)]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            free(e);
            pc->n_ent--;
            return;
        }
}

static void path_of(const pcache *pc, uint64_t id, const char *suffix, char *out, size_t cap) {
    snprintf(out, cap, "%s/%016llx.%s", pc->dir, (unsigned long long)id, suffix);
}

static void disk_remove(pcache *pc, pc_ent *e) {
    char path[4096];
    path_of(pc, e->id, "kvb", path, sizeof path);
    unlink(path);
    e->on_disk = 0;
    pc->st.disk_blocks--;
    pc->st.disk_bytes -= pc->file_bytes;
}

static void ram_remove(pcache *pc, pc_ent *e) {
    free(e->data);
    e->data = NULL;
    pc->st.ram_blocks--;
    pc->st.ram_bytes -= pc->o.block_bytes;
}

/* Make room for `need` more bytes in a tier (disk: 1, memory: 0) by evicting its least
 * recently used entries other than keep. */
static void evict(pcache *pc, int disk, size_t need, const pc_ent *keep) {
    size_t cap = disk ? pc->o.disk_bytes : pc->o.ram_bytes;
    for (;;) {
        uint64_t used = disk ? pc->st.disk_bytes : pc->st.ram_bytes;
        if (used + need <= cap) return;
        pc_ent *lru = NULL;
        for (size_t i = 0; i < pc->n_bucket; i++)
            for (pc_ent *e = pc->bucket[i]; e; e = e->next)
                if (e != keep && (disk ? e->on_disk : e->data != NULL) && (!lru || e->tick < lru->tick)) lru = e;
        if (!lru) return;
        if (disk) disk_remove(pc, lru);
        else ram_remove(pc, lru);
        drop_if_empty(pc, lru);
    }
}

static int mkdirs(char *path) {
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            int rc = mkdir(path, 0700);
            *p = '/';
            if (rc && errno != EEXIST) return -1;
        }
    return mkdir(path, 0700) && errno != EEXIST ? -1 : 0;
}

typedef struct { uint64_t id; time_t mtime; } pc_found;
static int by_mtime(const void *a, const void *b) {
    time_t x = ((const pc_found *)a)->mtime, y = ((const pc_found *)b)->mtime;
    return (x > y) - (x < y);
}

/* Index the blocks a previous run left, oldest first (ticks follow modification times). */
static int scan(pcache *pc) {
    DIR *d = opendir(pc->dir);
    if (!d) return -1;
    pc_found *f = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", pc->dir, de->d_name);
        const char *dot = strchr(de->d_name, '.');
        if (!dot || dot - de->d_name != 16) continue;
        char *end;
        unsigned long long id = strtoull(de->d_name, &end, 16);
        struct stat sb;
        if (end != dot || stat(path, &sb)) continue;
        if (!strncmp(dot, ".tmp", 4)) { /* another writer's file in progress, or a crash's leftover */
            if (time(NULL) - sb.st_mtime > PC_STALE_TMP_S) unlink(path);
            continue;
        }
        if (strcmp(dot, ".kvb") || (size_t)sb.st_size != pc->file_bytes || !id) { /* other layouts */
            unlink(path);
            continue;
        }
        if (n == cap) {
            pc_found *g = realloc(f, (cap = cap ? cap * 2 : 64) * sizeof *f);
            if (!g) break;
            f = g;
        }
        f[n].id = id;
        f[n++].mtime = sb.st_mtime;
    }
    closedir(d);
    if (n) qsort(f, n, sizeof *f, by_mtime);
    for (size_t i = 0; i < n; i++) {
        if (find(pc, f[i].id)) continue;
        pc_ent *e = add(pc, f[i].id);
        if (!e) break;
        e->on_disk = 1;
        e->tick = ++pc->tick;
        pc->st.disk_blocks++;
        pc->st.disk_bytes += pc->file_bytes;
    }
    free(f);
    evict(pc, 1, 0, NULL); /* a smaller budget than last time */
    return 0;
}

pcache *pcache_new(const pcache_opts *o, whale_err *err) {
    pcache *pc = calloc(1, sizeof *pc);
    if (!pc || !(pc->bucket = calloc(pc->n_bucket = 256, sizeof *pc->bucket))) {
        free(pc);
        err_set(err, WHALE_E_NOMEM, "out of memory");
        return NULL;
    }
    pc->o = *o;
    pc->o.dir = NULL;
    pc->file_bytes = sizeof(pc_file_head) + o->block_bytes;
    if (o->dir && o->disk_bytes >= pc->file_bytes) {
        size_t len = strlen(o->dir) + 20;
        pc->dir = malloc(len);
        if (!pc->dir) {
            pcache_free(pc);
            err_set(err, WHALE_E_NOMEM, "out of memory");
            return NULL;
        }
        snprintf(pc->dir, len, "%s/%016llx", o->dir, (unsigned long long)o->salt);
        if (mkdirs(pc->dir) || scan(pc)) {
            err_set(err, WHALE_E_IO, "cannot use %s as the context cache directory: %s", pc->dir, strerror(errno));
            pcache_free(pc);
            return NULL;
        }
    }
    return pc;
}

void pcache_free(pcache *pc) {
    if (!pc) return;
    for (size_t i = 0; pc->bucket && i < pc->n_bucket; i++)
        for (pc_ent *e = pc->bucket[i], *nx; e; e = nx) {
            nx = e->next;
            free(e->data);
            free(e);
        }
    free(pc->bucket);
    free(pc->dir);
    free(pc);
}

size_t pcache_match(pcache *pc, const uint64_t *ids, size_t n_blocks) {
    size_t b = 0;
    while (b < n_blocks && find(pc, ids[b])) b++;
    return b;
}

int pcache_has(pcache *pc, const uint64_t *ids, size_t i) { return find(pc, ids[i]) != NULL; }

/* Keep a copy of src in the memory tier of e (when the tier has room for one block at all). */
static void ram_keep(pcache *pc, pc_ent *e, const void *src) {
    if (e->data || pc->o.ram_bytes < pc->o.block_bytes) return;
    evict(pc, 0, pc->o.block_bytes, e);
    if (!(e->data = malloc(pc->o.block_bytes))) return;
    memcpy(e->data, src, pc->o.block_bytes);
    pc->st.ram_blocks++;
    pc->st.ram_bytes += pc->o.block_bytes;
}

/* Read and check e's file into dst; -1 (and the file is gone) when it is not what it says. */
static int disk_read(pcache *pc, pc_ent *e, uint64_t parent, const int32_t *tok, void *dst) {
    char path[4096];
    path_of(pc, e->id, "kvb", path, sizeof path);
    FILE *f = fopen(path, "rb");
    pc_file_head h;
    int ok = f && fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, PC_MAGIC, 8) && h.salt == pc->o.salt &&
             h.id == e->id && h.parent == parent && h.block_bytes == pc->o.block_bytes &&
             !memcmp(h.tok, tok, sizeof h.tok) && fread(dst, 1, pc->o.block_bytes, f) == pc->o.block_bytes &&
             pcache_hash(0, dst, pc->o.block_bytes) == h.checksum;
    if (f) fclose(f);
    if (!ok) {
        pc->st.disk_errors++;
        disk_remove(pc, e);
        return -1;
    }
    utimensat(AT_FDCWD, path, NULL, 0); /* recently used, for the next run's order */
    return 0;
}

int pcache_get(pcache *pc, const uint64_t *ids, const int32_t *tokens, size_t i, void *dst) {
    uint64_t parent = i ? ids[i - 1] : 0, id = ids[i];
    const int32_t *tok = tokens + i * PC_UNIT;
    pc_ent *e = find(pc, id);
    if (!e) return -1;
    if (e->data && e->known && e->parent == parent && !memcmp(e->tok, tok, sizeof e->tok)) {
        memcpy(dst, e->data, pc->o.block_bytes);
        e->tick = ++pc->tick;
        pc->st.hits_ram++;
        return 0;
    }
    if (!e->on_disk || disk_read(pc, e, parent, tok, dst)) {
        drop_if_empty(pc, e);
        return -1;
    }
    e->tick = ++pc->tick;
    e->parent = parent;
    memcpy(e->tok, tok, sizeof e->tok);
    e->known = 1;
    pc->st.hits_disk++;
    ram_keep(pc, e, dst);
    return 0;
}

static int disk_write(pcache *pc, pc_ent *e, const void *src) {
    char tmp[4096], path[4096];
    path_of(pc, e->id, "tmp.XXXXXX", tmp, sizeof tmp); /* this writer's own file, whoever else writes */
    path_of(pc, e->id, "kvb", path, sizeof path);
    pc_file_head h = {.salt = pc->o.salt, .id = e->id, .parent = e->parent, .block_bytes = pc->o.block_bytes};
    memcpy(h.magic, PC_MAGIC, 8);
    memcpy(h.tok, e->tok, sizeof h.tok);
    h.checksum = pcache_hash(0, src, pc->o.block_bytes);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fd >= 0 && !f) close(fd);
    int ok = f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(src, 1, pc->o.block_bytes, f) == pc->o.block_bytes;
    if (f && fclose(f)) ok = 0;
    if (!ok || rename(tmp, path)) {
        if (fd >= 0) unlink(tmp);
        pc->st.disk_errors++;
        return -1;
    }
    return 0;
}

void pcache_put(pcache *pc, const uint64_t *ids, const int32_t *tokens, size_t i, const void *src) {
    uint64_t parent = i ? ids[i - 1] : 0, id = ids[i];
    pc_ent *e = find(pc, id);
    if (e && e->known && (e->parent != parent || memcmp(e->tok, tokens + i * PC_UNIT, sizeof e->tok))) return; /* collision */
    if (!e) {
        if (!(e = add(pc, id))) return;
        pc->st.puts++;
    }
    e->parent = parent;
    memcpy(e->tok, tokens + i * PC_UNIT, sizeof e->tok);
    e->known = 1;
    e->tick = ++pc->tick;
    ram_keep(pc, e, src);
    if (pc->dir && !e->on_disk) {
        evict(pc, 1, pc->file_bytes, e);
        if (!disk_write(pc, e, src)) {
            e->on_disk = 1;
            pc->st.disk_blocks++;
            pc->st.disk_bytes += pc->file_bytes;
        }
    }
    drop_if_empty(pc, e);
}

void pcache_stats_get(const pcache *pc, pcache_stats *out) { *out = pc->st; }
