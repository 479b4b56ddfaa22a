/* test_cache_owner.c — the engine's caches per owner, through whale.h on the default model:
 * a prompt another owner computed is no hit (slot reuse or context cache), one's own repeat
 * is; whale_engine_purge_owner forgets an owner in a running engine (its context cache blocks
 * in memory and on disk, and the rows its request left in a slot) and leaves the others';
 * whale_cache_purge_owner does the disk part for a directory no engine has open; a purge
 * while the owner's request runs leaves nothing of it reusable. Prompts of
 * 129 ids: two cache blocks of 64 and the last token, which always runs; replies of 1 token. */
#include <dirent.h>
#include <sys/stat.h>

#include "check.h"
#include "whale.h"

#define N_PROMPT 129

static whale_model *g_m;
static char g_dir[256];
static int32_t g_prompt[N_PROMPT];

/* The prompt tokens of one 1-token greedy reply for owner that came from the caches. */
static size_t cached(whale_engine *e, int64_t owner) {
    whale_request r;
    whale_request_default(&r);
    r.prompt = g_prompt;
    r.n_prompt = N_PROMPT;
    r.max_tokens = 1;
    r.sampling.temperature = 0;
    r.owner = owner;
    whale_result res = {0};
    whale_err err = {0};
    int rc = whale_generate(e, &r, NULL, NULL, &res, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return res.n_cached;
}

static whale_engine *engine(int cache) {
    whale_engine_params p;
    whale_engine_params_default(&p);
    p.n_parallel = 1; /* one slot: each request takes the one the last left */
    p.n_ctx = 256;
    p.cache = cache;
    p.cache_ram = (size_t)64 << 20;
    p.cache_disk = (size_t)256 << 20;
    p.cache_dir = g_dir;
    whale_engine *e = NULL;
    whale_err err = {0};
    CHECKF(whale_engine_new(&e, g_m, &p, &err) == 0, "%s", err.msg);
    return e;
}

/* Block files under the cache directory (every model and owner folder). */
static size_t count_blocks(const char *dir) {
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) n += count_blocks(p);
        else n += strstr(de->d_name, ".kvb") != NULL;
    }
    if (d) closedir(d);
    return n;
}

static void test_owners_and_purge(void) {
    whale_engine *e = engine(1);
    if (!e) return;
    CHECK(cached(e, 1) == 0);
    CHECK(cached(e, 1) == 128);          /* the slot's own rows */
    CHECK(cached(e, 2) == 0);            /* neither the slot nor the cache give owner 1's */
    CHECK(cached(e, 1) == 128);          /* from the context cache: the slot held owner 2's */
    CHECK(count_blocks(g_dir) == 4);     /* two blocks each */
    whale_err err = {0};
    CHECKF(whale_engine_purge_owner(e, 1, &err) == 0, "%s", err.msg);
    CHECK(count_blocks(g_dir) == 2);
    CHECK(cached(e, 1) == 0);            /* neither the slot it left nor the cache */
    CHECK(cached(e, 2) == 128);          /* owner 2 keeps its blocks */
    CHECKF(whale_engine_purge_owner(e, 9, &err) == 0, "%s", err.msg); /* nobody: nothing to do */
    whale_engine_free(e);
    /* no engine over the directory: the files alone (owner 1's from after the purge stay) */
    CHECKF(whale_cache_purge_owner(g_dir, 2, &err) == 0, "%s", err.msg);
    CHECK(count_blocks(g_dir) == 2);
    e = engine(1);
    if (!e) return;
    CHECK(cached(e, 2) == 0);
    CHECK(cached(e, 1) == 128);
    whale_engine_free(e);
    CHECK(whale_cache_purge_owner("", 1, &err) == 0);
}

/* Without a context cache only the slot's rows can be reused: a purge drops them. */
static void test_purge_slot_rows(void) {
    whale_engine *e = engine(0);
    if (!e) return;
    CHECK(cached(e, 3) == 0);
    CHECK(cached(e, 3) == 128);
    whale_err err = {0};
    CHECKF(whale_engine_purge_owner(e, 3, &err) == 0, "%s", err.msg);
    CHECK(cached(e, 3) == 0);
    CHECK(cached(e, 3) == 128);          /* cached again from then on */
    whale_engine_free(e);
}

/* A purge while the owner's request runs (from another thread than the engine's): whenever it
 * lands, that request leaves nothing reusable behind, and the owner is cached again after. */
static void test_purge_while_running(void) {
    whale_engine *e = engine(1);
    if (!e) return;
    whale_request r;
    whale_request_default(&r);
    r.prompt = g_prompt;
    r.n_prompt = N_PROMPT;
    r.max_tokens = 8;
    r.sampling.temperature = 0;
    r.owner = 4;
    whale_job *j = NULL;
    whale_err err = {0};
    CHECKF(whale_submit(e, &r, &j, &err) == 0, "%s", err.msg);
    CHECKF(whale_engine_purge_owner(e, 4, &err) == 0, "%s", err.msg);
    int32_t ids[16];
    size_t have = 0;
    int done = 0;
    while (j && !done) have += whale_job_wait(j, have, ids, 16, 1000, &done);
    whale_job_release(j);
    CHECK(cached(e, 4) == 0);
    CHECK(cached(e, 4) == 128);
    whale_engine_free(e);
}

static void cleanup(const char *d) {
    DIR *dir = opendir(d);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) cleanup(p);
        else unlink(p);
    }
    if (dir) closedir(dir);
    rmdir(d);
}

int main(void) {
    whale_err err = {0};
    char path[4096];
    whale_home_path("models/default.gguf", path, sizeof path);
    if (access(path, R_OK)) check_skip_rest_missing(path);
    else if (whale_model_open(&g_m, path, NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/whale-test-cache-owner-%d", (int)getpid());
    for (int i = 0; i < N_PROMPT; i++) g_prompt[i] = 100 + 7 * i;
    RUN(test_owners_and_purge);
    RUN(test_purge_slot_rows);
    RUN(test_purge_while_running);
    cleanup(g_dir);
    whale_model_close(g_m);
    return check_report("test_cache_owner");
}
