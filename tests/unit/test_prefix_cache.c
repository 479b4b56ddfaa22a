/* test_prefix_cache.c — the context cache: blocks found by their whole prefix (a different
 * earlier block means a different block), least recently used eviction in memory with the disk
 * tier catching what memory dropped, blocks surviving into a new cache over the same directory,
 * damaged and foreign files treated as misses (and removed), a crash's temporary files removed
 * but another writer's left alone, other salts kept apart, and a disk budget that holds.
 * Owners (issue #18): the same tokens under two owners are two blocks, never a hit for the
 * other (memory, disk, restart); files hold no token ids; purging an owner (open cache or the
 * directory alone) leaves the others' blocks; changed, moved or made-up files are misses; the
 * key file is private, kept, and shared with a second process. */
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "engine/prefix_cache.h"

#define BB 1000 /* block bytes */

static void fill(uint8_t *b, int seed) {
    for (int i = 0; i < BB; i++) b[i] = (uint8_t)(seed * 31 + i * 7);
}

static void tokens(int32_t *t, size_t n, int seed) {
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)(seed * 1000 + (int)i);
}

static char g_dir[256];

/* The calls by tokens, hashing the chain each time (the scheduler hashes once per prompt), for
 * owner g_owner unless a call names one. */
static uint64_t g_ids[64];
static int64_t g_owner = 1;
static size_t match_(pcache *pc, const int32_t *t, size_t n, size_t max_blocks) {
    size_t nb = n / PC_UNIT < max_blocks ? n / PC_UNIT : max_blocks;
    pcache_chain(pc, g_owner, t, nb, g_ids);
    return pcache_match(pc, g_ids, nb);
}
static int get_(pcache *pc, const int32_t *t, size_t i, void *dst) {
    pcache_chain(pc, g_owner, t, i + 1, g_ids);
    return pcache_get(pc, g_owner, g_ids, t, i, dst);
}
static void put_(pcache *pc, const int32_t *t, size_t i, const void *src) {
    pcache_chain(pc, g_owner, t, i + 1, g_ids);
    pcache_put(pc, g_owner, g_ids, t, i, src);
}
static int has_(pcache *pc, const int32_t *t, size_t i) {
    pcache_chain(pc, g_owner, t, i + 1, g_ids);
    return pcache_has(pc, g_ids, i);
}

static pcache *make(size_t ram_blocks, size_t disk_blocks, uint64_t salt) {
    /* a file is a 40-byte head and the rows: the disk budget holds disk_blocks files exactly */
    pcache_opts o = {BB, salt, ram_blocks * BB, disk_blocks ? g_dir : NULL, disk_blocks * (BB + 100)};
    whale_err err = {0};
    pcache *pc = pcache_new(&o, &err);
    CHECKF(pc != NULL, "%s", err.msg);
    return pc;
}

/* Calls f(path, ctx) for every block file (*.kvb) under the model folder of salt, in any owner
 * folder; returns how many there are. */
static size_t each_file(uint64_t salt, void (*f)(const char *path, void *ctx), void *ctx) {
    char d[512];
    snprintf(d, sizeof d, "%s/%016llx", g_dir, (unsigned long long)salt);
    DIR *dir = opendir(d);
    size_t n = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (de->d_name[0] == '.') continue;
        char sub[800];
        snprintf(sub, sizeof sub, "%s/%s", d, de->d_name);
        DIR *o = opendir(sub);
        struct dirent *fe;
        while (o && (fe = readdir(o))) {
            if (fe->d_name[0] == '.' || !strstr(fe->d_name, ".kvb")) continue;
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", sub, fe->d_name);
            if (f) f(p, ctx);
            n++;
        }
        if (o) closedir(o);
    }
    if (dir) closedir(dir);
    return n;
}

static size_t count_files(uint64_t salt) { return each_file(salt, NULL, NULL); }

/* The path of block file id (under any owner folder) into ctx's buffer, when it exists. */
typedef struct { uint64_t id; char path[1200]; } find_ctx;
static void find_cb(const char *path, void *ctx) {
    find_ctx *c = ctx;
    char name[40];
    snprintf(name, sizeof name, "/%016llx.kvb", (unsigned long long)c->id);
    if (strstr(path, name)) snprintf(c->path, sizeof c->path, "%s", path);
}
static const char *file_of(uint64_t salt, uint64_t id, find_ctx *c) {
    c->id = id;
    c->path[0] = 0;
    each_file(salt, find_cb, c);
    return c->path[0] ? c->path : NULL;
}

