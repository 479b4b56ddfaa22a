/* test_constraint.c — the logit constraints (engine/constraint.h) on the real DeepSeek LLM
 * vocabulary from ../shared/vocab: JSON mode masks exactly the tokens that would break the JSON
 * prefix, greedy decoding under it writes only valid prefixes whatever the logits favour, and a
 * whole object leaves only the end of the turn; the tool constraint is free outside a call,
 * JSON inside one (this vocabulary has no marker tokens: the spelled-out text opens and closes
 * it), and a forced call writes its opening first. */
#include "check.h"

#include <math.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/constraint.h"
#include "engine/json_grammar.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

static tokenizer *tok;
static constraint_vocab *cv;
static int64_t V;
static float *logits; /* V */

/* The id of text s when it is one token, else -1. */
static int32_t one_token(const char *s) {
    tok_ids ids = {0};
    whale_err err = {0};
    int32_t id = !tokenizer_encode(tok, s, strlen(s), 0, &ids, &err) && ids.n == 1 ? ids.v[0] : -1;
    tok_ids_free(&ids);
    return id;
}

/* Feed every token of text s to the constraint, as if the model had written it. */
static void accept_text(sched_constraint *k, const char *s) {
    tok_ids ids = {0};
    whale_err err = {0};
    CHECK(tokenizer_encode(tok, s, strlen(s), 0, &ids, &err) == 0);
    for (size_t i = 0; i < ids.n; i++) k->accept(k->ctx, ids.v[i]);
    tok_ids_free(&ids);
}

/* What the constraint should allow after text[0..n): a normal token whose bytes keep it a JSON
 * prefix (the oracle: json_grammar on the whole text, not the constraint's state). */
static int json_ok(const char *text, size_t n, int32_t id) {
    char buf[8192];
    int attr = tokenizer_attr(tok, id);
    int l = tokenizer_token_bytes(tok, id, buf + n, sizeof buf - n);
    if (attr == TOK_CONTROL || attr == TOK_USER || l <= 0 || (size_t)l > sizeof buf - n) return 0;
    memcpy(buf, text, n);
    json_grammar g;
    json_grammar_init(&g);
    return json_grammar_feed(&g, buf, n + (size_t)l) == 0;
}

static void free_con(sched_constraint *k) {
    if (!k) return;
    k->free(k->ctx);
    free(k);
}

static int64_t argmax(void) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static void test_json_masks_what_breaks_the_prefix(void) {
    sched_constraint *k = constraint_json(cv, 0);
    CHECK(k != NULL);
    if (!k) return;
    int32_t hello = one_token("Hello"), brace = one_token("{");
    CHECK(hello >= 0 && brace >= 0);
    if (hello < 0 || brace < 0) {
        free_con(k);
        return;
    }
    /* greedy: the model wants prose; "Hello" goes to -inf and the best allowed token survives */
    for (int64_t i = 0; i < V; i++) logits[i] = 0;
    logits[hello] = 10;
    logits[brace] = 1;
    k->mask(k->ctx, logits, V, 1);
    CHECK(logits[hello] == -INFINITY);
    CHECK(argmax() == brace && logits[brace] == 1);
    /* sampling, at the start and inside an object: the tokens left are exactly the allowed ones */
    const char *texts[] = {"", "{\"name\": \"Al"};
    for (int t = 0; t < 2; t++) {
        if (t) accept_text(k, texts[t]);
        for (int64_t i = 0; i < V; i++) logits[i] = 0;
        k->mask(k->ctx, logits, V, 0);
        int64_t n_ok = 0, wrong = 0;
        for (int64_t i = 0; i < V; i++) {
            int ok = json_ok(texts[t], strlen(texts[t]), (int32_t)i);
            n_ok += ok;
            wrong += ok != (logits[i] == 0);
        }
        CHECKF(wrong == 0 && n_ok > 0, "after '%s': %lld tokens masked wrongly, %lld allowed", texts[t],
               (long long)wrong, (long long)n_ok);
    }
    free_con(k);
}

/* States to mask in: inside keys, strings, escapes, numbers, literals, arrays, between values,
 * and whitespace runs near the limit. */
