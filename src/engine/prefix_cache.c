/* prefix_cache.c — blocks of cache rows by token prefix, in memory and on disk; see
 * prefix_cache.h.
 *
 * One table of entries by block id (chained buckets). An entry is in memory (data != NULL),
 * on disk (on_disk), or both; when it is neither it goes. Both tiers evict the least recently
 * used entry (a tick counter; a few thousand entries at most, so a linear scan). The disk tier
 * is written through: a block is on disk from the moment it is added, so memory pressure and
 * restarts only cost a file read. An entry remembers its owner's tag (the folder of its file),
 * so a lookup under one owner never finds another's block, and purging an owner is a walk of
 * the table and the removal of one folder per model. */
#include "engine/prefix_cache.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/siphash.h"

#define PC_MAGIC "WHKVB002"
#define PC_STALE_TMP_S 3600 /* a temporary file this old was left by a crash: removed on indexing */
#define PC_KEY_BYTES 32     /* two SipHash keys: ids and owner tags, then checks */
#define PC_PURGE_TRIES 4    /* a writer may add a file to a folder being removed: try again */

/* Domains: every keyed hash starts with one of these, so no value of one kind can pass for
 * another (a block id for an owner tag, a check for a file check). */
enum { DOM_ROOT = 1, DOM_BLOCK, DOM_OWNER, DOM_CHECK, DOM_FILE };

typedef struct pc_ent {
    uint64_t id, parent;
    uint64_t tag;      /* the owner's tag: the folder of its file */
    uint8_t check[16]; /* keyed check of parent and tokens (when known) */
    int known;         /* check and parent are valid (memory entries; disk entries once read) */
    uint8_t *data;     /* memory tier copy, or NULL */
    int on_disk;
    uint64_t tick;     /* last use */
    struct pc_ent *next;
} pc_ent;

/* A block file: this head, then block_bytes of rows. mac = SipHash-128 under the check key of
 * (DOM_FILE, magic, id, block_bytes, owner tag, the block's check value, rows). */
typedef struct pc_file_head {
    char magic[8];
    uint64_t id, block_bytes;
    uint8_t mac[16];
} pc_file_head;