static void test_memory(void) {
    pcache *pc = make(3, 0, 7);
    int32_t a[4 * PC_UNIT], b[4 * PC_UNIT];
    tokens(a, 4 * PC_UNIT, 1);
    memcpy(b, a, sizeof b);
    b[5] = -1; /* b differs from a in block 0 only */
    uint8_t x[BB], y[BB];
    CHECK(match_(pc, a, 4 * PC_UNIT, 10) == 0);
    for (int i = 0; i < 3; i++) fill(x, i), put_(pc, a, (size_t)i, x);
    CHECK(match_(pc, a, 4 * PC_UNIT, 10) == 3);
    CHECK(match_(pc, a, 4 * PC_UNIT, 2) == 2);
    CHECK(match_(pc, a, 2 * PC_UNIT + 10, 10) == 2); /* only whole blocks */
    CHECK(match_(pc, b, 4 * PC_UNIT, 10) == 0);      /* block 1 of b has other history */
    CHECK(get_(pc, b, 1, y) == -1);
    CHECK(get_(pc, a, 1, y) == 0);
    fill(x, 1);
    CHECK(!memcmp(x, y, BB));
    /* a fourth block evicts the least recently used: block 0 (block 1 was just read, 2 after 0) */
    fill(x, 3);
    put_(pc, a, 3, x);
    CHECK(!has_(pc, a, 0) && has_(pc, a, 1) && has_(pc, a, 2) && has_(pc, a, 3));
    CHECK(match_(pc, a, 4 * PC_UNIT, 10) == 0); /* a prefix needs its first block */
    pcache_stats st;
    pcache_stats_get(pc, &st);
    CHECK(st.ram_blocks == 3 && st.ram_bytes == 3 * BB && st.hits_ram == 1 && st.puts == 4);
    pcache_free(pc);
}

static void test_disk(void) {
    int32_t a[3 * PC_UNIT];
    tokens(a, 3 * PC_UNIT, 2);
    uint8_t x[BB], y[BB];
    pcache *pc = make(1, 10, 9);
    for (int i = 0; i < 3; i++) fill(x, 10 + i), put_(pc, a, (size_t)i, x);
    CHECK(count_files(9) == 3);
    CHECK(match_(pc, a, sizeof a / sizeof *a, 10) == 3); /* memory kept one, disk has all */
    CHECK(get_(pc, a, 0, y) == 0);
    fill(x, 10);
    CHECK(!memcmp(x, y, BB));
    pcache_stats st;
    pcache_stats_get(pc, &st);
    CHECK(st.hits_disk == 1 && st.disk_blocks == 3 && st.ram_blocks == 1);
    pcache_free(pc);

    /* a new cache over the same directory: a restart */
    pc = make(1, 10, 9);
    CHECK(match_(pc, a, sizeof a / sizeof *a, 10) == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(get_(pc, a, (size_t)i, y) == 0);
        fill(x, 10 + i);
        CHECK(!memcmp(x, y, BB));
    }
    /* other salt (another model): nothing shared */
    pcache *other = make(1, 10, 10);
    CHECK(match_(other, a, sizeof a / sizeof *a, 10) == 0);
    pcache_free(other);
    pcache_free(pc);

    /* damage the files of blocks 1 and 2: misses, the files removed, block 0 still served */
    pc = make(0, 10, 9);
    uint64_t ids[3];
    pcache_chain(pc, g_owner, a, 3, ids);
    find_ctx fc;
    for (int i = 1; i < 3; i++) {
        FILE *fp = file_of(9, ids[i], &fc) ? fopen(fc.path, "r+b") : NULL;
        CHECK(fp != NULL);
        if (!fp) continue;
        fseek(fp, -5, SEEK_END);
        int c = fgetc(fp);
        fseek(fp, -5, SEEK_END);
        fputc(0xAB ^ c, fp);
        fclose(fp);
    }
    CHECK(get_(pc, a, 0, y) == 0);
    CHECK(get_(pc, a, 1, y) == -1);
    CHECK(match_(pc, a, sizeof a / sizeof *a, 10) == 1);
    pcache_stats_get(pc, &st);
    CHECK(st.disk_errors == 1 && st.disk_blocks == 2);
    CHECK(count_files(9) == 2);
    /* a truncated file and a stray temporary in the owner's folder, and a file of the layout
     * before owners (tokens in clear, beside the owner folders), are dropped when the directory
     * is indexed */
    char owner_dir[1200], p[1400], legacy[512];
    CHECK(file_of(9, ids[0], &fc) != NULL);
    snprintf(owner_dir, sizeof owner_dir, "%s", fc.path);
    *strrchr(owner_dir, '/') = 0;
    snprintf(p, sizeof p, "%s/%016llx.kvb", owner_dir, 0x1234ull);
    FILE *fp = fopen(p, "wb");
    fputs("short", fp);
    fclose(fp);
    snprintf(legacy, sizeof legacy, "%s/%016llx/%016llx.kvb", g_dir, 9ull, 0x4321ull);
    fp = fopen(legacy, "wb");
    fputs("WHKVB001 and token ids", fp);
    fclose(fp);
    snprintf(p, sizeof p, "%s/%016llx.tmp.abcdef", owner_dir, 0x1235ull);
    fp = fopen(p, "wb");
    fclose(fp);
    char fresh[1400]; /* another writer's file in progress: left alone */
    snprintf(fresh, sizeof fresh, "%s/%016llx.tmp.ghijkl", owner_dir, 0x1236ull);
    fp = fopen(fresh, "wb");
    fclose(fp);
    struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    utimensat(AT_FDCWD, p, old, 0); /* a crash's leftover, two hours old: removed */
    pcache_free(pc);
    pc = make(0, 10, 9);
    CHECK(count_files(9) == 2 && access(fresh, F_OK) == 0 && access(p, F_OK) != 0 && access(legacy, F_OK) != 0);
    unlink(fresh);
    pcache_free(pc);
}

