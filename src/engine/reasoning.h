/* reasoning.h — splitting a model's streamed text into reasoning and answer.
 *
 * Text between <think> and </think> is reasoning; the rest is the answer. Works on a stream of
 * pieces as they are decoded: a tag split across pieces ("</th" + "ink>") is recognized, text
 * that only starts like a tag ("<thinking", "</thx") is ordinary text, and a missing close tag
 * leaves everything after <think> as reasoning. R1 prompts end in "<think>\n", so the output
 * starts inside the reasoning: reasoning_init(r, 1).
 * Trimming, as DeepSeek's API does for reasoning_content / content: newlines right after
 * <think> and right after </think> are dropped, and so are newlines right before </think>
 * (held back until it is clear they are not followed by the close tag).
 * Owns a small fixed buffer; no allocation. */
#ifndef WHALE_ENGINE_REASONING_H
#define WHALE_ENGINE_REASONING_H

#include <stddef.h>

typedef enum reasoning_kind { REASONING_THINK = 0, REASONING_ANSWER = 1 } reasoning_kind;

/* Receives each classified span as it becomes certain. */
typedef void (*reasoning_sink)(void *ctx, reasoning_kind kind, const char *text, size_t n);

typedef struct reasoning {
    int in_think;       /* inside <think> ... </think> */
    int seen_close;     /* </think> has been seen (an answer follows) */
    int skip_newlines;  /* at the start of a section: drop leading newlines */
    char held[64];      /* a possible tag prefix, or newlines that may precede </think> */
    size_t n_held;
    reasoning_sink sink;
    void *ctx;
} reasoning;

void reasoning_init(reasoning *r, int start_in_think, reasoning_sink sink, void *ctx);
void reasoning_feed(reasoning *r, const char *text, size_t n);
/* End of stream: emit whatever is held back. */
void reasoning_flush(reasoning *r);

#endif
