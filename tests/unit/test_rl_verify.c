/* test_rl_verify.c — the reward's reading of a reply (rl/verify.h) against answers that try to
 * game it, countdown expressions, and the task generators (rl/task.h): deterministic per seed,
 * train and test splits disjoint, every generated problem solved by its own reference. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rl/task.h"
#include "rl/verify.h"

/* Verdict of reply against a number reference; start_in_think 0. */
static rl_verdict num_verdict(const char *reply, const char *ref, int start_in_think) {
    rl_ref r = {.verifier = RL_VERIFY_NUMBER, .answer = ref};
    rl_verdict v;
    rl_verify(reply, strlen(reply), start_in_think, &r, &v);
    return v;
}

static int num_ok(const char *reply, const char *ref) {
    return num_verdict(reply, ref, 0).correct;
}

static void test_answer_after_last_think(void) {
    rl_verdict v = num_verdict("<think>2+2 is 4, or maybe 5</think>The answer is 4.", "4", 0);
    CHECK(v.correct && v.format_ok && v.has_answer);
    CHECK(!strcmp(v.norm, "4"));
    /* the prompt opened <think>: the reply starts inside it */
    v = num_verdict("2+2 is 4</think>4", "4", 1);
    CHECK(v.correct && v.format_ok);
    /* a number inside the reasoning is not the answer */
    v = num_verdict("<think>it is 4</think>I am not sure.", "4", 0);
    CHECK(!v.correct && v.format_ok && v.has_answer && v.vote == 0);
    /* <answer> tags: their content; \boxed{}: its content */
    CHECK(num_ok("<think>x</think> <answer> 12 </answer>", "12"));
    CHECK(num_ok("<think>x</think> so 3 apples, \\boxed{12} in all", "12"));
    CHECK(num_ok("<think>x</think> \\boxed{\\frac{24}{2}} no: \\boxed{12}", "12"));
    /* no think tags at all: all answer, but not the format */
    v = num_verdict("The answer is 12", "12", 0);
    CHECK(v.correct && !v.format_ok);
}

static void test_unclosed_and_nested_tags(void) {
    /* <think> never closed: no answer, format 0, even when the reasoning ends on the number */
    rl_verdict v = num_verdict("<think>the answer is 12", "12", 0);
    CHECK(!v.correct && !v.format_ok && !v.has_answer);
    v = num_verdict("the answer is 12", "12", 1); /* the prompt opened it */
    CHECK(!v.correct && !v.format_ok && !v.has_answer);
    /* reopened after the last close: the reply ends thinking */
    v = num_verdict("<think>a</think>12<think>more", "12", 0);
    CHECK(!v.correct && !v.has_answer);
    /* nested or repeated tags: the answer after the last </think>, the format broken */
    v = num_verdict("<think>a<think>b</think>c</think>12", "12", 0);
    CHECK(v.correct && !v.format_ok);
    v = num_verdict("<think>a</think>7</think>12", "12", 0);
    CHECK(v.correct && !v.format_ok);
    v = num_verdict("<think>a</think>The answer is 12.</think>no idea", "12",
                    0); /* the LAST close */
    CHECK(!v.correct && v.has_answer && !v.format_ok);
    /* think tag when the prompt already opened it */
    v = num_verdict("<think>a</think>12", "12", 1);
    CHECK(v.correct && !v.format_ok);
    /* text before <think> */
    CHECK(!num_verdict("Sure! <think>a</think>12", "12", 0).format_ok);
    /* empty answer: format 0 */
    v = num_verdict("<think>12</think>   ", "12", 0);
    CHECK(!v.correct && !v.format_ok && !v.has_answer);
    /* <answer> never closed: no answer */
    v = num_verdict("<think>a</think><answer>12", "12", 0);
    CHECK(!v.correct && !v.has_answer);
    /* two <answer> pairs: the last counts, the format is broken */
    v = num_verdict("<think>a</think><answer>13</answer><answer>12</answer>", "12", 0);
    CHECK(v.correct && !v.format_ok);
}