static void test_disk_budget(void) {
    int32_t a[8 * PC_UNIT];
    tokens(a, 8 * PC_UNIT, 3);
    uint8_t x[BB];
    pcache *pc = make(0, 4, 11);
    for (int i = 0; i < 8; i++) fill(x, i), put_(pc, a, (size_t)i, x);
    pcache_stats st;
    pcache_stats_get(pc, &st);
    CHECK(st.disk_blocks == 4 && count_files(11) == 4);
    CHECK(has_(pc, a, 7) && !has_(pc, a, 0));
    pcache_free(pc);
    pc = make(0, 2, 11); /* a smaller budget on restart trims the directory */
    CHECK(count_files(11) == 2);
    pcache_free(pc);
}

/* Two owners sending the same tokens: different ids, and neither's blocks are a hit for the
 * other, in memory, on disk and after a restart (issue #18: a hit must not tell one user what
 * another sent). */
static void test_owners_apart(void) {
    int32_t a[3 * PC_UNIT];
    tokens(a, 3 * PC_UNIT, 4);
    uint8_t x[BB], y[BB];
    uint64_t id1[3], id2[3];
    pcache *pc = make(10, 10, 21);
    pcache_chain(pc, 1, a, 3, id1);
    pcache_chain(pc, 2, a, 3, id2);
    for (int i = 0; i < 3; i++) CHECK(id1[i] != id2[i]);
    for (int i = 0; i < 3; i++) fill(x, 30 + i), pcache_put(pc, 1, id1, a, (size_t)i, x);
    CHECK(pcache_match(pc, id1, 3) == 3);
    CHECK(pcache_match(pc, id2, 3) == 0);
    CHECK(pcache_get(pc, 2, id2, a, 0, y) == -1);
    CHECK(pcache_get(pc, 2, id1, a, 0, y) == -1); /* owner 2 with owner 1's ids, had it learnt them */
    CHECK(pcache_get(pc, 1, id1, a, 0, y) == 0);
    pcache_stats st;
    pcache_stats_get(pc, &st);
    CHECK(st.hits_ram == 1 && st.hits_disk == 0);
    pcache_free(pc);
    pc = make(0, 10, 21); /* a restart: from disk */
    uint64_t again[3];
    pcache_chain(pc, 1, a, 3, again);
    CHECK(!memcmp(again, id1, sizeof again)); /* the same key: the same names */
    CHECK(pcache_match(pc, id2, 3) == 0 && pcache_get(pc, 2, id1, a, 0, y) == -1);
    CHECK(pcache_match(pc, id1, 3) == 3 && pcache_get(pc, 1, id1, a, 1, y) == 0);
    fill(x, 31);
    CHECK(!memcmp(x, y, BB));
    pcache_free(pc);
}

