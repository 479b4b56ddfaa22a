/* test_prefix_cache.c — the context cache: blocks found by their whole prefix (a different
 * earlier block means a different block), least recently used eviction in memory with the disk
 * tier catching what memory dropped, blocks surviving into a new cache over the same directory,
 * damaged and foreign files treated as misses (and removed), a crash's temporary files removed
 * but another writer's left alone, other salts kept apart, and a disk budget that holds. */
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <stdint.h>
#include <sys/stat.h>
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

/* The calls by tokens, hashing the chain each time (the scheduler hashes once per prompt). */
static uint64_t g_ids[64];
static size_t match_(pcache *pc, const int32_t *t, size_t n, size_t max_blocks) {
    size_t nb = n / PC_UNIT < max_blocks ? n / PC_UNIT : max_blocks;
    pcache_chain(pc, t, nb, g_ids);
    return pcache_match(pc, g_ids, nb);
}
static int get_(pcache *pc, const int32_t *t, size_t i, void *dst) {
    pcache_chain(pc, t, i + 1, g_ids);
    return pcache_get(pc, g_ids, t, i, dst);
}
static void put_(pcache *pc, const int32_t *t, size_t i, const void *src) {
    pcache_chain(pc, t, i + 1, g_ids);
    pcache_put(pc, g_ids, t, i, src);
}
static int has_(pcache *pc, const int32_t *t, size_t i) {
    pcache_chain(pc, t, i + 1, g_ids);
    return pcache_has(pc, g_ids, i);
}

static pcache *make(size_t ram_blocks, size_t disk_blocks, uint64_t salt) {
    pcache_opts o = {BB, salt, ram_blocks * BB, disk_blocks ? g_dir : NULL, disk_blocks * (BB + 512)};
    whale_err err = {0};
    pcache *pc = pcache_new(&o, &err);
    CHECKF(pc != NULL, "%s", err.msg);
    return pc;
}

static size_t count_files(uint64_t salt) {
    char d[512];
    snprintf(d, sizeof d, "%s/%016llx", g_dir, (unsigned long long)salt);
    DIR *dir = opendir(d);
    size_t n = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)))
        if (de->d_name[0] != '.') n++;
    if (dir) closedir(dir);
    return n;
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

    /* damage block 1's file: a miss, the file removed, block 0 still served */
    char p[512];
    pc = make(0, 10, 9);
    DIR *dir;
    snprintf(p, sizeof p, "%s/%016llx", g_dir, 9ull);
    dir = opendir(p);
    struct dirent *de;
    int damaged = 0;
    while (dir && (de = readdir(dir))) { /* flip one data byte in every file but block 0's */
        if (de->d_name[0] == '.') continue;
        char f[800];
        snprintf(f, sizeof f, "%s/%s", p, de->d_name);
        FILE *fp = fopen(f, "r+b");
        if (!fp) continue;
        uint8_t hd[BB + 512];
        size_t n = fread(hd, 1, sizeof hd, fp);
        (void)n;
        /* block 0's parent id (bytes 24..31 of the header: magic, salt, id, parent) is 0 */
        uint64_t parent;
        memcpy(&parent, hd + 24, 8);
        if (parent) {
            fseek(fp, -5, SEEK_END);
            fputc(0xAB ^ hd[n - 5], fp);
            damaged++;
        }
        fclose(fp);
    }
    if (dir) closedir(dir);
    CHECK(damaged == 2);
    CHECK(get_(pc, a, 0, y) == 0);
    CHECK(get_(pc, a, 1, y) == -1);
    CHECK(match_(pc, a, sizeof a / sizeof *a, 10) == 1);
    pcache_stats_get(pc, &st);
    CHECK(st.disk_errors == 1 && st.disk_blocks == 2);
    CHECK(count_files(9) == 2);
    /* a truncated file and a stray temporary are dropped when the directory is indexed */
    snprintf(p, sizeof p, "%s/%016llx/%016llx.kvb", g_dir, 9ull, 0x1234ull);
    FILE *fp = fopen(p, "wb");
    fputs("short", fp);
    fclose(fp);
    snprintf(p, sizeof p, "%s/%016llx/%016llx.tmp.abcdef", g_dir, 9ull, 0x1235ull);
    fp = fopen(p, "wb");
    fclose(fp);
    char fresh[512]; /* another writer's file in progress: left alone */
    snprintf(fresh, sizeof fresh, "%s/%016llx/%016llx.tmp.ghijkl", g_dir, 9ull, 0x1236ull);
    fp = fopen(fresh, "wb");
    fclose(fp);
    struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    utimensat(AT_FDCWD, p, old, 0); /* a crash's leftover, two hours old: removed */
    pcache_free(pc);
    pc = make(0, 10, 9);
    CHECK(count_files(9) == 3 && access(fresh, F_OK) == 0 && access(p, F_OK) != 0);
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
    char top[256];
    snprintf(top, sizeof top, "/tmp/whale-test-pcache-%d", (int)getpid());
    cleanup(top);
    return check_report("test_prefix_cache");
}