static void test_guess_lists(void) {
    /* only the last number counts */
    CHECK(num_ok("<think>x</think>12 or 13 or 14", "14"));
    CHECK(!num_ok("<think>x</think>12 or 13 or 14", "12"));
    CHECK(!num_ok("<think>x</think>12 or 13 or 14", "13"));
    /* a worked line is fine */
    CHECK(num_ok("<think>x</think>12 * 5 = 60", "60"));
    /* more than RL_ANSWER_MAX_NUMBERS numbers: a guess list, wrong and no vote */
    rl_verdict v = num_verdict("<think>x</think>10, 11, 12, 13, 14", "14", 0);
    CHECK(!v.correct && v.vote == 0);
    CHECK(!num_ok("<think>x</think>1 2 3 4 5 6 7 8 9 10 11 12 13 14", "14"));
}

static void test_number_forms(void) {
    CHECK(num_ok("<think>x</think>1,234", "1234"));
    CHECK(num_ok("<think>x</think>$1,234,567.", "1234567"));
    CHECK(num_ok("<think>x</think>x = -5", "-5"));
    CHECK(!num_ok("<think>x</think>x = -5", "5"));
    CHECK(num_ok("<think>x</think>8 - 5 = 3", "3")); /* subtraction, not a sign */
    CHECK(
        num_ok("<think>x</think>x = 8 - 5", "5")); /* a space after the digit: still subtraction */
    CHECK(num_ok("<think>x</think>(2 + 6) - 5", "5"));
    CHECK(num_ok("<think>x</think>１２ - 5", "5"));
    CHECK(num_ok("<think>x</think>The answer is -5", "-5")); /* a word before: a sign */
    CHECK(num_ok("<think>x</think>answer:-5", "-5"));
    CHECK(num_ok("<think>x</think>x=-5", "-5"));
    CHECK(num_ok("<think>x</think>3.50", "3.5"));
    CHECK(num_ok("<think>x</think>3.0", "3"));
    CHECK(num_ok("<think>x</think>007", "7"));
    CHECK(num_ok("<think>x</think>-0", "0"));
    CHECK(num_ok("<think>x</think>答案是１２３４", "1234")); /* full-width digits */
    CHECK(num_ok("<think>x</think>一共有 56 个。", "56"));
    CHECK(num_ok("<think>x</think>5,832 pencils.", "5832"));
    CHECK(!num_ok("<think>x</think>12,34", "1234")); /* not a thousands group */
    /* not numbers: nan, inf, exponents, overflowing digit strings */
    CHECK(!num_ok("<think>x</think>nan", "0"));
    CHECK(!num_ok("<think>x</think>inf", "0"));
    CHECK(!num_ok("<think>x</think>1e3", "1000"));
    CHECK(!num_ok("<think>x</think>1e3", "1"));
    CHECK(!num_ok("<think>x</think>1e3", "3")); /* the exponent is not a number of its own */
    CHECK(!num_ok("<think>x</think>2E+9", "9"));
    char big[200] = "<think>x</think>";
    for (int i = 0; i < 100; i++) strcat(big, "9");
    CHECK(!num_ok(big, "9"));
    char norm[RL_NORM_MAX];
    int count;
    CHECK(rl_number_last("a 1,000 b -2.50", 15, norm, sizeof norm, &count) && count == 2 &&
          !strcmp(norm, "-2.5"));
    CHECK(!rl_number_last("no numbers", 10, norm, sizeof norm, &count) && count == 0);
}

static void test_huge_outputs(void) {
    /* a reply over RL_REPLY_MAX_BYTES is not read */
    size_t n = RL_REPLY_MAX_BYTES + 100;
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    if (!s) return;
    memset(s, ' ', n);
    memcpy(s, "<think>x</think>", 16);
    memcpy(s + n - 2, "12", 2);
    s[n] = 0;
    rl_ref r = {.verifier = RL_VERIFY_NUMBER, .answer = "12"};
    rl_verdict v;
    rl_verify(s, n, 0, &r, &v);
    CHECK(!v.correct && !v.has_answer && !v.format_ok);
    /* an answer over RL_ANSWER_MAX_BYTES is a dump */
    memset(s, 'a', n);
    memcpy(s, "<think>x</think>", 16);
    memcpy(s + RL_ANSWER_MAX_BYTES + 100, " 12", 3);
    rl_verify(s, RL_ANSWER_MAX_BYTES + 103, 0, &r, &v);
    CHECK(!v.correct && !v.has_answer);
    free(s);
}