/* Without a directory each cache has a key of its own: the same tokens get other names. */
static void test_memory_keys_differ(void) {
    int32_t a[PC_UNIT];
    tokens(a, PC_UNIT, 5);
    pcache *p1 = make(4, 0, 22), *p2 = make(4, 0, 22);
    uint64_t i1, i2;
    pcache_chain(p1, 0, a, 1, &i1);
    pcache_chain(p2, 0, a, 1, &i2);
    CHECK(i1 != i2);
    pcache_free(p1);
    pcache_free(p2);
}

/* Whether any of n tokens (as the little-endian int32 the prompt is made of) is in the file. */
typedef struct { const int32_t *tok; size_t n; size_t found, files; } scan_ctx;
static void scan_cb(const char *path, void *ctx) {
    scan_ctx *c = ctx;
    static uint8_t buf[BB + 4096];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    c->files++;
    for (size_t at = 0; at + 4 <= n; at++)
        for (size_t t = 0; t < c->n; t++) {
            uint8_t le[4];
            uint32_t v = (uint32_t)c->tok[t];
            for (int k = 0; k < 4; k++) le[k] = (uint8_t)(v >> (8 * k));
            c->found += !memcmp(buf + at, le, 4);
        }
}

/* A block file holds none of its tokens (they were in clear before issue #18). */
static void test_no_tokens_in_files(void) {
    int32_t a[2 * PC_UNIT];
    for (int i = 0; i < 2 * PC_UNIT; i++) a[i] = 0x5A5A0000 + 3 * i; /* bytes unlike the rows' pattern */
    uint8_t x[BB];
    pcache *pc = make(2, 10, 23);
    for (int i = 0; i < 2; i++) fill(x, 40 + i), put_(pc, a, (size_t)i, x);
    pcache_free(pc);
    scan_ctx c = {a, 2 * PC_UNIT, 0, 0};
    each_file(23, scan_cb, &c);
    CHECK(c.files == 2);
    CHECKF(c.found == 0, "%zu token ids found in the files", c.found);
}

/* Purging an owner: its blocks leave memory and disk, under every model's folder, in the open
 * cache or from the directory alone; the other owners' stay. */
static void test_purge(void) {
    int32_t a[2 * PC_UNIT];
    tokens(a, 2 * PC_UNIT, 6);
    uint8_t x[BB], y[BB];
    uint64_t id1[2], id2[2], id3[2];
    whale_err err = {0};
    pcache *pc = make(10, 10, 24), *other = make(10, 10, 25); /* two models, one directory */
    pcache_chain(pc, 1, a, 2, id1);
    pcache_chain(pc, 2, a, 2, id2);
    pcache_chain(pc, 3, a, 2, id3);
    for (int i = 0; i < 2; i++) {
        fill(x, 50 + i);
        pcache_put(pc, 1, id1, a, (size_t)i, x);
        pcache_put(pc, 2, id2, a, (size_t)i, x);
    }
    uint64_t o1[2];
    pcache_chain(other, 1, a, 2, o1);
    pcache_put(other, 1, o1, a, 0, x);
    CHECK(count_files(24) == 4 && count_files(25) == 1);
    CHECKF(pcache_purge(pc, 1, &err) == 0, "%s", err.msg);
    CHECK(pcache_match(pc, id1, 2) == 0 && pcache_get(pc, 1, id1, a, 0, y) == -1);
    CHECK(pcache_match(pc, id2, 2) == 2 && pcache_get(pc, 2, id2, a, 1, y) == 0);
    CHECK(count_files(24) == 2 && count_files(25) == 0);
    pcache_stats st;
    pcache_stats_get(pc, &st);
    CHECK(st.ram_blocks == 2 && st.disk_blocks == 2 && st.ram_bytes == 2 * BB);
    pcache_put(pc, 3, id3, a, 0, x);
    pcache_free(other);
    pcache_free(pc);
    pc = make(10, 10, 24); /* a restart finds owner 2's and 3's only */
    CHECK(pcache_match(pc, id1, 2) == 0 && pcache_match(pc, id2, 2) == 2 && pcache_match(pc, id3, 2) == 1);
    pcache_free(pc);
    /* the directory alone, as `whale admin` deleting a user would */
    CHECKF(pcache_dir_purge(g_dir, 2, &err) == 0, "%s", err.msg);
    CHECK(count_files(24) == 1);
    pc = make(10, 10, 24);
    CHECK(pcache_match(pc, id2, 2) == 0 && pcache_match(pc, id3, 2) == 1 && pcache_get(pc, 3, id3, a, 0, y) == 0);
    pcache_free(pc);
    /* nothing kept there: nothing to do */
    CHECK(pcache_dir_purge("/nonexistent/whale-test-pcache", 2, &err) == 0);
    CHECK(pcache_dir_purge(NULL, 2, &err) == 0 && pcache_dir_purge("", 2, &err) == 0);
}

