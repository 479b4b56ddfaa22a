/* task.c — the built-in task generators (arith, arith_small, countdown, linear, word_en, word_zh,
 * word) and JSONL user tasks. Owns the task table and a loaded file's problems; the verifiers are verify.c's.
 * Each generator draws its numbers from one splitmix64 stream and reports them as the
 * problem's identity (key parameters), which decides its split (task.h). */
#include "rl/task.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/readall.h"
#include "base/rng.h"

/* Draws before a generator gives up finding a problem of the asked split: each draw lands in
 * the test split with probability 1/RL_TEST_ONE_IN, so 1000 draws all missing it is ~1e-46. */
#define RL_GEN_MAX_TRIES 1000
/* Numbers that identify a problem (its key). */
#define RL_KEY_MAX 8

typedef struct gen {
    uint64_t rs;              /* the draw's random stream */
    int id;                   /* the task id its key is mixed with (0: the task's own) */
    uint64_t key[RL_KEY_MAX]; /* the problem's identity, beside the task and template ids */
    int n_key;
    rl_item *it;
} gen;

struct rl_task {
    const char *name, *about;
    void (*make)(gen *g); /* NULL: a file task */
    int id;               /* built-ins: part of each key */
    /* file tasks */
    char *path;
    int64_t n;
    char **prompt, **answer;
    int *verifier;
};

/* ---- drawing ------------------------------------------------------------------------------ */

static int64_t draw(gen *g, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_splitmix64(&g->rs) % (uint64_t)(hi - lo + 1));
}

static void key(gen *g, int64_t v) {
    if (g->n_key < RL_KEY_MAX) g->key[g->n_key++] = (uint64_t)v;
}

static void answer_int(gen *g, int64_t v) {
    snprintf(g->it->answer, sizeof g->it->answer, "%lld", (long long)v);
    g->it->ref.verifier = RL_VERIFY_NUMBER;
}

static int64_t pow10i(int d) {
    int64_t p = 1;
    while (d-- > 0) p *= 10;
    return p;
}

/* ---- arith -------------------------------------------------------------------------------- */

/* "What is A op B?" with a of da digits and b of db (a >= b for -); op 0 +, 1 -, 2 *. */
static void arith_question(gen *g, int op, int da, int db) {
    int64_t a = draw(g, pow10i(da - 1), pow10i(da) - 1),
            b = draw(g, pow10i(db - 1), pow10i(db) - 1);
    if (op == 1 && a < b) {
        int64_t t = a;
        a = b;
        b = t;
    }
    int64_t r = op == 0 ? a + b : op == 1 ? a - b : a * b;
    snprintf(g->it->text, sizeof g->it->text, "What is %lld %c %lld?", (long long)a, "+-*"[op],
             (long long)b);
    answer_int(g, r);
    key(g, op), key(g, a), key(g, b);
}

static void make_arith(gen *g) {
    int op = (int)draw(g, 0, 2);
    int da = op == 2 ? (int)draw(g, 2, 3) : (int)draw(g, 2, 4),
        db = op == 2 ? 2 : (int)draw(g, 2, 4);
    arith_question(g, op, da, db);
}

/* The same questions with 2-3 digit + and - only: a size a tiny pretrained model can learn
 * (bench/r1zero.md); arith's products are out of its reach. Its own task id keeps its split
 * independent of arith's. */
static void make_arith_small(gen *g) {
    int op = (int)draw(g, 0, 1);
    int da = (int)draw(g, 2, 3), db = (int)draw(g, 2, 3);
    arith_question(g, op, da, db);
}

/* ---- countdown ---------------------------------------------------------------------------- */

/* Numbers 1..50 combined in a random order by random operations whose every intermediate is a
 * positive integer: the target is always reachable, using every number once. */