static void test_exact_and_regex(void) {
    rl_ref r = {.verifier = RL_VERIFY_EXACT, .answer = " Paris  France "};
    rl_verdict v;
    const char *a = "<think>x</think>\n Paris \n France\n";
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(v.correct);
    a = "<think>x</think>paris france";
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(!v.correct);
    r = (rl_ref){.verifier = RL_VERIFY_REGEX, .answer = "(?i)paris"};
    a = "<think>x</think> PARIS ";
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(v.correct);
    a = "<think>x</think>London, Paris, Rome"; /* the whole answer must match */
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(!v.correct);
    /* catastrophic backtracking stops at the match limit: no match, quickly */
    r.answer = "(a+)+$";
    char s[RL_ANSWER_MAX_BYTES];
    strcpy(s, "<think>x</think>");
    size_t k = strlen(s);
    for (int i = 0; i < 40; i++) s[k++] = 'a';
    s[k++] = '!';
    s[k] = 0;
    rl_verify(s, k, 0, &r, &v);
    CHECK(!v.correct);
    /* the limit is ours, not PCRE2's default (10,000,000): the first branch backtracks 2^20
       times before the second would match, and the verifier stops it (no match) */
    r.answer = "(a+)+z|a+!";
    strcpy(s, "<think>x</think>aaaaaaaaaaaaaaaaaaaa!");
    rl_verify(s, strlen(s), 0, &r, &v);
    CHECK(!v.correct);
    r.answer = "a+!";
    rl_verify(s, strlen(s), 0, &r, &v);
    CHECK(v.correct);
    whale_err err = {0};
    CHECK(rl_regex_check("(unclosed", &err) == WHALE_E_FORMAT && strstr(err.msg, "regex"));
    CHECK(rl_regex_check("^[0-9]+$", &err) == 0);
}

static int cd_eval(const char *e, const int64_t *nums, int n, int64_t *p, int64_t *q) {
    return rl_countdown_eval(e, strlen(e), nums, n, p, q);
}

static void test_countdown(void) {
    int64_t nums[] = {25, 5, 4, 3}, p, q;
    CHECK(cd_eval("(25 - 5) * 4", nums, 4, &p, &q) == 0 && p == 80 && q == 1);
    CHECK(cd_eval("(25 - 5) × 4 = 80", nums, 4, &p, &q) == 0 && p == 80);
    CHECK(cd_eval("25 / 5 + 3", nums, 4, &p, &q) == 0 && p == 8 && q == 1);
    CHECK(cd_eval("3 / 4", nums, 4, &p, &q) == 0 && p == 3 && q == 4);
    CHECK(cd_eval("25 - 5 * 4", nums, 4, &p, &q) == 0 && p == 5); /* precedence */
    CHECK(cd_eval("25 + 25", nums, 4, &p, &q) < 0);               /* reused */
    CHECK(cd_eval("25 + 6", nums, 4, &p, &q) < 0);                /* not given */
    CHECK(cd_eval("25 / (5 - 5)", nums, 4, &p, &q) < 0);          /* reused, and division by zero */
    int64_t z[] = {7, 3, 3};
    CHECK(cd_eval("7 / (3 - 3)", z, 3, &p, &q) < 0); /* division by zero */
    CHECK(cd_eval("7 * (3 + 3)", z, 3, &p, &q) == 0 && p == 42);
    CHECK(cd_eval("7 3", z, 3, &p, &q) < 0);    /* syntax */
    CHECK(cd_eval("-7 + 3", z, 3, &p, &q) < 0); /* no unary minus */
    CHECK(cd_eval("(7 + 3", z, 3, &p, &q) < 0);
    CHECK(cd_eval("", z, 3, &p, &q) < 0);
    char deep[400] = "";
    for (int i = 0; i < 100; i++) strcat(deep, "(");
    strcat(deep, "7");
    for (int i = 0; i < 100; i++) strcat(deep, ")");
    CHECK(cd_eval(deep, z, 3, &p, &q) < 0); /* nesting past the limit */
    int64_t big[] = {50, 50, 50, 50, 50, 50};
    CHECK(cd_eval("50*50*50*50*50*50", big, 6, &p, &q) == 0 && p == 15625000000ll);
    /* the verifier: value and numbers */
    rl_ref r = {.verifier = RL_VERIFY_COUNTDOWN,
                .answer = "80",
                .n_nums = 4,
                .nums = {25, 5, 4, 3},
                .target = 80};
    rl_verdict v;
    const char *a = "<think>try</think>\\boxed{(25 - 5) * 4}";
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(v.correct && v.format_ok);
    a = "<think>try</think>80";
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(!v.correct);
    a = "<think>try</think>(25 - 5) * 4 * 1";
    rl_verify(a, strlen(a), 0, &r, &v);
    CHECK(!v.correct);
}

