/* constraint.c — JSON mode and the tool-call constraint over token bytes; see constraint.h.
 *
 * A constraint is a json_con: a JSON prefix recognizer, whether it is on (JSON mode: once the
 * thinking has ended; tools: inside a call), and for a forced tool call the text the reply must
 * start with. mask() lets through the tokens whose bytes keep the text valid, accept() advances
 * the state with the token chosen. */
#include "engine/constraint.h"

#include "engine/json_grammar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOOL_OPEN "<tool_call>"
#define TOOL_CLOSE "</tool_call>"
/* the start of a forced call of the function %s, as Qwen2.5 writes calls */
#define CALL_START TOOL_OPEN "\n{\"name\": \"%s\", \"arguments\": {"
/* Longest token a constraint lets through, in bytes: far above real vocabularies' tokens; a
 * longer one counts as no text (never allowed), and every length fits the int16 table. */
#define CONSTRAINT_MAX_TOKEN 512
/* Greedy masking tries the best tokens one by one (best first, off a heap) before it checks the
 * whole vocabulary: a model that wants JSON finds an allowed token within a few. */
#define CONSTRAINT_GREEDY_TRIES 4096

/* ---- the vocabulary ------------------------------------------------------------------------ */

struct constraint_vocab {
    const tokenizer *tok; /* borrowed: eos, attributes */
    /* token i is bytes[off[i] .. + len[i]); len -1 for added tokens (markers, control) */
    char *bytes;
    uint32_t *off;
    int16_t *len;
    uint8_t *cls;              /* (n) JSON_TOKEN_* classes of each token's bytes */
    int64_t n;                 /* tokens in those tables (the tokenizer's vocabulary) */
    int32_t think_end;         /* "</think>", or -1 */
    int32_t open_id, close_id; /* "<tool_call>", "</tool_call>" as added tokens, or -1 */
};

constraint_vocab *constraint_vocab_new(const tokenizer *t) {
    constraint_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->tok = t;
    v->think_end = tokenizer_find_added(t, "</think>", 8);
    v->open_id = tokenizer_find_added(t, TOOL_OPEN, strlen(TOOL_OPEN));
    v->close_id = tokenizer_find_added(t, TOOL_CLOSE, strlen(TOOL_CLOSE));
    int64_t V = tokenizer_n_vocab(t);
    v->n = V;
    size_t total = 0;
    char tmp[CONSTRAINT_MAX_TOKEN];
    for (int64_t i = 0; i < V; i++) {
        int l = tokenizer_token_bytes(t, (int32_t)i, tmp, sizeof tmp);
        total += l > 0 ? (size_t)l : 0;
    }
    v->bytes = malloc(total + 1);
    v->off = malloc((size_t)V * sizeof *v->off);
    v->len = malloc((size_t)V * sizeof *v->len);
    v->cls = malloc((size_t)V + 1); /* + 1: never a zero-byte request */
    if (!v->bytes || !v->off || !v->len || !v->cls) {
        constraint_vocab_free(v);
        return NULL;
    }
    size_t at = 0;
    for (int64_t i = 0; i < V; i++) {
        int attr = tokenizer_attr(t, (int32_t)i);
        int l = tokenizer_token_bytes(t, (int32_t)i, v->bytes + at, total + 1 - at);
        v->off[i] = (uint32_t)at;
        int text = attr != TOK_CONTROL && attr != TOK_USER && l > 0 && l <= CONSTRAINT_MAX_TOKEN;
        v->len[i] = text ? (int16_t)l : -1;
        v->cls[i] = text ? (uint8_t)json_token_class(v->bytes + at, (size_t)l) : 0;
        at += l > 0 && (size_t)l <= total + 1 - at ? (size_t)l : 0;
    }
    return v;
}

void constraint_vocab_free(constraint_vocab *v) {
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->len);
    free(v->cls);
    free(v);
}

/* A token's byte count, -1 for added tokens and for ids past the tokenizer's vocabulary (a
 * checkpoint's output matrix may have padding rows). */
static int len_of(const constraint_vocab *v, int32_t t) {
    return t >= 0 && t < v->n ? v->len[t] : -1;
}

/* ---- the constraint ------------------------------------------------------------------------ */

typedef struct json_con {
    const constraint_vocab *v;
    json_grammar g;
    int active;    /* JSON mode: once the thinking has ended; tools: inside <tool_call> */
    int tools;     /* tool mode: the text between <tool_call> and </tool_call> is JSON */
    char tail[16]; /* tool mode, outside a call: the last bytes written (spotting <tool_call>) */
    size_t n_tail;
    size_t closing;       /* tool mode, object complete: bytes of "</tool_call>" written so far */
    int32_t *order;       /* (n_order) greedy masking's heap of token ids, allocated on first use */
    int64_t n_order;
    size_t n_lit, lit_at; /* forced text the reply must start with (a forced call), and how much */
    char lit[];           /* of it is written; the text itself, n_lit bytes and a NUL */
} json_con;