static void flip(const char *path, long at) { /* at < 0: from the end */
    FILE *fp = fopen(path, "r+b");
    CHECK(fp != NULL);
    if (!fp) return;
    fseek(fp, at, at < 0 ? SEEK_END : SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, at, at < 0 ? SEEK_END : SEEK_SET);
    fputc(c ^ 0x5A, fp);
    fclose(fp);
}

static void copy_file(const char *from, const char *to) {
    static uint8_t buf[BB + 4096];
    FILE *f = fopen(from, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    f = fopen(to, "wb");
    CHECK(f && n > BB);
    if (f) fwrite(buf, 1, n, f), fclose(f);
}

/* Files changed, moved between owners or made up are misses (and are deleted). */
static void test_forged_files(void) {
    int32_t a[3 * PC_UNIT];
    tokens(a, 3 * PC_UNIT, 7);
    uint8_t x[BB], y[BB];
    uint64_t id1[3], id2[3];
    pcache *pc = make(0, 10, 26);
    pcache_chain(pc, 1, a, 3, id1);
    pcache_chain(pc, 2, a, 3, id2);
    for (int i = 0; i < 2; i++) fill(x, 60 + i), pcache_put(pc, 1, id1, a, (size_t)i, x);
    fill(x, 70);
    pcache_put(pc, 2, id2, a, 0, x);
    pcache_free(pc);
    find_ctx f1, f2;
    CHECK(file_of(26, id1[0], &f1) && file_of(26, id2[0], &f2));
    copy_file(f1.path, f2.path);                  /* owner 1's block 0 as owner 2's */
    CHECK(file_of(26, id1[1], &f1));
    flip(f1.path, 24);                            /* owner 1's block 1: its check changed */
    char forged[1400], dir1[1200];                /* owner 1's block 2, made up: header right, check not */
    snprintf(dir1, sizeof dir1, "%s", f1.path);
    *strrchr(dir1, '/') = 0;
    snprintf(forged, sizeof forged, "%s/%016llx.kvb", dir1, (unsigned long long)id1[2]);
    copy_file(f1.path, forged);
    FILE *fp = fopen(forged, "r+b");
    uint64_t id = id1[2];
    if (fp) fseek(fp, 8, SEEK_SET), fwrite(&id, 8, 1, fp), fclose(fp);
    pc = make(0, 10, 26);
    CHECK(pcache_match(pc, id1, 3) == 3); /* names are only names */
    CHECK(pcache_get(pc, 2, id2, a, 0, y) == -1);
    CHECK(pcache_get(pc, 1, id1, a, 0, y) == 0);
    fill(x, 60);
    CHECK(!memcmp(x, y, BB));
    CHECK(pcache_get(pc, 1, id1, a, 1, y) == -1);
    CHECK(pcache_get(pc, 1, id1, a, 2, y) == -1);
    pcache_stats st;
    pcache_stats_get(pc, &st);
    CHECK(st.disk_errors == 3 && st.disk_blocks == 1 && count_files(26) == 1);
    pcache_free(pc);
    /* the rows changed, the head intact */
    pc = make(0, 10, 26);
    CHECK(file_of(26, id1[0], &f1));
    flip(f1.path, -7);
    CHECK(pcache_get(pc, 1, id1, a, 0, y) == -1);
    pcache_free(pc);
}

static int read_key(const char *path, uint8_t *k) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(k, 1, 64, f) : 0;
    if (f) fclose(f);
    return (int)n;
}