static const char *const mask_states[] = {
    "", "{", "{\"na", "{\"name\"", "{\"name\": ", "{\"name\": \"Al", "{\"a\": \"x\\", "{\"a\": \"\\u00",
    "{\"a\": -", "{\"a\": 0", "{\"a\": 12", "{\"a\": 1.", "{\"a\": 1.5e", "{\"a\": 1.5e+3", "{\"a\": tr",
    "{\"a\": [", "{\"a\": [1, ", "{\"a\": [{\"b\": {}}", "{\"a\": 1", "{\"a\": 1      ", "{\"a\":        ",
};

/* Sampling: after each state the tokens left are exactly those the grammar allows on the whole
 * text (the oracle), whatever the token classes and probes shortcut. */
static void test_json_mask_matches_oracle_in_every_state(void) {
    int bad = 0;
    for (size_t st = 0; st < sizeof mask_states / sizeof *mask_states; st++) {
        const char *text = mask_states[st];
        sched_constraint *k = constraint_json(cv, 0);
        CHECK(k != NULL);
        if (!k) return;
        accept_text(k, text);
        for (int64_t i = 0; i < V; i++) logits[i] = 0;
        k->mask(k->ctx, logits, V, 0);
        int64_t wrong = 0;
        for (int64_t i = 0; i < V; i++) wrong += json_ok(text, strlen(text), (int32_t)i) != (logits[i] == 0);
        if (wrong && bad++ < 5) fprintf(stderr, "after '%s': %lld tokens masked wrongly\n", text, (long long)wrong);
        free_con(k);
    }
    CHECK(bad == 0);
}

/* Greedy masking as it was first written, over the oracle: the best live token (lowest id
 * among equals) is tried, refused ones go to -inf, up to 4096 tries; then every refused token
 * goes to -inf. */
static void greedy_reference(const char *text, float *l) {
    for (int tries = 0; tries < 4096; tries++) {
        int64_t best = -1;
        for (int64_t i = 0; i < V; i++)
            if (l[i] > -INFINITY && (best < 0 || l[i] > l[best])) best = i;
        if (best < 0) break;
        if (json_ok(text, strlen(text), (int32_t)best)) {
            float keep = l[best];
            for (int64_t i = 0; i < V; i++) l[i] = -INFINITY;
            l[best] = keep;
            return;
        }
        l[best] = -INFINITY;
    }
    for (int64_t i = 0; i < V; i++)
        if (l[i] > -INFINITY && !json_ok(text, strlen(text), (int32_t)i)) l[i] = -INFINITY;
}

/* Greedy masking (a heap of the live tokens, probes) leaves the very logits the reference
 * leaves, with random logits (ties included: coarse values) in every state: the allowed token
 * found within the first tries, or after them (few tokens fit after a key), or by the scan. */
static void test_greedy_mask_matches_reference(void) {
    float *want = malloc((size_t)V * sizeof *want);
    CHECK(want != NULL);
    if (!want) return;
    uint64_t rng = 3;
    int bad = 0;
    for (size_t st = 0; st < sizeof mask_states / sizeof *mask_states; st++)
        for (int coarse = 0; coarse < 2; coarse++) {
            const char *text = mask_states[st];
            sched_constraint *k = constraint_json(cv, 0);
            CHECK(k != NULL);
            if (!k) break;
            accept_text(k, text);
            for (int64_t i = 0; i < V; i++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                logits[i] = coarse ? (float)(rng % 64) : (float)(rng >> 40) / (float)(1 << 24);
                if (i % 97 == 5) logits[i] = -INFINITY;
            }
            memcpy(want, logits, (size_t)V * sizeof *want);
            greedy_reference(text, want);
            k->mask(k->ctx, logits, V, 1);
            if (memcmp(want, logits, (size_t)V * sizeof *want) && bad++ < 5)
                fprintf(stderr, "after '%s' (coarse %d): the masks differ\n", text, coarse);
            free_con(k);
        }
    CHECK(bad == 0);
    free(want);
}

/* 1 when text[0..n) is a whole JSON object (whitespace around it aside). */
static int json_whole(const char *text, size_t n) {
    json_grammar g;
    json_grammar_init(&g);
    return json_grammar_feed(&g, text, n) == 0 && json_grammar_complete(&g);
}

/* Greedy decoding of a model that cares nothing for JSON (random logits, fixed seed), nudged to
 * nest before closing and to leave strings now and then: every token it writes keeps the text a
 * JSON prefix, and once the object is whole the turn ends. One walk (where few tokens are
 * allowed, greedy masking tries thousands of best tokens before it scans the vocabulary). */