/* pr: the probe of c->g (json_probe_init), the same answer as feeding the bytes to c->g */
static int json_allowed(const json_con *c, const json_probe *pr, int32_t t) {
    int l = len_of(c->v, t);
    if (l <= 0) return 0;
    return json_probe_accepts(pr, c->v->bytes + c->v->off[t], (size_t)l, c->v->cls[t]);
}

/* Greedy masking's order: higher logit first, the lower id among equals. */
static int logit_before(const float *l, int32_t a, int32_t b) { return l[a] != l[b] ? l[a] > l[b] : a < b; }

/* Restore the max-heap h[0..n) below i. */
static void order_sift(const float *l, int32_t *h, int64_t n, int64_t i) {
    for (;;) {
        int64_t w = i, a = 2 * i + 1, b = a + 1;
        if (a < n && logit_before(l, h[a], h[w])) w = a;
        if (b < n && logit_before(l, h[b], h[w])) w = b;
        if (w == i) return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Greedy: the best token the grammar allows among the CONSTRAINT_GREEDY_TRIES best, or -1
 * (then the tokens tried are -inf in logits). The first try is one pass for the best token (a
 * model that wants JSON usually has it there); after it the rest come off a heap of every
 * live token, each in O(log V), in the order repeated passes would find them. */
static int64_t greedy_best(json_con *c, const json_probe *pr, float *logits, int64_t V) {
    int64_t best = -1;
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
    if (best < 0) return -1;
    if (json_allowed(c, pr, (int32_t)best)) return best;
    logits[best] = -INFINITY;
    if (c->n_order < V) {
        int32_t *o = realloc(c->order, (size_t)V * sizeof *o);
        if (!o) return -1; /* out of memory: the whole-vocabulary pass decides alone */
        c->order = o, c->n_order = V;
    }
    int32_t *h = c->order;
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > -INFINITY) h[n++] = (int32_t)i;
    for (int64_t i = n / 2 - 1; i >= 0; i--) order_sift(logits, h, n, i);
    for (int tries = 1; tries < CONSTRAINT_GREEDY_TRIES && n > 0; tries++) {
        int32_t t = h[0];
        h[0] = h[--n];
        order_sift(logits, h, n, 0);
        if (json_allowed(c, pr, t)) return t;
        logits[t] = -INFINITY;
    }
    return -1;
}

/* Tool mode after the object: whitespace, then "</tool_call>" spelled in any pieces. */
static int closes_call(const json_con *c, int32_t t) {
    int l = len_of(c->v, t);
    if (l <= 0) return 0;
    const char *b = c->v->bytes + c->v->off[t];
    size_t at = c->closing;
    for (int i = 0; i < l; i++) {
        if (at == 0 && strchr(" \n\t\r", b[i])) continue;
        if (at >= strlen(TOOL_CLOSE) || b[i] != TOOL_CLOSE[at]) return 0;
        at++;
    }
    return 1;
}

/* Forced text: a token may come when its bytes continue it without going past its end (single
 * bytes are tokens, so the text can always be written). */
static int lit_allowed(const json_con *c, int32_t t) {
    if (t == c->v->open_id && c->lit_at == 0 && !strncmp(c->lit, TOOL_OPEN, strlen(TOOL_OPEN)))
        return 1; /* the marker token */
    int l = len_of(c->v, t);
    if (l <= 0) return 0;
    const char *b = c->v->bytes + c->v->off[t];
    size_t left = c->n_lit - c->lit_at, k = (size_t)l < left ? (size_t)l : left;
    if (memcmp(b, c->lit + c->lit_at, k)) return 0;
    return (size_t)l <= left; /* tokens ending exactly at the forced text's end, at most */
}

static void json_mask(void *ctx, float *logits, int64_t V, int greedy) {
    json_con *c = ctx;
    if (c->lit_at < c->n_lit) {
        for (int64_t i = 0; i < V; i++)
            if (logits[i] > -INFINITY && !lit_allowed(c, (int32_t)i)) logits[i] = -INFINITY;
        return;
    }
    if (!c->active) return;
    /* the object is whole: the end of the turn, or of the call */
    if (json_grammar_complete(&c->g)) {
        for (int64_t i = 0; i < V; i++)
            if (c->tools ? (int32_t)i != c->v->close_id && !closes_call(c, (int32_t)i)
                         : !tokenizer_is_end(c->v->tok, (int32_t)i))
                logits[i] = -INFINITY;
        return;
    }
    json_probe pr;
    json_probe_init(&pr, &c->g);
    if (greedy) { /* best first, until one is allowed; then it alone survives */
        int64_t best = greedy_best(c, &pr, logits, V);
        if (best >= 0) {
            float keep = logits[best];
            for (int64_t i = 0; i < V; i++) logits[i] = -INFINITY;
            logits[best] = keep;
            return;
        }
    }
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > -INFINITY && !json_allowed(c, &pr, (int32_t)i)) logits[i] = -INFINITY;
}