/* The key: made on first use, private (0600 whatever the umask), kept across reopening and
 * shared by a second process, which finds its own owner's blocks and not another's; a key
 * other users may read, or a damaged one, is refused. */
static void test_key_file(void) {
    char kp[700], fresh[600];
    struct stat sb;
    snprintf(fresh, sizeof fresh, "%s-fresh", g_dir);
    snprintf(kp, sizeof kp, "%s/" PC_KEY_FILE, fresh);
    mode_t um = umask(0);
    pcache_opts o = {BB, 28, 0, fresh, 10 * (BB + 512)};
    whale_err err = {0};
    pcache *pc = pcache_new(&o, &err);
    umask(um);
    CHECKF(pc != NULL, "%s", err.msg);
    if (!pc) return;
    CHECK(!stat(kp, &sb) && (sb.st_mode & 0777) == 0600 && sb.st_size == 32);
    uint8_t k1[64], k2[64];
    CHECK(read_key(kp, k1) == 32);
    int32_t a[2 * PC_UNIT];
    tokens(a, 2 * PC_UNIT, 8);
    uint8_t x[BB];
    uint64_t id7[2], id8[2];
    pcache_chain(pc, 7, a, 2, id7);
    pcache_chain(pc, 8, a, 2, id8);
    for (int i = 0; i < 2; i++) fill(x, 80 + i), pcache_put(pc, 7, id7, a, (size_t)i, x);
    pcache_free(pc);
    pid_t pid = fork();
    if (pid == 0) { /* a second process */
        pcache *c = pcache_new(&o, NULL);
        uint8_t y[BB];
        uint64_t ids[2];
        int ok = c != NULL;
        if (ok) pcache_chain(c, 7, a, 2, ids);
        ok = ok && !memcmp(ids, id7, sizeof ids) && pcache_match(c, ids, 2) == 2 && !pcache_get(c, 7, ids, a, 1, y);
        ok = ok && !memcmp(x, y, BB) && pcache_match(c, id8, 2) == 0;
        pcache_free(c);
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(read_key(kp, k2) == 32 && !memcmp(k1, k2, 32));
    chmod(kp, 0644);
    CHECK(!pcache_new(&o, &err) && strstr(err.msg, "chmod 600"));
    chmod(kp, 0600);
    FILE *f = fopen(kp, "wb");
    fputs("short", f);
    fclose(f);
    err.code = 0;
    CHECK(!pcache_new(&o, &err) && err.code == WHALE_E_FORMAT);
    CHECK(pcache_dir_purge(fresh, 7, &err) == WHALE_E_FORMAT);
    f = fopen(kp, "wb");
    fwrite(k1, 1, 32, f);
    fclose(f);
    pc = pcache_new(&o, &err);
    CHECK(pc && pcache_match(pc, id7, 2) == 2);
    pcache_free(pc);
}

static void cleanup(const char *d) {
    DIR *dir = opendir(d);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (de->d_name[0] == '.') continue;
        char p[800];
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        struct stat sb;
        if (!stat(p, &sb) && S_ISDIR(sb.st_mode)) cleanup(p);
        else unlink(p);
    }
    if (dir) closedir(dir);
    rmdir(d);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/whale-test-pcache-%d/cache", (int)getpid());
    RUN(test_memory);
    RUN(test_disk);
    RUN(test_disk_budget);
    RUN(test_owners_apart);
    RUN(test_memory_keys_differ);
    RUN(test_no_tokens_in_files);
    RUN(test_purge);
    RUN(test_forged_files);
    RUN(test_key_file);
    char top[256];
    snprintf(top, sizeof top, "/tmp/whale-test-pcache-%d", (int)getpid());
    cleanup(top);
    return check_report("test_prefix_cache");
}
