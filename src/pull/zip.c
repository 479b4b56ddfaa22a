/* zip.c — reading one member out of a wheel (see zip.h). The central directory is trusted for
 * nothing: every offset and size is checked against the file before it is used. */
#include <string.h>
#include <zlib.h>

#include "base/cursor.h"
#include "base/err.h"
#include "base/mapfile.h"
#include "pull/zip.h"

enum { EOCD_SIG = 0x06054b50, CDIR_SIG = 0x02014b50, LOCAL_SIG = 0x04034b50 };

typedef struct member {
    uint16_t method, flags;
    uint32_t crc, csize, usize, local;
} member;

/* Find the end-of-central-directory record (it ends the file, after a comment of up to 64 KiB). */
static int find_eocd(const mapfile *m, uint32_t *cdir_off, uint16_t *count) {
    if (m->size < 22) return -1;
    size_t lo = m->size > 22 + 65535 ? m->size - 22 - 65535 : 0;
    for (size_t i = m->size - 22 + 1; i-- > lo;) {
        cursor c = cursor_make(m->data + i, m->size - i);
        if (cursor_u32(&c) != EOCD_SIG) continue;
        cursor_take(&c, 6); /* disk numbers, entries on this disk */
        *count = cursor_u16(&c);
        cursor_take(&c, 4); /* directory size */
        *cdir_off = cursor_u32(&c);
        return c.bad ? -1 : 0;
    }
    return -1;
}

static int copy_member(const mapfile *m, const member *e, FILE *out, whale_err *err) {
    cursor c = cursor_make(m->data, m->size);
    c.pos = e->local; /* checked < size by the caller */
    if (cursor_u32(&c) != LOCAL_SIG) return err_set(err, WHALE_E_FORMAT, "bad local header");
    cursor_take(&c, 22);
    uint16_t n = cursor_u16(&c), x = cursor_u16(&c);
    cursor_take(&c, (size_t)n + x);
    const unsigned char *data = cursor_take(&c, e->csize);
    if (!data) return err_set(err, WHALE_E_FORMAT, "member runs past the end of the file");
    uLong crc = crc32(0L, Z_NULL, 0);
    if (e->method == 0) {
        if (e->csize != e->usize) return err_set(err, WHALE_E_FORMAT, "stored member's sizes differ");
        crc = crc32_z(crc, data, e->usize);
        if (fwrite(data, 1, e->usize, out) != e->usize) return err_set(err, WHALE_E_IO, "write failed: %m");
    } else {
        z_stream z = {0};
        if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return err_set(err, WHALE_E_NOMEM, "out of memory");
        unsigned char buf[1 << 16];
        uint64_t total = 0;
        int zr = Z_OK;
        z.next_in = (unsigned char *)data;
        z.avail_in = e->csize;
        while (zr != Z_STREAM_END) {
            z.next_out = buf;
            z.avail_out = sizeof buf;
            zr = inflate(&z, Z_NO_FLUSH);
            if (zr != Z_OK && zr != Z_STREAM_END) break;
            size_t got = sizeof buf - z.avail_out;
            total += got;
            if (total > e->usize) break;
            crc = crc32_z(crc, buf, got);
            if (fwrite(buf, 1, got, out) != got) {
                inflateEnd(&z);
                return err_set(err, WHALE_E_IO, "write failed: %m");
            }
            if (zr == Z_OK && got == 0 && z.avail_in == 0) break; /* truncated stream */
        }
        inflateEnd(&z);
        if (zr != Z_STREAM_END || total != e->usize) return err_set(err, WHALE_E_FORMAT, "damaged deflate data");
    }
    if (crc != e->crc) return err_set(err, WHALE_E_FORMAT, "CRC-32 mismatch");
    return 0;
}

static int extract(const mapfile *mp, int (*match)(const char *name, size_t n), uint64_t max_size, FILE *out,
                   uint64_t *written, whale_err *err) {
    const mapfile m = *mp;
    int rc = 0;
    uint32_t off;
    uint16_t count;
    member found = {0};
    int n_found = 0;
    if (find_eocd(&m, &off, &count) || off >= m.size) {
        rc = err_set(err, WHALE_E_FORMAT, "not a zip file (no central directory)");
        goto done;
    }
    cursor c = cursor_make(m.data, m.size);
    c.pos = off;
    for (int i = 0; i < count; i++) {
        if (cursor_u32(&c) != CDIR_SIG) {
            rc = err_set(err, WHALE_E_FORMAT, "damaged central directory");
            goto done;
        }
        member e;
        cursor_take(&c, 4);
        e.flags = cursor_u16(&c);
        e.method = cursor_u16(&c);
        cursor_take(&c, 4);
        e.crc = cursor_u32(&c);
        e.csize = cursor_u32(&c);
        e.usize = cursor_u32(&c);
        uint16_t n = cursor_u16(&c), x = cursor_u16(&c), k = cursor_u16(&c);
        cursor_take(&c, 8);
        e.local = cursor_u32(&c);
        const unsigned char *name = cursor_take(&c, n);
        cursor_take(&c, (size_t)x + k);
        if (c.bad) {
            rc = err_set(err, WHALE_E_FORMAT, "damaged central directory");
            goto done;
        }
        if (!match((const char *)name, n)) continue;
        if (e.csize == 0xffffffffu || e.usize == 0xffffffffu || e.local == 0xffffffffu || e.local >= m.size) {
            rc = err_set(err, WHALE_E_UNSUPPORTED, "member %.*s: zip64 or a bad offset", (int)n, (const char *)name);
            goto done;
        }
        if ((e.flags & 1) || (e.method != 0 && e.method != 8)) {
            rc = err_set(err, WHALE_E_UNSUPPORTED, "member %.*s: encrypted or compressed with method %d", (int)n,
                         (const char *)name, e.method);
            goto done;
        }
        found = e;
        n_found++;
    }
    if (n_found != 1) {
        rc = err_set(err, WHALE_E_FORMAT, "expected one data file (*/data/*.bin), found %d", n_found);
        goto done;
    }
    if (max_size && found.usize > max_size) {
        rc = err_set(err, WHALE_E_FORMAT, "its data file says %u bytes, more than the %llu the model has left", found.usize,
                     (unsigned long long)max_size);
        goto done;
    }
    if (!(rc = copy_member(&m, &found, out, err))) *written = found.usize;
done:
    return rc;
}

int zip_extract_one(const char *zip_path, int (*match)(const char *name, size_t n), uint64_t max_size, FILE *out,
                    uint64_t *written, whale_err *err) {
    mapfile m;
    int rc = mapfile_open(&m, zip_path, err);
    if (!rc) rc = extract(&m, match, max_size, out, written, err);
    mapfile_close(&m);
    return rc ? err_prefix(err, "%s", zip_path) : 0;
}

int zip_extract_one_memory(const void *data, size_t n, int (*match)(const char *name, size_t n), uint64_t max_size,
                           FILE *out, uint64_t *written, whale_err *err) {
    mapfile m;
    int rc = mapfile_from_memory(&m, data, n, "zip", err);
    if (!rc) rc = extract(&m, match, max_size, out, written, err);
    mapfile_close(&m);
    return rc;
}