static void json_accept(void *ctx, int32_t t) {
    json_con *c = ctx;
    const constraint_vocab *v = c->v;
    /* the forced text: counted (the marker as its token's worth), then on as usual */
    if (c->lit_at < c->n_lit && t == v->open_id && c->lit_at == 0) c->lit_at = strlen(TOOL_OPEN);
    else if (c->lit_at < c->n_lit && len_of(v, t) > 0) {
        size_t l = (size_t)len_of(v, t), left = c->n_lit - c->lit_at;
        c->lit_at += l < left ? l : left;
    }
    if (c->tools) { /* a call opens (as its token or spelled out): JSON until it closes */
        int l = len_of(v, t);
        const char *b = l > 0 ? v->bytes + v->off[t] : "";
        if (!c->active) {
            for (int i = 0; i < l; i++) { /* keep the last bytes to spot the spelled-out opening */
                if (c->n_tail == sizeof c->tail) memmove(c->tail, c->tail + 1, --c->n_tail);
                c->tail[c->n_tail++] = b[i];
            }
            const char *hit = memmem(c->tail, c->n_tail, TOOL_OPEN, strlen(TOOL_OPEN));
            /* what follows the opening in this token is JSON already */
            if (t == v->open_id || hit) {
                size_t after = hit ? (size_t)(hit - c->tail) + strlen(TOOL_OPEN) : c->n_tail;
                json_grammar_init(&c->g);
                json_grammar_feed(&c->g, c->tail + after, c->n_tail - after);
                c->active = 1;
                c->closing = c->n_tail = 0;
            }
        } else if (json_grammar_complete(&c->g)) {
            if (t == v->close_id) c->active = 0;
            for (int i = 0; i < l && c->active; i++)
                if (!(c->closing == 0 && strchr(" \n\t\r", b[i])) && ++c->closing == strlen(TOOL_CLOSE))
                    c->active = 0;
        } else if (l > 0) {
            json_grammar_feed(&c->g, b, (size_t)l);
        }
        return;
    }
    if (!c->active) {
        c->active = t == v->think_end;
        return;
    }
    if (len_of(v, t) > 0) json_grammar_feed(&c->g, v->bytes + v->off[t], (size_t)len_of(v, t));
}

static void json_free(void *ctx) {
    json_con *c = ctx;
    if (c) free(c->order);
    free(c);
}

/* A constraint with room for n_lit forced bytes (and a NUL); NULL on out of memory. */
static sched_constraint *con_new(const constraint_vocab *v, size_t n_lit) {
    sched_constraint *k = malloc(sizeof *k);
    json_con *c = malloc(sizeof *c + n_lit + 1);
    if (!k || !c) {
        free(k);
        free(c);
        return NULL;
    }
    memset(c, 0, sizeof *c + n_lit + 1);
    c->v = v;
    json_grammar_init(&c->g);
    *k = (sched_constraint){json_mask, json_accept, json_free, c};
    return k;
}

sched_constraint *constraint_json(const constraint_vocab *v, int start_in_think) {
    sched_constraint *k = con_new(v, 0);
    if (k) ((json_con *)k->ctx)->active = !start_in_think;
    return k;
}

sched_constraint *constraint_tools(const constraint_vocab *v, int force, const char *name) {
    static const char opening[] = TOOL_OPEN "\n";
    if (force == 2 && !name) return NULL;
    size_t n_lit = force == 1   ? strlen(opening)
                   : force == 2 ? (size_t)snprintf(NULL, 0, CALL_START, name)
                                : 0;
    sched_constraint *k = con_new(v, n_lit);
    if (!k) return NULL;
    json_con *c = k->ctx;
    c->tools = 1;
    c->active = 0;
    if (force == 1) memcpy(c->lit, opening, n_lit + 1);
    if (force == 2) snprintf(c->lit, n_lit + 1, CALL_START, name);
    c->n_lit = n_lit;
    return k;
}
