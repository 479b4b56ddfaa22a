/* docs.c — the document readers of docs.h over one buffered file. */
#include "data/docs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int doc_reader_open(doc_reader *r, const char *path, int jsonl, int64_t offset, int64_t line,
                    whale_err *err) {
    memset(r, 0, sizeof *r);
    r->jsonl = jsonl;
    r->f = fopen(path, "rb");
    if (!r->f) return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(errno));
    if (offset && fseeko(r->f, (off_t)offset, SEEK_SET)) {
        doc_reader_close(r);
        return err_set(err, WHALE_E_IO, "%s: cannot seek to %lld: %s", path, (long long)offset,
                       strerror(errno));
    }
    r->buf = malloc(DOC_READ_BUF);
    if (!r->buf) {
        doc_reader_close(r);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    r->offset = r->resume_offset = offset;
    r->line = r->resume_line = line;
    return 0;
}

void doc_reader_close(doc_reader *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    strbuf_free(&r->lbuf);
    strbuf_free(&r->doc);
    memset(r, 0, sizeof *r);
}

static void clear(strbuf *b) {
    b->n = 0;
    if (b->s) b->s[0] = 0;
}

/* One line into r->lbuf without its "\n" (kept to DOC_MAX_BYTES; r->line_over beyond).
 * Returns 1, 0 at the end of the file, WHALE_E_IO or WHALE_E_NOMEM. */
static int read_line(doc_reader *r, whale_err *err) {
    clear(&r->lbuf);
    r->line_over = 0;
    int any = 0;
    for (;;) {
        if (r->buf_pos == r->buf_n) {
            r->buf_n = fread(r->buf, 1, DOC_READ_BUF, r->f);
            r->buf_pos = 0;
            if (!r->buf_n) {
                if (ferror(r->f))
                    return err_set(err, WHALE_E_IO, "read failed: %s", strerror(errno));
                if (any) r->line++;
                return any;
            }
        }
        any = 1;
        const char *s = r->buf + r->buf_pos;
        size_t left = r->buf_n - r->buf_pos;
        const char *nl = memchr(s, '\n', left);
        size_t take = nl ? (size_t)(nl - s) : left;
        if (!r->line_over) {
            if (r->lbuf.n + take > DOC_MAX_BYTES)
                r->line_over = 1;
            else if (strbuf_add(&r->lbuf, s, take))
                return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
        r->buf_pos += take + (nl ? 1 : 0);
        r->offset += (int64_t)(take + (nl ? 1 : 0));
        if (nl) {
            r->line++;
            return 1;
        }
    }
}

static int blank(const strbuf *b) {
    for (size_t i = 0; i < b->n; i++)
        if (!strchr(" \t\r\v\f", b->s[i])) return 0;
    return 1;
}

static int next_text(doc_reader *r, whale_err *err) {
    int have = 0;
    for (;;) {
        int rc = read_line(r, err);
        if (rc < 0) return rc;
        if (rc == 0 || (!r->line_over && blank(&r->lbuf))) {
            if (!have && rc == 0) return 0;
            if (!have) continue;
            break;
        }
        if (!have) r->doc_line = r->line;
        have = 1;
        if (r->status == DOC_TOO_LARGE) continue;
        if (r->line_over || r->doc.n + r->lbuf.n + 1 > DOC_MAX_BYTES) {
            r->status = DOC_TOO_LARGE;
            continue;
        }
        if ((r->doc.n && strbuf_add(&r->doc, "\n", 1)) ||
            strbuf_add(&r->doc, r->lbuf.s ? r->lbuf.s : "", r->lbuf.n))
            return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    if (r->doc.n && r->doc.s[r->doc.n - 1] == '\r')
        r->doc.s[--r->doc.n] = 0; /* the last line's CRLF */
    return 1;
}

static int next_jsonl(doc_reader *r, whale_err *err) {
    for (;;) {
        int rc = read_line(r, err);
        if (rc <= 0) return rc;
        if (!r->line_over && blank(&r->lbuf)) continue;
        r->doc_line = r->line;
        if (r->line_over) {
            r->status = DOC_TOO_LARGE;
            return 1;
        }
        cJSON *j = cJSON_ParseWithLength(r->lbuf.s, r->lbuf.n);
        cJSON *t = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
        if (!j) {
            r->status = DOC_MALFORMED, r->why = "not valid JSON";
        } else if (!cJSON_IsString(t)) {
            r->status = DOC_MALFORMED,
            r->why = cJSON_IsObject(j) ? "no \"text\" string" : "not a JSON object";
        } else if (strbuf_add(&r->doc, t->valuestring, strlen(t->valuestring))) {
            cJSON_Delete(j);
            return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
        cJSON_Delete(j);
        return 1;
    }
}

int doc_reader_next(doc_reader *r, whale_err *err) {
    clear(&r->doc);
    r->status = DOC_OK;
    r->why = NULL;
    int rc = r->jsonl ? next_jsonl(r, err) : next_text(r, err);
    if (rc >= 0) {
        r->resume_offset = r->offset;
        r->resume_line = r->line;
    }
    return rc;
}