static void test_greedy_writes_only_json_prefixes(void) {
    static char closes[1 << 18], quotes[1 << 18]; /* token i has a '}', a '"' in it (V fits) */
    char buf[512];
    for (int64_t i = 0; i < V && i < (int64_t)sizeof closes; i++) {
        int l = tokenizer_token_bytes(tok, (int32_t)i, buf, sizeof buf);
        size_t m = l > 0 ? ((size_t)l < sizeof buf ? (size_t)l : sizeof buf) : 0;
        closes[i] = memchr(buf, '}', m) != NULL;
        quotes[i] = memchr(buf, '"', m) != NULL;
    }
    sched_constraint *k = constraint_json(cv, 0);
    CHECK(k != NULL);
    if (!k) return;
    char text[4096];
    size_t n = 0;
    int step = 0, ended = 0;
    uint64_t rng = 2 * 0x9E3779B97F4A7C15u; /* a seed whose walk ends its object within the steps */
    for (; step < 40 && !ended; step++) {
        for (int64_t i = 0; i < V; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            logits[i] = (float)(rng >> 40) / (float)(1 << 24);
            if (i >= (int64_t)sizeof closes) continue;
            if (step < 24 && closes[i]) logits[i] -= 1;     /* nest before closing, */
            if (step % 4 == 3 && quotes[i]) logits[i] += 1; /* leave strings now and then */
        }
        k->mask(k->ctx, logits, V, 1);
        int32_t t = (int32_t)argmax();
        CHECK(logits[t] > -INFINITY);
        if (json_whole(text, n)) { /* the object is whole: the turn ends */
            CHECKF(t == tokenizer_eos(tok) || tokenizer_attr(tok, t) == TOK_CONTROL, "token %d after '%.*s'", t, (int)n,
                   text);
            ended = 1;
            break;
        }
        int ok = json_ok(text, n, t);
        CHECKF(ok, "step %d: token %d after '%.*s'", step, t, (int)n, text);
        if (!ok) break;
        int l = tokenizer_token_bytes(tok, t, text + n, sizeof text - n);
        if (l > 0 && (size_t)l < sizeof text - n) n += (size_t)l;
        k->accept(k->ctx, t);
    }
    CHECKF(step >= 20 && ended, "%d steps, object %s", step, ended ? "whole" : "not whole");
    free_con(k);
}

static void test_whole_object_ends_the_turn(void) {
    sched_constraint *k = constraint_json(cv, 0);
    CHECK(k != NULL);
    if (!k) return;
    accept_text(k, "{\"name\": \"Alice\", \"age\": 30}");
    int32_t space = one_token(" ");
    CHECK(space >= 0);
    for (int64_t i = 0; i < V; i++) logits[i] = 0;
    if (space >= 0) logits[space] = 5; /* even trailing whitespace is refused: the answer is the object */
    k->mask(k->ctx, logits, V, 1);
    int32_t eos = tokenizer_eos(tok);
    CHECK(eos >= 0 && logits[eos] == 0);
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > -INFINITY)
            CHECKF(i == eos || tokenizer_attr(tok, (int32_t)i) == TOK_CONTROL, "token %lld allowed", (long long)i);
    CHECK(argmax() == eos || tokenizer_attr(tok, (int32_t)argmax()) == TOK_CONTROL);
    free_con(k);
}

static void test_json_after_thinking(void) {
    /* this vocabulary has no </think>: a reply that starts inside thinking is never constrained */
    sched_constraint *k = constraint_json(cv, 1);
    CHECK(k != NULL);
    if (!k) return;
    accept_text(k, "Let me think. Hello");
    for (int64_t i = 0; i < V; i++) logits[i] = 1;
    k->mask(k->ctx, logits, V, 0);
    int64_t masked = 0;
    for (int64_t i = 0; i < V; i++) masked += logits[i] != 1;
    CHECK(masked == 0);
    free_con(k);
}

