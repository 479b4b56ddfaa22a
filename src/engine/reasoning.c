/* reasoning.c — a byte-at-a-time state machine over the streamed text; see reasoning.h. */
#include "engine/reasoning.h"

#include <string.h>

static const char OPEN[] = "<think>", CLOSE[] = "</think>";

void reasoning_init(reasoning *r, int start_in_think, reasoning_sink sink, void *ctx) {
    memset(r, 0, sizeof *r);
    r->in_think = start_in_think;
    r->skip_newlines = 1;
    r->sink = sink;
    r->ctx = ctx;
}

static void emit(reasoning *r, const char *s, size_t n) {
    if (n) r->sink(r->ctx, r->in_think ? REASONING_THINK : REASONING_ANSWER, s, n);
}

/* The tag the held bytes may be growing into, given the current section. */
static const char *expected_tag(const reasoning *r) {
    if (r->in_think) return CLOSE;
    return r->seen_close ? NULL : OPEN; /* after </think>, a literal "<think>" is answer text */
}

/* Held bytes = optional newlines (only while in think) + a prefix of the expected tag. */
static void feed_byte(reasoning *r, char c) {
    const char *tag = expected_tag(r);
    if (r->skip_newlines && (c == '\n' || c == '\r') && r->n_held == 0) return;
    size_t nl = 0;
    while (nl < r->n_held && (r->held[nl] == '\n' || r->held[nl] == '\r')) nl++;
    size_t tag_len = r->n_held - nl;
    if (tag && c == tag[tag_len]) {
        r->held[r->n_held++] = c;
        if (tag[tag_len + 1] == 0) { /* a whole tag: switch sections, dropping it and held newlines */
            r->n_held = 0;
            if (r->in_think) r->seen_close = 1;
            r->in_think = !r->in_think;
            r->skip_newlines = 1;
        }
        return;
    }
    if (r->in_think && tag_len == 0 && (c == '\n' || c == '\r') && r->n_held < sizeof r->held - 8) {
        r->held[r->n_held++] = c; /* may be newlines before </think> */
        return;
    }
    /* Not a tag after all: release what was held, then re-examine c on its own. */
    if (r->n_held) {
        char tmp[sizeof r->held];
        size_t n = r->n_held;
        memcpy(tmp, r->held, n);
        r->n_held = 0;
        r->skip_newlines = 0;
        emit(r, tmp, n);
        feed_byte(r, c);
        return;
    }
    r->skip_newlines = 0;
    if (tag && c == tag[0]) {
        r->held[r->n_held++] = c;
        return;
    }
    emit(r, &c, 1);
}

void reasoning_feed(reasoning *r, const char *text, size_t n) {
    /* Emit runs of ordinary bytes in one call; only bytes that may start or continue a tag or
     * a held newline go through the byte machine one by one. */
    size_t i = 0;
    while (i < n) {
        if (r->n_held == 0 && !r->skip_newlines) {
            size_t j = i;
            while (j < n && text[j] != '<' && text[j] != '\n' && text[j] != '\r') j++;
            emit(r, text + i, j - i);
            if (j == n) return;
            i = j;
        }
        feed_byte(r, text[i++]);
    }
}

void reasoning_flush(reasoning *r) {
    /* Held newlines at the very end of a section are trailing whitespace: drop them; a partial
     * tag is text. */
    size_t nl = 0;
    while (nl < r->n_held && (r->held[nl] == '\n' || r->held[nl] == '\r')) nl++;
    if (nl < r->n_held) emit(r, r->held, r->n_held);
    r->n_held = 0;
}
