/* test_json_grammar.c — the JSON prefix recognizer: every prefix of valid objects is accepted
 * and the whole object completes; malformed texts are refused at the first bad byte; limits on
 * depth and whitespace hold; feeding byte by byte equals feeding at once; a state's probe
 * (the vocabulary masking's shortcuts) answers as feeding does. */
#include "check.h"
#include "engine/json_grammar.h"

static int accepts(const char *s) {
    json_grammar g;
    json_grammar_init(&g);
    return json_grammar_feed(&g, s, strlen(s)) == 0;
}

static int complete(const char *s) {
    json_grammar g;
    json_grammar_init(&g);
    return json_grammar_feed(&g, s, strlen(s)) == 0 && json_grammar_complete(&g);
}

static void test_valid(void) {
    const char *ok[] = {
        "{}", "{\"a\":1}", " {\"a\" : [1, -2.5e+3, 0, 0.25E-2, true, false, null, \"x\\u00e9\\n\"]}\n",
        "{\"nested\":{\"b\":[[],{}],\"c\":\"\\\"quoted\\\"\"}}", "{\"name\":\"Alice\",\"age\":30}",
        "{\"emoji\":\"\xf0\x9f\x90\x8b\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECKF(complete(ok[i]), "%s", ok[i]);
        char buf[256];
        size_t n = strlen(ok[i]);
        for (size_t k = 0; k < n; k++) { /* every prefix is accepted, and only the whole is complete */
            memcpy(buf, ok[i], k);
            buf[k] = 0;
            CHECKF(accepts(buf), "prefix %zu of %s", k, ok[i]);
        }
        json_grammar g; /* byte by byte == at once */
        json_grammar_init(&g);
        for (size_t k = 0; k < n; k++) CHECK(json_grammar_feed(&g, ok[i] + k, 1) == 0);
        CHECK(json_grammar_complete(&g));
    }
}

static void test_invalid(void) {
    const char *bad[] = {"[1]", "\"top\"", "{a:1}", "{\"a\" 1}", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}",
                         "{\"a\":1.}", "{\"a\":-}", "{\"a\":tru }", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}",
                         "{\"a\":[1 2]}", "{\"a\":1]", "{} {}", "{\"a\":\"line\nbreak\"}", "{\"a\":1e}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECKF(!complete(bad[i]), "%s", bad[i]);
    CHECK(!accepts("{}x") && accepts("{}  ") && complete("{} \n"));
    CHECK(accepts("{\"a\":12") && !json_grammar_complete(&(json_grammar){0}));
}

static void test_limits(void) {
    char deep[300] = "{\"a\":";
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    CHECK(!accepts(deep)); /* deeper than JSON_MAX_DEPTH */
    CHECK(accepts("{  \n\t \"a\":1}") && !accepts("{                \"a\":1}")); /* whitespace runs */
}

/* Prefixes that leave the recognizer in each of its states, whitespace counts near the limit
 * and a refused text among them. */
static const char *const probe_states[] = {
    "", " ", "{", "{ ", "{\"", "{\"ke", "{\"k\\", "{\"k\\u0", "{\"k\"", "{\"k\" ", "{\"k\":", "{\"k\": ",
    "{\"k\":\"v", "{\"k\":\"v\"", "{\"k\":\"v\"  ", "{\"k\":-", "{\"k\":0", "{\"k\":12", "{\"k\":1.", "{\"k\":1.5",
    "{\"k\":1e", "{\"k\":1e-", "{\"k\":1e5", "{\"k\":t", "{\"k\":fal", "{\"k\":[", "{\"k\":[1,", "{\"k\":[{}",
    "{\"k\":[[", "{\"k\":1}", "{\"k\":1}   ", "{\"k\":       ", "{\"k\":12       ", "{\"k\":\"a\\\"", "}",
};

/* json_probe_accepts against feeding a copy of the state, for short strings of JSON's bytes
 * (and a few others) in every state: the probe's shortcuts never change an answer. */
static void test_probe_matches_feed(void) {
    const char alphabet[] = " \n\t{}[]:,\"\\-+.0123456789eEtrufalsn/bx\x01\x7f\xc3\xa9";
    uint64_t rng = 7;
    int bad = 0, n_cases = 0;
    for (size_t st = 0; st < sizeof probe_states / sizeof *probe_states; st++) {
        json_grammar g;
        json_grammar_init(&g);
        if (json_grammar_feed(&g, probe_states[st], strlen(probe_states[st]))) json_grammar_init(&g);
        json_probe p;
        json_probe_init(&p, &g);
        for (int i = 0; i < 20000; i++) {
            char s[12];
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t n = 1 + rng % sizeof s;
            for (size_t k = 0; k < n; k++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                /* runs of one byte now and then: digits, spaces, string bytes */
                s[k] = k && rng % 3 == 0 ? s[k - 1] : alphabet[(rng >> 8) % (sizeof alphabet - 1)];
            }
            json_grammar c = g;
            int want = json_grammar_feed(&c, s, n) == 0, got = json_probe_accepts(&p, s, n, json_token_class(s, n));
            n_cases++;
            if (want != got && bad++ < 5) fprintf(stderr, "after '%s': '%.*s' feed %d probe %d\n", probe_states[st], (int)n, s, want, got);
        }
    }
    CHECKF(bad == 0, "%d of %d answers differ", bad, n_cases);
}

int main(void) {
    RUN(test_valid);
    RUN(test_invalid);
    RUN(test_limits);
    RUN(test_probe_matches_feed);
    return check_report("test_json_grammar");
}