static void test_tools_json_inside_a_call(void) {
    CHECK(constraint_tools(cv, 2, NULL) == NULL); /* a forced function needs its name */
    sched_constraint *k = constraint_tools(cv, 0, NULL);
    CHECK(k != NULL);
    if (!k) return;
    int32_t hello = one_token("Hello"), brace = one_token("{"), lt = one_token("<"), nl = one_token("\n");
    CHECK(hello >= 0 && brace >= 0 && lt >= 0 && nl >= 0);
    if (hello < 0 || brace < 0 || lt < 0 || nl < 0) {
        free_con(k);
        return;
    }
    for (int64_t i = 0; i < V; i++) logits[i] = 0;
    k->mask(k->ctx, logits, V, 0); /* outside a call: free */
    CHECK(logits[hello] == 0);
    accept_text(k, "I will look it up.\n<tool_call>\n");
    logits[hello] = 3;
    k->mask(k->ctx, logits, V, 1); /* inside: JSON */
    CHECK(logits[hello] == -INFINITY && logits[argmax()] > -INFINITY && json_ok("", 0, (int32_t)argmax()));
    accept_text(k, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}");
    for (int64_t i = 0; i < V; i++) logits[i] = 0;
    k->mask(k->ctx, logits, V, 0); /* the object is whole: whitespace, then </tool_call> */
    CHECK(logits[brace] == -INFINITY && logits[hello] == -INFINITY && logits[lt] == 0 && logits[nl] == 0);
    accept_text(k, "\n</tool_call>");
    for (int64_t i = 0; i < V; i++) logits[i] = 0;
    k->mask(k->ctx, logits, V, 0); /* closed: free again */
    CHECK(logits[hello] == 0 && logits[brace] == 0);
    free_con(k);
}

static void test_forced_call_is_written_first(void) {
    const char *want = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {";
    for (int force = 1; force <= 2; force++) {
        sched_constraint *k = constraint_tools(cv, force, "get_weather");
        CHECK(k != NULL);
        if (!k) return;
        size_t n_want = force == 1 ? strlen("<tool_call>\n") : strlen(want);
        char text[256];
        size_t n = 0;
        int32_t hello = one_token("Hello");
        CHECK(hello >= 0);
        if (hello < 0) {
            free_con(k);
            return;
        }
        for (int step = 0; step < 64 && n < n_want; step++) {
            for (int64_t i = 0; i < V; i++) logits[i] = 0;
            logits[hello] = 10; /* the model would rather greet */
            k->mask(k->ctx, logits, V, 1);
            CHECK(logits[hello] == -INFINITY);
            int32_t t = (int32_t)argmax();
            int l = tokenizer_token_bytes(tok, t, text + n, sizeof text - n);
            CHECK(logits[t] > -INFINITY && l > 0 && (size_t)l <= sizeof text - n);
            if (l <= 0 || (size_t)l > sizeof text - n) break;
            n += (size_t)l;
            k->accept(k->ctx, t);
        }
        CHECKF(n == n_want && !memcmp(text, want, n), "force %d wrote '%.*s'", force, (int)n, text);
        /* then the call's JSON goes on under the constraint */
        for (int64_t i = 0; i < V; i++) logits[i] = 0;
        logits[hello] = 10;
        k->mask(k->ctx, logits, V, 1);
        CHECK(logits[hello] == -INFINITY);
        const char *obj = want + strlen("<tool_call>\n");
        if (force == 2) CHECK(json_ok(obj, strlen(obj), (int32_t)argmax()));
        free_con(k);
    }
}

int main(void) {
    gguf_file f;
    whale_err err = {0};
    const char *path = check_shared("vocab/ggml-vocab-deepseek-llm.gguf");
    if (access(path, R_OK)) { /* every case needs it */
        check_skip_rest_missing(path);
    } else if (gguf_open(&f, path, 0, &err) || tokenizer_load_gguf(&tok, &f, &err)) {
        fprintf(stderr, "cannot load the vocabulary: %s\n", err.msg);
        printf("test_constraint: 0 passed, 1 failed\n");
        return 1;
    } else {
        gguf_close(&f);
        V = tokenizer_n_vocab(tok);
        cv = constraint_vocab_new(tok);
        logits = malloc((size_t)V * sizeof *logits);
        if (!cv || !logits) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
    }
    RUN(test_json_masks_what_breaks_the_prefix);
    RUN(test_json_mask_matches_oracle_in_every_state);
    RUN(test_greedy_mask_matches_reference);
    RUN(test_greedy_writes_only_json_prefixes);
    RUN(test_whole_object_ends_the_turn);
    RUN(test_json_after_thinking);
    RUN(test_tools_json_inside_a_call);
    RUN(test_forced_call_is_written_first);
    free(logits);
    constraint_vocab_free(cv);
    tokenizer_free(tok);
    return check_report("test_constraint");
}