static void make_countdown(gen *g) {
    rl_item *it = g->it;
    for (;;) {
        int n = (int)draw(g, 3, 4);
        int64_t v[4] = {0}, given[4] = {0}; /* (set below; zeroed for -Wmaybe-uninitialized at -O2) */
        for (int i = 0; i < n; i++) given[i] = v[i] = draw(g, 1, 50);
        int m = n, ok = 1;
        while (m > 1 && ok) {
            int i = (int)draw(g, 0, m - 1), j = (int)draw(g, 0, m - 2);
            if (j >= i) j++;
            int64_t a = v[i], b = v[j], r = 0;
            switch ((int)draw(g, 0, 3)) {
            case 0:
                r = a + b;
                break;
            case 1:
                r = a > b ? a - b : b - a;
                ok = r > 0;
                break;
            case 2:
                r = a * b;
                ok = r <= 5000;
                break;
            default:
                ok = b > 1 && a % b == 0;
                r = ok ? a / b : 0;
                break;
            }
            v[i < j ? i : j] = r; /* the pair becomes one value */
            v[i < j ? j : i] = v[m - 1];
            m--;
        }
        int64_t target = v[0];
        for (int i = 0; i < n; i++) ok = ok && given[i] != target;
        if (!ok || target < 10 || target > 1000) continue;
        char list[64];
        size_t k = 0;
        for (int i = 0; i < n; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%lld", i ? ", " : "",
                                  (long long)given[i]);
        snprintf(it->text, sizeof it->text,
                 "Using the numbers %s, each at most once, and the operations +, -, *, / with "
                 "parentheses, "
                 "write an expression that equals %lld. The answer is the expression alone.",
                 list, (long long)target);
        snprintf(it->answer, sizeof it->answer, "%lld", (long long)target);
        it->ref.verifier = RL_VERIFY_COUNTDOWN;
        it->ref.n_nums = n;
        it->ref.target = target;
        int64_t sorted[4];
        for (int i = 0; i < n; i++) { /* the key: the numbers as a set, and the target */
            int64_t x = given[i];
            int j = i;
            while (j > 0 && sorted[j - 1] > x) sorted[j] = sorted[j - 1], j--;
            sorted[j] = x;
            it->ref.nums[i] = given[i];
        }
        for (int i = 0; i < n; i++) key(g, sorted[i]);
        key(g, target);
        return;
    }
}

/* ---- linear ------------------------------------------------------------------------------- */

static void make_linear(gen *g) {
    int64_t a = draw(g, 2, 12) * (draw(g, 0, 3) ? 1 : -1), x = draw(g, -20, 20),
            b = draw(g, 1, 60) * (draw(g, 0, 1) ? 1 : -1);
    int64_t c = a * x + b;
    snprintf(g->it->text, sizeof g->it->text, "Solve for x: %lldx %c %lld = %lld. What is x?",
             (long long)a, b < 0 ? '-' : '+', (long long)(b < 0 ? -b : b), (long long)c);
    answer_int(g, x);
    key(g, a), key(g, b), key(g, c);
}

/* ---- word problems, English and Chinese --------------------------------------------------- */

static const char *const names_en[] = {"Tom", "Mia", "Ravi", "Lena", "Omar", "Sofia"};
static const char *const names_zh[] = {"小明", "小红", "李华", "王芳", "张伟", "刘洋"};
#define N_NAMES 6
/* Templates: money, rate with hours and minutes, percent discount, perimeter, sum and
 * difference, multiplication, sharing. */
#define N_WORD_TEMPLATES 7