/* Items 0..n-1 of a split: their keys into out. */
static void keys_of(const rl_task *t, int split, int n, uint64_t seed, uint64_t *out) {
    rl_item *it = malloc(sizeof *it);
    for (int i = 0; it && i < n; i++) {
        whale_err err = {0};
        CHECK(rl_task_item(t, split, i, seed, it, &err) == 0);
        out[i] = it->key;
    }
    free(it);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int n_shared(const uint64_t *a, int na, const uint64_t *b, int nb) { /* both sorted */
    int n = 0;
    for (int i = 0, j = 0; i < na && j < nb;) {
        if (a[i] == b[j])
            n++, i++, j++;
        else if (a[i] < b[j])
            i++;
        else
            j++;
    }
    return n;
}

static void test_tasks_deterministic_and_disjoint(void) {
    enum { N = 3000 };
    static uint64_t tr[N], te[N], again[N];
    const char *names[] = {"arith", "arith_small", "countdown", "linear", "word_en", "word_zh", "word"};
    for (int k = 0; k < 7; k++) {
        const rl_task *t = rl_task_find(names[k]);
        CHECKF(t != NULL, "%s", names[k]);
        if (!t) continue;
        keys_of(t, RL_SPLIT_TRAIN, N, 7, tr);
        keys_of(t, RL_SPLIT_TEST, N, 7, te);
        keys_of(t, RL_SPLIT_TRAIN, N, 7, again);
        CHECKF(!memcmp(tr, again, sizeof tr), "%s: not deterministic", names[k]);
        keys_of(t, RL_SPLIT_TRAIN, N, 8, again);
        CHECKF(memcmp(tr, again, sizeof tr), "%s: the seed changes nothing", names[k]);
        qsort(tr, N, sizeof tr[0], cmp_u64);
        qsort(te, N, sizeof te[0], cmp_u64);
        int shared = n_shared(tr, N, te, N), distinct = 0;
        for (int i = 0; i < N; i++) distinct += !i || te[i] != te[i - 1];
        CHECKF(shared == 0, "%s: %d problems in both splits", names[k], shared);
        CHECKF(distinct > N / 2, "%s: only %d distinct test problems", names[k], distinct);
    }
    /* the same text twice gives the same problem */
    rl_item *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    whale_err err = {0};
    if (a && b) {
        CHECK(!rl_task_item(rl_task_find("word_zh"), RL_SPLIT_TEST, 5, 1, a, &err));
        CHECK(!rl_task_item(rl_task_find("word_zh"), RL_SPLIT_TEST, 5, 1, b, &err));
        CHECK(!strcmp(a->prompt, b->prompt) && !strcmp(a->ref.answer, b->ref.answer));
        CHECK(rl_task_item(rl_task_find("arith"), 2, 0, 1, a, &err) == WHALE_E_ARG);
    }
    free(a);
    free(b);
    CHECK(rl_task_find("nope") == NULL);
}

/* word's problems are word_en's and word_zh's under their keys: its held-out split is theirs
 * (a word_en or word_zh test problem is never a word training problem, and word's test
 * problems are found among theirs). */
static void test_word_mixed_shares_the_split(void) {
    enum { N = 3000 };
    static uint64_t held[2 * N], wtr[N], wte[N];
    keys_of(rl_task_find("word_en"), RL_SPLIT_TEST, N, 7, held);
    keys_of(rl_task_find("word_zh"), RL_SPLIT_TEST, N, 7, held + N);
    keys_of(rl_task_find("word"), RL_SPLIT_TRAIN, N, 7, wtr);
    keys_of(rl_task_find("word"), RL_SPLIT_TEST, N, 9, wte);
    qsort(held, 2 * N, sizeof held[0], cmp_u64);
    qsort(wtr, N, sizeof wtr[0], cmp_u64);
    qsort(wte, N, sizeof wte[0], cmp_u64);
    CHECK(n_shared(wtr, N, held, 2 * N) == 0);
    int common = n_shared(wte, N, held, 2 * N);
    CHECKF(common > N / 10, "only %d of word's test problems are word_en's or word_zh's", common);
    rl_item *it = malloc(sizeof *it);
    int zh = 0;
    for (int i = 0; it && i < 200; i++) {
        whale_err err = {0};
        CHECK(!rl_task_item(rl_task_find("word"), RL_SPLIT_TRAIN, i, 1, it, &err));
        zh += (unsigned char)it->prompt[0] >= 0x80;
    }
    CHECKF(zh > 60 && zh < 140, "%d of 200 problems in Chinese", zh);
    free(it);
}

/* Every generated problem is answered right by a reply that is its reference, and wrong by one
 * off by one; countdown targets are reachable (the generator built them). */
static void test_references_verify(void) {
    const char *names[] = {"arith", "linear", "word_en", "word_zh"};
    rl_item *it = malloc(sizeof *it);
    if (!it) return;
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 200; i++) {
            whale_err err = {0};
            CHECK(!rl_task_item(rl_task_find(names[k]), RL_SPLIT_TEST, i, 3, it, &err));
            char reply[128];
            snprintf(reply, sizeof reply, "<think>ok</think>%s", it->ref.answer);
            rl_verdict v;
            rl_verify(reply, strlen(reply), 0, &it->ref, &v);
            CHECKF(v.correct && v.format_ok, "%s %d: %s / %s", names[k], i, it->prompt,
                   it->ref.answer);
            snprintf(reply, sizeof reply, "<think>ok</think>%lld", atoll(it->ref.answer) + 1);
            rl_verify(reply, strlen(reply), 0, &it->ref, &v);
            CHECK(!v.correct);
        }
    }
    for (int i = 0; i < 50; i++) {
        whale_err err = {0};
        CHECK(!rl_task_item(rl_task_find("countdown"), RL_SPLIT_TRAIN, i, 3, it, &err));
        CHECK(it->ref.n_nums >= 3 && it->ref.n_nums <= 4 && it->ref.target >= 10);
        CHECK(strstr(it->prompt, it->ref.answer) != NULL);
    }
    free(it);
}

