/* mapfile.c — mmap of model files, and an owned-buffer variant with the same shape so the
 * parsers have one input type whether bytes come from disk or from a fuzzer. */
#include "base/mapfile.h"
#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


int mapfile_open(mapfile *m, const char *path, whale_err *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, WHALE_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, WHALE_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, WHALE_E_IO, "%s: is a directory, expected a file", path);
    }
    char *p = strdup(path);
    if (!p) {
        close(fd);
        return err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
    }
    m->path = p;
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *d = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (d == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(p);
            memset(m, 0, sizeof *m);
            return err_set(err, WHALE_E_IO, "%s: cannot map: %s", path, strerror(e));
        }
        m->data = d;
    }
    close(fd);
    return 0;
}

int mapfile_from_memory(mapfile *m, const void *data, size_t size, const char *name,
                        whale_err *err) {
    memset(m, 0, sizeof *m);
    char *p = strdup(name);
    unsigned char *copy = malloc(size ? size : 1);
    if (!p || !copy) {
        free(p);
        free(copy);
        return err_set(err, WHALE_E_NOMEM, "%s: out of memory", name);
    }
    m->heap = 1;
    if (size) memcpy(copy, data, size);
    m->path = p;
    m->data = copy;
    m->size = size;
    return 0;
}

void mapfile_close(mapfile *m) {
    if (!m || !m->path) return;
    if (!m->heap) {
        if (m->data) munmap((void *)m->data, m->size);
    } else {
        free((void *)m->data);
    }
    free(m->path);
    memset(m, 0, sizeof *m);
}