struct pcache {
    pcache_opts o;
    char *root;  /* o.dir, or NULL */
    char *dir;   /* <root>/<salt in hex>, or NULL */
    uint8_t key[PC_KEY_BYTES];
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

/* ---- keys ----------------------------------------------------------------------------------
 * The first half of the key names things (block ids, owner tags: they appear as file names),
 * the second checks them (check values, file checks). */

static uint64_t keyed2(const uint8_t *key, uint64_t dom, uint64_t a, const void *p, size_t n) {
    siphash h;
    uint8_t out[8];
    siphash_init(&h, key, 8);
    siphash_update(&h, &dom, sizeof dom);
    siphash_update(&h, &a, sizeof a);
    siphash_update(&h, p, n);
    siphash_final(&h, out);
    uint64_t x;
    memcpy(&x, out, 8);
    return x;
}

static uint64_t owner_tag(const uint8_t *key, int64_t owner) {
    return keyed2(key, DOM_OWNER, (uint64_t)owner, NULL, 0);
}

static uint64_t chain_root(const pcache *pc, int64_t owner) {
    uint64_t o = (uint64_t)owner;
    return keyed2(pc->key, DOM_ROOT, pc->o.salt, &o, sizeof o);
}

static void block_check(const pcache *pc, uint64_t parent, const int32_t *tok, uint8_t out[16]) {
    siphash h;
    uint64_t dom = DOM_CHECK;
    siphash_init(&h, pc->key + 16, 16);
    siphash_update(&h, &dom, sizeof dom);
    siphash_update(&h, &parent, sizeof parent);
    siphash_update(&h, tok, PC_UNIT * sizeof *tok);
    siphash_final(&h, out);
}

static void file_mac(const pcache *pc, const pc_file_head *fh, uint64_t tag, const uint8_t check[16],
                     const void *rows, uint8_t out[16]) {
    siphash h;
    uint64_t dom = DOM_FILE;
    siphash_init(&h, pc->key + 16, 16);
    siphash_update(&h, &dom, sizeof dom);
    siphash_update(&h, fh->magic, sizeof fh->magic);
    siphash_update(&h, &fh->id, sizeof fh->id);
    siphash_update(&h, &fh->block_bytes, sizeof fh->block_bytes);
    siphash_update(&h, &tag, sizeof tag);
    siphash_update(&h, check, 16);
    siphash_update(&h, rows, pc->o.block_bytes);
    siphash_final(&h, out);
}

static int same16(const uint8_t *a, const uint8_t *b) { /* without an early exit */
    uint8_t d = 0;
    for (int i = 0; i < 16; i++) d |= a[i] ^ b[i];
    return !d;
}

static int random_bytes(uint8_t *p, size_t n) {
    while (n) {
        ssize_t k = getrandom(p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

/* The key of cache directory root into key. create: make it when absent (a new random key
 * written under a temporary name and linked into place: no reader sees half a key, and of two
 * first users at once both end with the one that got there first), and refuse one that other
 * users may read. Returns 0; 1 when absent and !create; WHALE_E_* with a message. */
static int key_open(const char *root, int create, uint8_t key[PC_KEY_BYTES], whale_err *err) {
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/" PC_KEY_FILE, root);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            struct stat sb;
            int ok = !fstat(fd, &sb) && S_ISREG(sb.st_mode) && sb.st_size == PC_KEY_BYTES &&
                     read(fd, key, PC_KEY_BYTES) == PC_KEY_BYTES;
            close(fd);
            if (!ok)
                return err_set(err, WHALE_E_FORMAT,
                               "%s is not a context cache key (%d bytes): remove it (the cache starts empty)", path,
                               PC_KEY_BYTES);
            if (create && ((sb.st_mode & 077) || sb.st_uid != geteuid()))
                return err_set(err, WHALE_E_IO,
                               "%s is readable by other users or not ours: it must be private (chmod 600)", path);
            return 0;
        }
        if (errno != ENOENT) return err_set(err, WHALE_E_IO, "cannot read %s: %s", path, strerror(errno));
        if (!create) return 1;
        uint8_t fresh[PC_KEY_BYTES];
        if (random_bytes(fresh, sizeof fresh))
            return err_set(err, WHALE_E_IO, "no random bytes for %s: %s", path, strerror(errno));
        snprintf(tmp, sizeof tmp, "%s/" PC_KEY_FILE ".tmp.XXXXXX", root);
        int t = mkstemp(tmp); /* mode 0600 */
        if (t < 0) return err_set(err, WHALE_E_IO, "cannot create %s: %s", tmp, strerror(errno));
        int ok = write(t, fresh, sizeof fresh) == (ssize_t)sizeof fresh && !fsync(t);
        explicit_bzero(fresh, sizeof fresh);
        ok = !close(t) && ok;
        int rc = ok ? link(tmp, path) : -1, link_errno = errno;
        unlink(tmp);
        if (!ok || (rc && link_errno != EEXIST))
            return err_set(err, WHALE_E_IO, "cannot write %s: %s", path, strerror(ok ? link_errno : errno));
        /* made, or another process made it first: read what is there */
    }
    return err_set(err, WHALE_E_IO, "cannot create %s", path);
}

/* ---- the chain ------------------------------------------------------------------------------ */

void pcache_chain(const pcache *pc, int64_t owner, const int32_t *tokens, size_t n_blocks, uint64_t *ids) {
    uint64_t h = chain_root(pc, owner);
    for (size_t b = 0; b < n_blocks; b++) {
        h = keyed2(pc->key, DOM_BLOCK, h, tokens + b * PC_UNIT, PC_UNIT * sizeof *tokens);
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

static void path_of(const pcache *pc, uint64_t tag, uint64_t id, const char *suffix, char *out, size_t cap) {
    snprintf(out, cap, "%s/%016llx/%016llx.%s", pc->dir, (unsigned long long)tag, (unsigned long long)id, suffix);
}

static void disk_remove(pcache *pc, pc_ent *e) {
    char path[4096];
    path_of(pc, e->tag, e->id, "kvb", path, sizeof path);
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

typedef struct { uint64_t id, tag; time_t mtime; } pc_found;
static int by_mtime(const void *a, const void *b) {
    time_t x = ((const pc_found *)a)->mtime, y = ((const pc_found *)b)->mtime;
    return (x > y) - (x < y);
}

/* A name of 16 hex digits then end or a dot: its number into *x, and where it ends. NULL when
 * it is not one. */
static const char *hex_name(const char *name, uint64_t *x) {
    char *end;
    if (strlen(name) < 16 || !isxdigit((unsigned char)name[0])) return NULL;
    *x = strtoull(name, &end, 16);
    return end == name + 16 && (!*end || *end == '.') ? end : NULL;
}

/* A temporary file: left alone while it may still be written, removed when a crash left it. */
static void tmp_seen(const char *path, const struct stat *sb) {
    if (time(NULL) - sb->st_mtime > PC_STALE_TMP_S) unlink(path);
}

typedef struct { pc_found *f; size_t n, cap; } pc_found_list;

/* Index one owner's folder (its tag: tag) into l. */
static void scan_owner(pcache *pc, const char *dir, uint64_t tag, pc_found_list *l) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[4096];
        uint64_t id;
        const char *dot = hex_name(de->d_name, &id);
        struct stat sb;
        if (!dot || snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) continue;
        if (lstat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        if (!strncmp(dot, ".tmp", 4)) { /* another writer's file in progress, or a crash's leftover */
            tmp_seen(path, &sb);
            continue;
        }
        if (strcmp(dot, ".kvb") || (size_t)sb.st_size != pc->file_bytes || !id) { /* other layouts */
            unlink(path);
            continue;
        }
        if (l->n == l->cap) {
            pc_found *g = realloc(l->f, (l->cap = l->cap ? l->cap * 2 : 64) * sizeof *g);
            if (!g) break;
            l->f = g;
        }
        l->f[l->n++] = (pc_found){id, tag, sb.st_mtime};
    }
    closedir(d);
}

/* Index the blocks a previous run left, oldest first (ticks follow modification times), and
 * delete the earlier layout's files (<salt>/<id>.kvb: token ids in clear, no owner). */
static int scan(pcache *pc) {
    DIR *d = opendir(pc->dir);
    if (!d) return -1;
    pc_found_list l = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[4096];
        uint64_t x;
        const char *dot = hex_name(de->d_name, &x);
        struct stat sb;
        if (!dot || snprintf(path, sizeof path, "%s/%s", pc->dir, de->d_name) >= (int)sizeof path) continue;
        if (lstat(path, &sb)) continue;
        if (S_ISDIR(sb.st_mode) && !*dot) scan_owner(pc, path, x, &l);
        else if (S_ISREG(sb.st_mode) && !strncmp(dot, ".tmp", 4)) tmp_seen(path, &sb);
        else if (S_ISREG(sb.st_mode) && !strcmp(dot, ".kvb")) unlink(path);
    }
    closedir(d);
    if (l.n) qsort(l.f, l.n, sizeof *l.f, by_mtime);
    for (size_t i = 0; i < l.n; i++) {
        if (find(pc, l.f[i].id)) continue;
        pc_ent *e = add(pc, l.f[i].id);
        if (!e) break;
        e->tag = l.f[i].tag;
        e->on_disk = 1;
        e->tick = ++pc->tick;
        pc->st.disk_blocks++;
        pc->st.disk_bytes += pc->file_bytes;
    }
    free(l.f);
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
        pc->root = strdup(o->dir);
        pc->dir = malloc(len);
        if (!pc->root || !pc->dir) {
            pcache_free(pc);
            err_set(err, WHALE_E_NOMEM, "out of memory");
            return NULL;
        }
        snprintf(pc->dir, len, "%s/%016llx", o->dir, (unsigned long long)o->salt);
        if (mkdirs(pc->dir)) {
            err_set(err, WHALE_E_IO, "cannot use %s as the context cache directory: %s", pc->dir, strerror(errno));
            pcache_free(pc);
            return NULL;
        }
        int rc = key_open(pc->root, 1, pc->key, err);
        if (rc || scan(pc)) {
            if (!rc) err_set(err, WHALE_E_IO, "cannot use %s as the context cache directory: %s", pc->dir, strerror(errno));
            pcache_free(pc);
            return NULL;
        }
    } else if (random_bytes(pc->key, sizeof pc->key)) { /* memory only: a key of its own */
        pcache_free(pc);
        err_set(err, WHALE_E_IO, "no random bytes for the context cache's key: %s", strerror(errno));
        return NULL;
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
    free(pc->root);
    explicit_bzero(pc->key, sizeof pc->key);
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

/* Read and check e's file into dst against the block's check value; -1 (and the file is gone)
 * when it is not what it says. */
static int disk_read(pcache *pc, pc_ent *e, const uint8_t check[16], void *dst) {
    char path[4096];
    path_of(pc, e->tag, e->id, "kvb", path, sizeof path);
    FILE *f = fopen(path, "rb");
    pc_file_head h;
    uint8_t mac[16];
    int ok = f && fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, PC_MAGIC, 8) && h.id == e->id &&
             h.block_bytes == pc->o.block_bytes && fread(dst, 1, pc->o.block_bytes, f) == pc->o.block_bytes;
    if (f) fclose(f);
    if (ok) file_mac(pc, &h, e->tag, check, dst, mac);
    if (!ok || !same16(mac, h.mac)) {
        pc->st.disk_errors++;
        disk_remove(pc, e);
        return -1;
    }
    utimensat(AT_FDCWD, path, NULL, 0); /* recently used, for the next run's order */
    return 0;
}

int pcache_get(pcache *pc, int64_t owner, const uint64_t *ids, const int32_t *tokens, size_t i, void *dst) {
    uint64_t parent = i ? ids[i - 1] : chain_root(pc, owner), id = ids[i];
    pc_ent *e = find(pc, id);
    if (!e || e->tag != owner_tag(pc->key, owner)) return -1;
    uint8_t check[16];
    block_check(pc, parent, tokens + i * PC_UNIT, check);
    if (e->data && e->known && e->parent == parent && same16(e->check, check)) {
        memcpy(dst, e->data, pc->o.block_bytes);
        e->tick = ++pc->tick;
        pc->st.hits_ram++;
        return 0;
    }
    if (!e->on_disk || disk_read(pc, e, check, dst)) {
        drop_if_empty(pc, e);
        return -1;
    }
    e->tick = ++pc->tick;
    e->parent = parent;
    memcpy(e->check, check, sizeof check);
    e->known = 1;
    pc->st.hits_disk++;
    ram_keep(pc, e, dst);
    return 0;
}

static int disk_write(pcache *pc, pc_ent *e, const void *src) {
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/%016llx", pc->dir, (unsigned long long)e->tag);
    if (mkdir(tmp, 0700) && errno != EEXIST) {
        pc->st.disk_errors++;
        return -1;
    }
    path_of(pc, e->tag, e->id, "tmp.XXXXXX", tmp, sizeof tmp); /* this writer's own file, whoever else writes */
    path_of(pc, e->tag, e->id, "kvb", path, sizeof path);
    pc_file_head h = {.id = e->id, .block_bytes = pc->o.block_bytes};
    memcpy(h.magic, PC_MAGIC, 8);
    file_mac(pc, &h, e->tag, e->check, src, h.mac);
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

void pcache_put(pcache *pc, int64_t owner, const uint64_t *ids, const int32_t *tokens, size_t i, const void *src) {
    uint64_t parent = i ? ids[i - 1] : chain_root(pc, owner), id = ids[i], tag = owner_tag(pc->key, owner);
    uint8_t check[16];
    block_check(pc, parent, tokens + i * PC_UNIT, check);
    pc_ent *e = find(pc, id);
    if (e && (e->tag != tag || (e->known && (e->parent != parent || !same16(e->check, check)))))
        return; /* an id collision: the block kept stays */
    if (!e) {
        if (!(e = add(pc, id))) return;
        e->tag = tag;
        pc->st.puts++;
    }
    e->parent = parent;
    memcpy(e->check, check, sizeof check);
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

/* ---- purging an owner ------------------------------------------------------------------------ */

/* Remove folder <dir>/<tag>: its files, then itself. 0, or -1 with errno. */
static int purge_folder(const char *dir, uint64_t tag) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%016llx", dir, (unsigned long long)tag) >= (int)sizeof path)
        return errno = ENAMETOOLONG, -1;
    for (int tries = 0; tries < PC_PURGE_TRIES; tries++) {
        DIR *d = opendir(path);
        if (!d) return errno == ENOENT ? 0 : -1;
        struct dirent *de;
        while ((de = readdir(d))) {
            char f[4200];
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            if (snprintf(f, sizeof f, "%s/%s", path, de->d_name) < (int)sizeof f) unlink(f);
        }
        closedir(d);
        if (!rmdir(path) || errno == ENOENT) return 0;
        if (errno != ENOTEMPTY && errno != EEXIST) return -1; /* else a writer just added a file */
    }
    return -1;
}

/* Remove the owner folder `tag` under every model folder of root, and the earlier layout's
 * files (token ids in clear, owner unknown: they go for everyone). */
static int purge_tree(const char *root, uint64_t tag, whale_err *err) {
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? 0 : err_set(err, WHALE_E_IO, "cannot read %s: %s", root, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char dir[4096];
        uint64_t salt;
        struct stat sb;
        const char *dot = hex_name(de->d_name, &salt);
        if (!dot || *dot || snprintf(dir, sizeof dir, "%s/%s", root, de->d_name) >= (int)sizeof dir) continue;
        if (lstat(dir, &sb) || !S_ISDIR(sb.st_mode)) continue;
        if (purge_folder(dir, tag) && !rc)
            rc = err_set(err, WHALE_E_IO, "cannot remove %s/%016llx: %s", dir, (unsigned long long)tag,
                         strerror(errno));
        DIR *m = opendir(dir);
        struct dirent *fe;
        while (m && (fe = readdir(m))) {
            uint64_t id;
            const char *fdot = hex_name(fe->d_name, &id);
            char f[4200];
            if (!fdot || strcmp(fdot, ".kvb")) continue;
            if (snprintf(f, sizeof f, "%s/%s", dir, fe->d_name) >= (int)sizeof f) continue;
            if (!lstat(f, &sb) && S_ISREG(sb.st_mode)) unlink(f);
        }
        if (m) closedir(m);
    }
    closedir(d);
    return rc;
}

int pcache_dir_purge(const char *dir, int64_t owner, whale_err *err) {
    if (!dir || !*dir) return 0;
    uint8_t key[PC_KEY_BYTES];
    int rc = key_open(dir, 0, key, err);
    if (rc == 1) return 0; /* no key: no block was ever written there */
    if (rc) return rc;
    rc = purge_tree(dir, owner_tag(key, owner), err);
    explicit_bzero(key, sizeof key);
    return rc;
}

int pcache_purge(pcache *pc, int64_t owner, whale_err *err) {
    uint64_t tag = owner_tag(pc->key, owner);
    for (size_t i = 0; i < pc->n_bucket; i++)
        for (pc_ent **pp = &pc->bucket[i]; *pp;) {
            pc_ent *e = *pp;
            if (e->tag != tag) {
                pp = &e->next;
                continue;
            }
            if (e->data) ram_remove(pc, e);
            if (e->on_disk) disk_remove(pc, e);
            *pp = e->next;
            free(e);
            pc->n_ent--;
        }
    return pc->root ? purge_tree(pc->root, tag, err) : 0;
}

void pcache_stats_get(const pcache *pc, pcache_stats *out) { *out = pc->st; }