static void make_word(gen *g, int zh) {
    char *t = g->it->text;
    size_t cap = sizeof g->it->text;
    int tpl = (int)draw(g, 0, N_WORD_TEMPLATES - 1);
    const char *name = zh ? names_zh[draw(g, 0, N_NAMES - 1)] : names_en[draw(g, 0, N_NAMES - 1)];
    long long a, b, c, r;
    key(g, tpl);
    switch (tpl) {
    case 0: /* money */
        a = draw(g, 20, 200), b = draw(g, 2, 9), c = draw(g, 1, (a - 1) / b), r = a - b * c;
        if (zh)
            snprintf(t, cap, "%s有%lld元，买了%lld本笔记本，每本%lld元。%s还剩多少元？", name, a, b,
                     c, name);
        else
            snprintf(t, cap,
                     "%s has %lld dollars and buys %lld notebooks that cost %lld dollars each. How "
                     "many dollars "
                     "does %s have left?",
                     name, a, b, c, name);
        key(g, a), key(g, b), key(g, c);
        break;
    case 1: /* rate: speeds are multiples of 4 so a quarter hour is whole kilometers */
        a = 4 * draw(g, 5, 30), b = draw(g, 1, 5), c = 15 * draw(g, 1, 3), r = a * b + a * c / 60;
        if (zh)
            snprintf(t, cap, "一辆汽车每小时行驶%lld千米。它在%lld小时%lld分钟内一共行驶多少千米？",
                     a, b, c);
        else
            snprintf(t, cap,
                     "A car drives at %lld kilometers per hour. How many kilometers does it travel "
                     "in %lld "
                     "hours and %lld minutes?",
                     a, b, c);
        key(g, a), key(g, b), key(g, c);
        break;
    case 2: /* discount: prices are multiples of 20 and discounts of 5%, so the price stays whole */
        a = 20 * draw(g, 2, 50), b = 5 * draw(g, 1, 15), r = a - a * b / 100;
        if (zh)
            snprintf(t, cap, "一件外套原价%lld元，现在降价%lld%%出售。现价是多少元？", a, b);
        else
            snprintf(t, cap,
                     "A jacket costs %lld dollars. The store takes %lld%% off. What is the price "
                     "after the "
                     "discount, in dollars?",
                     a, b);
        key(g, a), key(g, b);
        break;
    case 3: /* perimeter */
        a = draw(g, 3, 60), b = draw(g, 2, a - 1), r = 2 * (a + b);
        if (zh)
            snprintf(t, cap, "一个长方形花园长%lld米，宽%lld米。它的周长是多少米？", a, b);
        else
            snprintf(t, cap,
                     "A rectangular garden is %lld meters long and %lld meters wide. What is its "
                     "perimeter "
                     "in meters?",
                     a, b);
        key(g, a), key(g, b);
        break;
    case 4: { /* two numbers from their sum and difference */
        long long x = draw(g, 10, 200), y = draw(g, 1, x - 1);
        int larger = (int)draw(g, 0, 1);
        r = larger ? x : y;
        if (zh)
            snprintf(t, cap, "两个数的和是%lld，差是%lld。%s的那个数是多少？", x + y, x - y,
                     larger ? "较大" : "较小");
        else
            snprintf(
                t, cap,
                "Two numbers add up to %lld and their difference is %lld. What is the %s number?",
                x + y, x - y, larger ? "larger" : "smaller");
        key(g, x), key(g, y), key(g, larger);
        break;
    }
    case 5: /* multi-digit multiplication */
        a = draw(g, 12, 999), b = draw(g, 12, 99), r = a * b;
        if (zh)
            snprintf(t, cap, "每盒有%lld支铅笔。%lld盒一共有多少支铅笔？", a, b);
        else
            snprintf(t, cap, "A box holds %lld pencils. How many pencils are in %lld boxes?", a, b);
        key(g, a), key(g, b);
        break;
    default: /* sharing by division */
        b = draw(g, 2, 12), c = draw(g, 3, 60), a = b * c, r = c;
        if (zh)
            snprintf(t, cap, "%s把%lld张贴纸平均分给%lld个朋友，每个朋友分到多少张？", name, a, b);
        else
            snprintf(
                t, cap,
                "%s shares %lld stickers equally among %lld friends. How many stickers does each "
                "friend get?",
                name, a, b);
        key(g, a), key(g, b);
        break;
    }
    answer_int(g, r);
}

static void make_word_en(gen *g) {
    make_word(g, 0);
}
static void make_word_zh(gen *g) {
    make_word(g, 1);
}
/* Half English, half Chinese: keyed as word_en's or word_zh's problem, so its held-out split is
 * exactly theirs and no problem held out there is trained on here. */
static void make_word_mixed(gen *g) {
    int zh = (int)draw(g, 0, 1);
    g->id = zh ? 5 : 4;
    make_word(g, zh);
}

static const rl_task builtins[] = {
    {"arith", "multi-digit +, -, * (a number)", make_arith, 1, NULL, 0, NULL, NULL, NULL},
    {"countdown", "reach a target from 3-4 numbers with + - * / (an expression)", make_countdown, 2,
     NULL, 0, NULL, NULL, NULL},
    {"linear", "solve a*x + b = c for integer x (a number)", make_linear, 3, NULL, 0, NULL, NULL,
     NULL},
    {"word_en", "English word problems: money, rates, discounts, perimeters, sums (a number)",
     make_word_en, 4, NULL, 0, NULL, NULL, NULL},
    {"word_zh", "the same word problems in Chinese (a number)", make_word_zh, 5, NULL, 0, NULL,
     NULL, NULL},
    {"arith_small", "2-3 digit + and - (a number): arith sized for tiny models", make_arith_small,
     6, NULL, 0, NULL, NULL, NULL},
    {"word", "word_en and word_zh mixed, half each (a number)", make_word_mixed, 7, NULL, 0, NULL,
     NULL, NULL},
};
#define N_BUILTINS ((int)(sizeof builtins / sizeof builtins[0]))

