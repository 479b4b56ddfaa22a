/* test_json_grammar.c — the JSON prefix recognizer: every prefix of valid objects is accepted
 * and the whole object completes; malformed texts are refused at the first bad byte; limits on
 * depth and whitespace hold; feeding byte by byte equals feeding at once. */
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

int main(void) {
    RUN(test_valid);
    RUN(test_invalid);
    RUN(test_limits);
    return check_report("test_json_grammar");
}
