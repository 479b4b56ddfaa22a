/* docs.h — reading documents out of input files for `whale data prepare`, streaming (one
 * document in memory at a time) and restartable at a byte offset.
 *   text  a document is a run of non-blank lines; blank (whitespace-only) lines separate them.
 *         Its text runs from its first line to the end of its last, without that line's
 *         terminator ("\n" or "\r\n").
 *   jsonl each non-blank line is one JSON object whose "text" string is the document.
 * Owns: the file, its read buffer and the current document. */
#ifndef WHALE_DATA_DOCS_H
#define WHALE_DATA_DOCS_H

#include <stdint.h>
#include <stdio.h>

#include "base/strbuf.h"
#include "whale.h"

/* A document longer than this is skipped (counted as too_large) rather than held: the reader
 * must never need more memory than one bounded document. */
#define DOC_MAX_BYTES (64u << 20)
#define DOC_READ_BUF  (1u << 20)

enum doc_status {
    DOC_OK = 0,
    DOC_MALFORMED, /* jsonl: not JSON, or no "text" string (why in doc_reader.why) */
    DOC_TOO_LARGE, /* over DOC_MAX_BYTES */
};

typedef struct doc_reader {
    FILE *f;
    int jsonl;
    int64_t offset;                     /* bytes consumed: where the next read starts */
    int64_t line;                       /* lines consumed */
    int64_t resume_offset, resume_line; /* just after the last document returned */
    char *buf;
    size_t buf_n, buf_pos;
    strbuf lbuf;      /* the current line (up to DOC_MAX_BYTES) */
    int line_over;    /* the current line was longer than that */
    strbuf doc;       /* the current document's text */
    int64_t doc_line; /* line number (1-based) where it starts */
    const char *why;  /* DOC_MALFORMED: what was wrong */
    int status;
} doc_reader;

/* Open path and start reading at byte offset (a value resume_offset had; 0 at first) with
 * `line` lines before it. Returns 0 or WHALE_E_IO / WHALE_E_NOMEM. */
int doc_reader_open(doc_reader *r, const char *path, int jsonl, int64_t offset, int64_t line,
                    whale_err *err);
/* The next document into r->doc, r->status, r->doc_line. Returns 1, 0 at the end of the file,
 * or WHALE_E_IO. After it, r->resume_offset/resume_line say where a restart goes on. */
int doc_reader_next(doc_reader *r, whale_err *err);
void doc_reader_close(doc_reader *r);

#endif