const rl_task *rl_task_find(const char *name) {
    for (int i = 0; name && i < N_BUILTINS; i++)
        if (!strcmp(builtins[i].name, name)) return &builtins[i];
    return NULL;
}

const rl_task *rl_task_builtin(int i) {
    return i >= 0 && i < N_BUILTINS ? &builtins[i] : NULL;
}
const char *rl_task_name(const rl_task *t) {
    return t->name;
}
const char *rl_task_about(const rl_task *t) {
    return t->about;
}
void rl_task_names(char *buf, size_t cap) {
    size_t at = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < N_BUILTINS && at < cap; i++) {
        int n = snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", builtins[i].name);
        at += n > 0 ? (size_t)n : 0;
    }
}

int64_t rl_task_size(const rl_task *t, int split) {
    (void)split;
    return t->make ? -1 : t->n;
}

/* ---- items -------------------------------------------------------------------------------- */

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t s = a ^ (b * 0x9e3779b97f4a7c15ull);
    rng_splitmix64(&s);
    return rng_splitmix64(&s);
}

int rl_task_item(const rl_task *t, int split, int64_t index, uint64_t seed, rl_item *out,
                 whale_err *err) {
    memset(out, 0, sizeof *out);
    out->prompt = out->text;
    out->ref.answer = out->answer;
    if (split != RL_SPLIT_TRAIN && split != RL_SPLIT_TEST)
        return err_set(err, WHALE_E_ARG, "split must be train or test");
    if (index < 0) return err_set(err, WHALE_E_ARG, "negative problem index");
    if (!t->make) {
        if (index >= t->n)
            return err_set(err, WHALE_E_ARG, "%s has %lld problems, not %lld", t->path,
                           (long long)t->n, (long long)index + 1);
        out->prompt = t->prompt[index];
        out->ref.answer = t->answer[index];
        out->ref.verifier = t->verifier[index];
        return 0;
    }
    uint64_t base = mix(mix(seed, (uint64_t)t->id), (uint64_t)index * 2 + (uint64_t)split);
    for (int attempt = 0; attempt < RL_GEN_MAX_TRIES; attempt++) {
        gen g = {.rs = mix(base, (uint64_t)attempt), .it = out};
        memset(out->text, 0, sizeof out->text);
        memset(&out->ref, 0, sizeof out->ref);
        out->ref.answer = out->answer;
        t->make(&g);
        uint64_t k = mix(0x5eed, (uint64_t)(g.id ? g.id : t->id));
        for (int i = 0; i < g.n_key; i++) k = mix(k, g.key[i]);
        out->key = k ? k : 1;
        if ((out->key % RL_TEST_ONE_IN == 0) == (split == RL_SPLIT_TEST)) return 0;
    }
    return err_set(err, WHALE_E_ARG, "%s: no problem of the %s split found", t->name,
                   split ? "test" : "train");
}

/* ---- JSONL user tasks --------------------------------------------------------------------- */

void rl_task_free(const rl_task *tc) {
    if (!tc || tc->make) return;
    rl_task *t = (rl_task *)tc; /* a loaded task: ours to free */
    for (int64_t i = 0; i < t->n; i++) free(t->prompt[i]), free(t->answer[i]);
    free(t->prompt);
    free(t->answer);
    free(t->verifier);
    free(t->path);
    free(t);
}