static void test_jsonl(void) {
    char path[] = "/tmp/test_rl_verifyXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    fputs("{\"prompt\": \"What is 2+2?\", \"answer\": 4}\n\n"
          "{\"prompt\": \"Capital of France?\", \"answer\": \"Paris\", \"verifier\": \"exact\"}\n"
          "{\"prompt\": \"A color?\", \"answer\": \"(?i)red|blue\", \"verifier\": \"regex\"}\n"
          "{\"prompt\": \"A tenth?\", \"answer\": 0.1}\n",
          f);
    fclose(f);
    rl_task *t = NULL;
    whale_err err = {0};
    CHECK(rl_task_load_jsonl(path, &t, &err) == 0);
    if (t) {
        rl_item *it = malloc(sizeof *it);
        CHECK(rl_task_size(t, RL_SPLIT_TEST) == 4);
        CHECK(it && !rl_task_item(t, RL_SPLIT_TEST, 2, 0, it, &err) &&
              it->ref.verifier == RL_VERIFY_REGEX);
        CHECK(it && rl_task_item(t, RL_SPLIT_TEST, 4, 0, it, &err) == WHALE_E_ARG);
        if (it && !rl_task_item(t, RL_SPLIT_TEST, 3, 0, it,
                                &err)) { /* a JSON number answer, as written */
            rl_verdict v;
            rl_verify("<think>x</think>0.1", 19, 0, &it->ref, &v);
            CHECKF(v.correct, "answer %s", it->ref.answer);
        }
        free(it);
        rl_task_free(t);
    }
    const char *bad[][2] = {
        {"{\"prompt\": \"a\", \"answer\": 1}\nnot json\n", ":2: not valid JSON"},
        {"[1, 2]\n", ":1: not a JSON object"},
        {"{\"answer\": 1}\n", ":1: \"prompt\" must be"},
        {"{\"prompt\": \"a\"}\n", ":1: \"answer\" must be"},
        {"{\"prompt\": \"a\", \"answer\": \"x\", \"verifier\": \"fuzzy\"}\n",
         ":1: unknown verifier"},
        {"{\"prompt\": \"a\", \"answer\": \"twelve\"}\n",
         ":1: answer \"twelve\" is not one number"},
        {"\n{\"prompt\": \"a\", \"answer\": \"(\", \"verifier\": \"regex\"}\n", ":2: bad regex"},
        {"\n\n", "no problems"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        fputs(bad[i][0], f);
        fclose(f);
        err = (whale_err){0};
        t = NULL;
        CHECKF(rl_task_load_jsonl(path, &t, &err) == WHALE_E_FORMAT && strstr(err.msg, bad[i][1]),
               "case %zu: %s", i, err.msg);
        rl_task_free(t);
    }
    unlink(path);
    CHECK(rl_task_load_jsonl("/nonexistent/x.jsonl", &t, &err) == WHALE_E_IO);
}

/* Feeding pieces (tokens) into a fresh scan; the index of the piece that completed "</answer>"
 * (-1: none did). */
static int stop_at(const char *const *pieces, int n) {
    rl_stop_scan st = {0};
    for (int i = 0; i < n; i++)
        if (rl_stop_feed(&st, pieces[i], strlen(pieces[i]))) return i;
    return -1;
}

static void test_stop_at_answer_close(void) {
    const char *whole[] = {"<think> 7 + 8 </think> <answer> 15 </answer>", "User:"};
    CHECK(stop_at(whole, 2) == 0);
    const char *split[] = {"<answer> 15 </", "ans", "wer", ">", " User"};
    CHECK(stop_at(split, 5) == 3);
    const char *bytes[] = {"<", "/", "a", "n", "s", "w", "e", "r", ">"};
    CHECK(stop_at(bytes, 9) == 8);
    const char *ahead[] = {"x</answer> more"}; /* inside a longer piece */
    CHECK(stop_at(ahead, 1) == 0);
    const char *near[] = {"</answer", " >", "</answe", "r", "</ answer>", "<answer>"};
    CHECK(stop_at(near, 6) == -1);
    const char *late[] = {"</answe", "</answer", ">"}; /* a false start, then the real one */
    CHECK(stop_at(late, 3) == 2);
}

static void check_reformat(const char *in, const char *want, size_t want_prefix) {
    size_t len = 0, prefix = 99;
    char *r = rl_reformat_plain(in, strlen(in), &len, &prefix);
    CHECK(r && len == strlen(want) && !strcmp(r, want) && prefix == want_prefix);
    if (r && strcmp(r, want)) fprintf(stderr, "got  [%s]\nwant [%s]\n", r, want);
    free(r);
}

static void test_reformat_plain(void) {
    check_reformat("Each costs 3.\nSo 4 cost 12.\n\nThe answer is 12.\n",
                   "<think>\nEach costs 3.\nSo 4 cost 12.\n</think>\n\nThe answer is 12.", 8);
    check_reformat("12 * 5 = 60\nSo 60 km.", "<think>\n12 * 5 = 60\n</think>\n\nSo 60 km.", 8);
    check_reformat("60", "<think>\n\n</think>\n\n60", 8);
    check_reformat("<think>a</think>b", "<think>a</think>b", 0); /* tagged: left alone */
    /* the reformatted reply is read as any other: its last paragraph is the answer */
    const char *many = "3 + 4 = 7\n7 * 2 = 14\n14 - 1 = 13\n\nSo 13.";
    size_t len, prefix;
    char *r = rl_reformat_plain(many, strlen(many), &len, &prefix);
    rl_ref ref = {.answer = "13", .verifier = RL_VERIFY_NUMBER};
    rl_verdict v;
    rl_verify(r, len, 0, &ref, &v);
    CHECK(v.correct && v.format_ok);
    free(r);
    rl_verify(many, strlen(many), 0, &ref, &v); /* unformatted, the working is a guess list */
    CHECK(!v.correct);
}

int main(void) {
    RUN(test_answer_after_last_think);
    RUN(test_unclosed_and_nested_tags);
    RUN(test_guess_lists);
    RUN(test_number_forms);
    RUN(test_huge_outputs);
    RUN(test_exact_and_regex);
    RUN(test_countdown);
    RUN(test_tasks_deterministic_and_disjoint);
    RUN(test_word_mixed_shares_the_split);
    RUN(test_references_verify);
    RUN(test_jsonl);
    RUN(test_stop_at_answer_close);
    RUN(test_reformat_plain);
    return check_report("test_rl_verify");
}