/* One line's problem into t (slot t->n). 0, or WHALE_E_FORMAT / WHALE_E_NOMEM with the reason. */
static int parse_line(rl_task *t, const char *line, whale_err *err) {
    cJSON *j = cJSON_Parse(line);
    int rc = WHALE_E_FORMAT;
    if (!j) {
        err_set(err, rc, "not valid JSON");
        goto done;
    }
    if (!cJSON_IsObject(j)) {
        err_set(err, rc, "not a JSON object");
        goto done;
    }
    cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt"),
          *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "verifier");
    if (!cJSON_IsString(p) || !p->valuestring[0]) {
        err_set(err, rc, "\"prompt\" must be a non-empty string");
        goto done;
    }
    char num[64];
    const char *ans = NULL;
    if (cJSON_IsString(a))
        ans = a->valuestring;
    else if (cJSON_IsNumber(a))
        snprintf(num, sizeof num, "%.15g", a->valuedouble),
            ans = num; /* 0.1, not 0.10000000000000001 */
    if (!ans) {
        err_set(err, rc, "\"answer\" must be a string or a number");
        goto done;
    }
    int kind = RL_VERIFY_NUMBER;
    if (v && !cJSON_IsString(v)) {
        err_set(err, rc, "\"verifier\" must be \"number\", \"exact\" or \"regex\"");
        goto done;
    }
    if (v && !strcmp(v->valuestring, "exact"))
        kind = RL_VERIFY_EXACT;
    else if (v && !strcmp(v->valuestring, "regex"))
        kind = RL_VERIFY_REGEX;
    else if (v && strcmp(v->valuestring, "number")) {
        err_set(err, rc, "unknown verifier \"%.40s\" (number, exact or regex)", v->valuestring);
        goto done;
    }
    if (kind == RL_VERIFY_NUMBER) {
        char norm[RL_NORM_MAX];
        int count = 0;
        if (!rl_number_last(ans, strlen(ans), norm, sizeof norm, &count) || count != 1) {
            err_set(err, rc, "answer \"%.40s\" is not one number (verifier \"number\")", ans);
            goto done;
        }
    }
    if (kind == RL_VERIFY_REGEX && rl_regex_check(ans, err)) goto done;
    if (strlen(ans) > RL_ANSWER_MAX_BYTES) {
        err_set(err, rc, "answer longer than %d bytes", RL_ANSWER_MAX_BYTES);
        goto done;
    }
    t->prompt[t->n] = strdup(p->valuestring);
    t->answer[t->n] = strdup(ans);
    t->verifier[t->n] = kind;
    if (!t->prompt[t->n] || !t->answer[t->n]) {
        free(t->prompt[t->n]), free(t->answer[t->n]);
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    t->n++;
    rc = 0;
done:
    cJSON_Delete(j);
    return rc;
}

int rl_task_load_jsonl(const char *path, rl_task **out, whale_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, WHALE_E_IO, "%s: cannot open", path);
    size_t len;
    int too_big = 0;
    char *buf = read_all(f, RL_JSONL_MAX_BYTES, &len, &too_big);
    fclose(f);
    if (!buf)
        return err_set(err, too_big ? WHALE_E_FORMAT : WHALE_E_IO, "%s: %s", path,
                       too_big ? "larger than 256 MiB" : "cannot read");
    int64_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    rl_task *t = calloc(1, sizeof *t);
    int rc = WHALE_E_NOMEM;
    if (!t || !(t->prompt = calloc((size_t)lines, sizeof *t->prompt)) ||
        !(t->answer = calloc((size_t)lines, sizeof *t->answer)) ||
        !(t->verifier = calloc((size_t)lines, sizeof *t->verifier)) || !(t->path = strdup(path))) {
        err_set(err, rc, "%s: out of memory", path);
        goto fail;
    }
    t->name = t->path;
    t->about = "a JSONL task file";
    char *line = buf;
    for (int64_t no = 1; line && line <= buf + len; no++) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        if (nl) *nl = 0;
        size_t k = strlen(line);
        if (k != (size_t)((nl ? nl : buf + len) - line)) {
            rc = err_set(err, WHALE_E_FORMAT, "%s:%lld: a NUL byte in the line", path,
                         (long long)no);
            goto fail;
        }
        int blank = 1;
        for (size_t i = 0; i < k && blank; i++)
            blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\r';
        if (!blank && (rc = parse_line(t, line, err))) {
            err_prefix(err, "%s:%lld", path, (long long)no);
            goto fail;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (!t->n) {
        rc = err_set(err, WHALE_E_FORMAT,
                     "%s: no problems in the file (one JSON object a line: "
                     "{\"prompt\": ..., \"answer\": ..., \"verifier\": \"number\"})",
                     path);
        goto fail;
    }
    free(buf);
    *out = t;
    return 0;
fail:
    free(buf);
    rl_task_free(t);
    return rc;
}

int rl_task_open(const char *arg, const rl_task **out, rl_task **owned, whale_err *err) {
    *owned = NULL;
    if ((*out = rl_task_find(arg))) return 0;
    if (access(arg, F_OK)) {
        char names[256];
        rl_task_names(names, sizeof names);
        return err_set(err, WHALE_E_NOTFOUND, "no task '%s': not a built-in task (%s) and no such file", arg, names);
    }
    int rc = rl_task_load_jsonl(arg, owned, err);
    *out = *owned;
    return rc;
}
