/* verify.c — answer extraction and the verifiers (the rules are in verify.h's head). Owns
 * nothing beyond the call: every function reads the caller's bytes and writes the caller's
 * structs. Nothing here allocates except PCRE2 compiling a user's pattern. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rl/verify.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Countdown expressions nest at most this deep: the parser recurses per parenthesis, and a
 * reply of 100,000 "(" must not eat the stack. No solution needs more than a few levels. */
#define RL_EXPR_MAX_DEPTH 32

/* ---- small byte helpers ------------------------------------------------------------------- */

/* Offset of the last occurrence of needle in s[from..n), or -1. */
static long find_last(const char *s, size_t from, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (n < k || n - k < from) return -1;
    for (size_t i = n - k + 1; i-- > from;)
        if (!memcmp(s + i, needle, k)) return (long)i;
    return -1;
}

static long find_first(const char *s, size_t from, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return (long)i;
    return -1;
}

static int count_of(const char *s, size_t from, size_t n, const char *needle) {
    int c = 0;
    for (long i = find_first(s, from, n, needle); i >= 0;
         i = find_first(s, (size_t)i + 1, n, needle))
        c++;
    return c;
}

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void trim(const char *s, size_t *off, size_t *len) {
    while (*len && is_space((unsigned char)s[*off])) (*off)++, (*len)--;
    while (*len && is_space((unsigned char)s[*off + *len - 1])) (*len)--;
}

/* s[0..n) into out (cap bytes), cut, NUL-terminated. */
static void copy_cut(char *out, size_t cap, const char *s, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
}

/* FNV-1a, never 0 (0 means "no vote"). */
static uint64_t vote_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

/* ---- where the answer is ------------------------------------------------------------------ */

void rl_answer_find(const char *s, size_t n, int start_in_think, rl_verdict *out) {
    memset(out, 0, sizeof *out);
    if (!s || n > RL_REPLY_MAX_BYTES) return;
    int n_open = count_of(s, 0, n, "<think>"), n_close = count_of(s, 0, n, "</think>");
    long close = find_last(s, 0, n, "</think>");
    size_t off = 0, len = n;
    if (close >= 0) {
        off = (size_t)close + 8;
        len = n - off;
        out->think_end = off;
        if (find_first(s, off, n, "<think>") >= 0) return; /* reasoning reopened and never closed */
    } else if (start_in_think || n_open) {
        return; /* <think> never closed: the reply is all reasoning */
    }
    int fmt = close >= 0 && n_close == 1;
    if (fmt) {
        long open = find_first(s, 0, n, "<think>");
        if (start_in_think)
            fmt = n_open == 0;
        else {
            fmt = n_open == 1 && open < close;
            for (long i = 0; fmt && i < open; i++) fmt = is_space((unsigned char)s[i]);
        }
    }
    long a = find_last(s, off, off + len, "<answer>");
    if (a >= 0) {
        long b = find_first(s, (size_t)a + 8, off + len, "</answer>");
        if (b < 0) return; /* <answer> never closed */
        if (count_of(s, off, off + len, "<answer>") != 1) fmt = 0;
        off = (size_t)a + 8;
        len = (size_t)b - off;
    }
    long bx = find_last(s, off, off + len, "\\boxed{");
    if (bx >= 0) { /* the content of the last \boxed{...}, braces balanced (unclosed: to the end) */
        size_t i = (size_t)bx + 7, end = off + len;
        int depth = 1;
        size_t j = i;
        for (; j < end; j++) {
            if (s[j] == '{')
                depth++;
            else if (s[j] == '}' && --depth == 0)
                break;
        }
        off = i;
        len = j - i;
    }
    trim(s, &off, &len);
    if (len > RL_ANSWER_MAX_BYTES) return; /* a dump, not an answer */
    out->has_answer = len > 0;
    out->ans_off = off;
    out->ans_len = len;
    out->format_ok = fmt && len > 0;
}

/* ---- numbers ------------------------------------------------------------------------------ */

/* The digit at s[i] (ASCII or full-width U+FF10..U+FF19) and its byte length, or -1. */
static int digit_at(const char *s, size_t n, size_t i, size_t *w) {
    unsigned char c = (unsigned char)s[i];
    if (c >= '0' && c <= '9') {
        *w = 1;
        return c - '0';
    }
    if (c == 0xEF && i + 2 < n && (unsigned char)s[i + 1] == 0xBC &&
        (unsigned char)s[i + 2] >= 0x90 && (unsigned char)s[i + 2] <= 0x99) {
        *w = 3;
        return (unsigned char)s[i + 2] - 0x90;
    }
    return -1;
}

/* Byte length of a minus sign ending just before i ('-', U+2212, full-width U+FF0D), or 0. */
static size_t minus_before(const char *s, size_t i) {
    if (i >= 1 && s[i - 1] == '-') return 1;
    if (i >= 3 && !memcmp(s + i - 3, "\xE2\x88\x92", 3)) return 3;
    if (i >= 3 && !memcmp(s + i - 3, "\xEF\xBC\x8D", 3)) return 3;
    return 0;
}

static int is_alnum_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ')' ||
           c == '_';
}

/* Scan one number starting at the digit s[i]: writes its normalized form into out (cap) and
 * returns the offset after it; *valid 0 when too long or an exponent follows. */
static size_t scan_number(const char *s, size_t n, size_t i, int neg, char *out, size_t cap,
                          int *valid) {
    char ip[RL_NUMBER_MAX_DIGITS + 1], fp[RL_NUMBER_MAX_DIGITS + 1];
    size_t ni = 0, nf = 0, w, run = 0;
    int d, too_long = 0;
    while (i < n && (d = digit_at(s, n, i, &w)) >= 0) {
        if (ni < RL_NUMBER_MAX_DIGITS)
            ip[ni++] = (char)('0' + d);
        else
            too_long = 1;
        i += w, run++;
    }
    /* thousands groups: a first run of 1-3 digits, then ",ddd" groups not followed by a digit */
    while (run <= 3 && i + 3 < n && s[i] == ',') {
        size_t j = i + 1, k = 0;
        char g[3];
        while (k < 3 && j < n && (d = digit_at(s, n, j, &w)) >= 0) g[k++] = (char)('0' + d), j += w;
        if (k != 3 || (j < n && digit_at(s, n, j, &w) >= 0)) break;
        for (k = 0; k < 3; k++) {
            if (ni < RL_NUMBER_MAX_DIGITS)
                ip[ni++] = g[k];
            else
                too_long = 1;
        }
        i = j;
    }
    size_t dot = i < n && s[i] == '.'                              ? 1
                 : i + 3 <= n && !memcmp(s + i, "\xEF\xBC\x8E", 3) ? 3
                                                                   : 0; /* . or U+FF0E */
    if (dot) {
        if (i + dot < n && digit_at(s, n, i + dot, &w) >= 0) {
            i += dot;
            while (i < n && (d = digit_at(s, n, i, &w)) >= 0) {
                if (ni + nf < RL_NUMBER_MAX_DIGITS)
                    fp[nf++] = (char)('0' + d);
                else
                    too_long = 1;
                i += w;
            }
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) { /* 1e9, 2E-3: not a plain number */
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        if (j < n && digit_at(s, n, j, &w) >= 0) { /* the exponent is part of this non-number */
            too_long = 1;
            for (i = j; i < n && digit_at(s, n, i, &w) >= 0; i += w) {
            }
        }
    }
    *valid = !too_long;
    /* normalize: no leading zeros, no trailing fraction zeros, no "-0" */
    size_t a = 0;
    while (a + 1 < ni && ip[a] == '0') a++;
    while (nf && fp[nf - 1] == '0') nf--;
    int zero = ni - a == 1 && ip[a] == '0' && !nf;
    if (cap && *valid)
        snprintf(out, cap, "%s%.*s%s%.*s", neg && !zero ? "-" : "", (int)(ni - a), ip + a,
                 nf ? "." : "", (int)nf, fp);
    return i;
}

int rl_number_last(const char *s, size_t n, char *out, size_t cap, int *count) {
    int c = 0, found = 0, last_valid = 0;
    char tmp[RL_NUMBER_MAX_DIGITS + 4];
    if (cap) out[0] = 0;
    for (size_t i = 0, w; i < n;) {
        if (digit_at(s, n, i, &w) < 0) {
            i++;
            continue;
        }
        size_t m = minus_before(s, i);
        int neg = m && (i == m || !is_alnum_byte((unsigned char)s[i - m - 1]));
        int valid;
        i = scan_number(s, n, i, neg, tmp, sizeof tmp, &valid);
        c++;
        found = 1;
        last_valid = valid;
        if (valid && cap) snprintf(out, cap, "%s", tmp);
    }
    if (count) *count = c;
    if (!found || !last_valid) {
        if (cap) out[0] = 0;
        return 0;
    }
    return 1;
}

size_t rl_text_collapse(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    int space = 0;
    if (!cap) return 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        if (is_space((unsigned char)s[i])) {
            space = k > 0;
            continue;
        }
        if (space && k + 2 < cap) out[k++] = ' ';
        space = 0;
        out[k++] = s[i];
    }
    out[k] = 0;
    return k;
}

/* ---- countdown expressions ---------------------------------------------------------------- */

typedef struct expr {
    const char *s;
    size_t n, i;
    const int64_t *nums;
    int n_nums;
    int used[RL_COUNTDOWN_MAX_NUMS];
    int depth, bad;
} expr;

typedef struct rat {
    int64_t p, q; /* q > 0, reduced */
} rat;

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a ? a : 1;
}

static rat rat_make(expr *e, int64_t p, int64_t q) {
    if (q == 0) {
        e->bad = 1;
        return (rat){0, 1};
    }
    if (q < 0) {
        if (p == INT64_MIN || q == INT64_MIN) {
            e->bad = 1;
            return (rat){0, 1};
        }
        p = -p, q = -q;
    }
    int64_t g = gcd64(p, q);
    return (rat){p / g, q / g};
}

static rat rat_op(expr *e, rat a, rat b, char op) {
    int64_t x, y, z;
    switch (op) {
    case '+':
    case '-':
        if (__builtin_mul_overflow(a.p, b.q, &x) || __builtin_mul_overflow(b.p, a.q, &y) ||
            (op == '+' ? __builtin_add_overflow(x, y, &x) : __builtin_sub_overflow(x, y, &x)) ||
            __builtin_mul_overflow(a.q, b.q, &z))
            break;
        return rat_make(e, x, z);
    case '*':
        if (__builtin_mul_overflow(a.p, b.p, &x) || __builtin_mul_overflow(a.q, b.q, &z)) break;
        return rat_make(e, x, z);
    case '/':
        if (b.p == 0) break; /* division by zero */
        if (__builtin_mul_overflow(a.p, b.q, &x) || __builtin_mul_overflow(a.q, b.p, &z)) break;
        return rat_make(e, x, z);
    }
    e->bad = 1;
    return (rat){0, 1};
}

static void skip_ws(expr *e) {
    while (e->i < e->n && is_space((unsigned char)e->s[e->i])) e->i++;
}

/* The operator at the cursor among ops ("+-" or "* /"), consumed; 0 if none. */
static char take_op(expr *e, int mul) {
    skip_ws(e);
    const char *s = e->s + e->i;
    size_t left = e->n - e->i;
    if (!left) return 0;
    if (!mul && (*s == '+' || *s == '-')) {
        e->i++;
        return *s;
    }
    if (mul && (*s == '*' || *s == '/')) {
        e->i++;
        return *s;
    }
    if (mul && left >= 2 && !memcmp(s, "\xC3\x97", 2)) {
        e->i += 2;
        return '*';
    } /* × */
    if (mul && left >= 2 && !memcmp(s, "\xC3\xB7", 2)) {
        e->i += 2;
        return '/';
    } /* ÷ */
    return 0;
}

static rat parse_sum(expr *e);

static rat parse_atom(expr *e) {
    skip_ws(e);
    if (e->bad || e->i >= e->n) {
        e->bad = 1;
        return (rat){0, 1};
    }
    if (e->s[e->i] == '(') {
        if (++e->depth > RL_EXPR_MAX_DEPTH) {
            e->bad = 1;
            return (rat){0, 1};
        }
        e->i++;
        rat r = parse_sum(e);
        skip_ws(e);
        if (e->i >= e->n || e->s[e->i] != ')')
            e->bad = 1;
        else
            e->i++;
        e->depth--;
        return r;
    }
    int64_t v = 0;
    size_t start = e->i;
    while (e->i < e->n && e->s[e->i] >= '0' && e->s[e->i] <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, e->s[e->i] - '0', &v)) {
            e->bad = 1;
            break;
        }
        e->i++;
    }
    if (e->i == start || e->bad) {
        e->bad = 1;
        return (rat){0, 1};
    }
    int k = 0; /* one unused given number of this value */
    while (k < e->n_nums && (e->used[k] || e->nums[k] != v)) k++;
    if (k == e->n_nums) {
        e->bad = 1;
        return (rat){0, 1};
    }
    e->used[k] = 1;
    return (rat){v, 1};
}

static rat parse_product(expr *e) {
    rat r = parse_atom(e);
    char op;
    while (!e->bad && (op = take_op(e, 1))) r = rat_op(e, r, parse_atom(e), op);
    return r;
}

static rat parse_sum(expr *e) {
    rat r = parse_product(e);
    char op;
    while (!e->bad && (op = take_op(e, 0))) r = rat_op(e, r, parse_product(e), op);
    return r;
}

int rl_countdown_eval(const char *s, size_t n, const int64_t *nums, int n_nums, int64_t *num,
                      int64_t *den) {
    if (n_nums < 0 || n_nums > RL_COUNTDOWN_MAX_NUMS || n > RL_ANSWER_MAX_BYTES) return -1;
    long eq = find_first(s, 0, n, "=");
    if (eq >= 0) n = (size_t)eq;
    expr e = {.s = s, .n = n, .nums = nums, .n_nums = n_nums};
    rat r = parse_sum(&e);
    skip_ws(&e);
    if (e.bad || e.i != e.n) return -1;
    *num = r.p;
    *den = r.q;
    return 0;
}

/* ---- regex -------------------------------------------------------------------------------- */

static pcre2_code *regex_compile(const char *pattern, whale_err *err) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
    if (!re && err) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        err_set(err, WHALE_E_FORMAT, "bad regex at offset %zu: %s", (size_t)eo, (const char *)msg);
    }
    return re;
}

int rl_regex_check(const char *pattern, whale_err *err) {
    pcre2_code *re = regex_compile(pattern, err);
    if (!re) return WHALE_E_FORMAT;
    pcre2_code_free(re);
    return 0;
}

/* 1 when the whole of s[0..n) matches pattern within the limits; 0 otherwise (also when the
 * limits are hit, the pattern does not compile, or s is not UTF-8). */
static int regex_full_match(const char *pattern, const char *s, size_t n) {
    pcre2_code *re = regex_compile(pattern, NULL);
    if (!re) return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    int ok = 0;
    if (md && mc) {
        pcre2_set_match_limit(mc, RL_REGEX_MATCH_LIMIT);
        pcre2_set_depth_limit(mc, RL_REGEX_DEPTH_LIMIT);
        ok = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, mc) >= 0;
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return ok;
}

/* ---- the verdict -------------------------------------------------------------------------- */

void rl_verify(const char *reply, size_t n, int start_in_think, const rl_ref *ref,
               rl_verdict *out) {
    rl_answer_find(reply, n, start_in_think, out);
    if (!out->has_answer || !ref || !ref->answer) return;
    const char *a = reply + out->ans_off;
    size_t len = out->ans_len;
    char buf[RL_ANSWER_MAX_BYTES + 1];
    switch (ref->verifier) {
    case RL_VERIFY_NUMBER: {
        char want[RL_NUMBER_MAX_DIGITS + 4];
        int count = 0;
        if (!rl_number_last(a, len, out->norm, sizeof out->norm, &count)) {
            out->norm[0] = 0;
            return;
        }
        if (count > RL_ANSWER_MAX_NUMBERS) {
            out->norm[0] = 0;
            return;
        } /* a guess list: no vote either */
        out->vote = vote_hash(out->norm, strlen(out->norm));
        int wc;
        if (!rl_number_last(ref->answer, strlen(ref->answer), want, sizeof want, &wc) || wc != 1)
            return;
        out->correct = !strcmp(want, out->norm);
        return;
    }
    case RL_VERIFY_EXACT:
    case RL_VERIFY_REGEX: {
        size_t k = rl_text_collapse(a, len, buf, sizeof buf);
        copy_cut(out->norm, sizeof out->norm, buf, k);
        out->vote = vote_hash(buf, k);
        if (ref->verifier == RL_VERIFY_REGEX) {
            out->correct = regex_full_match(ref->answer, buf, k);
        } else {
            char want[RL_ANSWER_MAX_BYTES + 1];
            size_t m = rl_text_collapse(ref->answer, strlen(ref->answer), want, sizeof want);
            out->correct = m == k && !memcmp(want, buf, k);
        }
        return;
    }
    case RL_VERIFY_COUNTDOWN: {
        int64_t p, q;
        if (rl_countdown_eval(a, len, ref->nums, ref->n_nums, &p, &q)) return;
        size_t k = 0; /* the expression without spaces (and without "= ...") votes */
        for (size_t i = 0; i < len && a[i] != '='; i++)
            if (!is_space((unsigned char)a[i])) buf[k++] = a[i];
        buf[k] = 0;
        copy_cut(out->norm, sizeof out->norm, buf, k);
        out->vote = vote_hash(buf, k);
        out->correct = q == 1 && p == ref->target;
        return;
    }
    }
}

int rl_stop_feed(rl_stop_scan *st, const char *bytes, size_t n) {
    const size_t k = sizeof RL_ANSWER_CLOSE - 1;
    for (size_t i = 0; i < n && !st->hit; i++) { /* the tail plus one byte: does it end here? */
        if (st->n_tail == sizeof st->tail) {
            st->hit = !memcmp(st->tail, RL_ANSWER_CLOSE, k - 1) && bytes[i] == RL_ANSWER_CLOSE[k - 1];
            memmove(st->tail, st->tail + 1, sizeof st->tail - 1);
            st->n_tail--;
        }
        st->tail[st->n_tail++] = bytes[i];
    }
    return st->hit;
}

char *rl_reformat_plain(const char *s, size_t n, size_t *out_len, size_t *prefix) {
    static const char open[] = RL_PLAIN_OPEN, mid[] = RL_PLAIN_CLOSE "\n\n";
    *prefix = 0, *out_len = n;
    if (find_first(s, 0, n, "<think>") >= 0 || find_first(s, 0, n, "</think>") >= 0) {
        char *r = malloc(n + 1); /* already tagged: as it is */
        if (r) memcpy(r, s, n), r[n] = 0;
        return r;
    }
    size_t end = n;
    while (end && is_space((unsigned char)s[end - 1])) end--;
    long cut = find_last(s, 0, end, "\n\n");
    size_t skip = 2;
    if (cut < 0) cut = find_last(s, 0, end, "\n"), skip = 1;
    size_t think = cut < 0 ? 0 : (size_t)cut, ans = cut < 0 ? 0 : (size_t)cut + skip;
    while (think && (s[think - 1] == '\n' || s[think - 1] == ' ')) think--;
    size_t len = sizeof open - 1 + think + sizeof mid - 1 + (end - ans);
    char *r = malloc(len + 1), *w = r;
    if (!r) return NULL;
    memcpy(w, open, sizeof open - 1), w += sizeof open - 1;
    memcpy(w, s, think), w += think;
    memcpy(w, mid, sizeof mid - 1), w += sizeof mid - 1;
    memcpy(w, s + ans, end - ans);
    r[len] = 0;
    *prefix = sizeof open - 1, *out_len = len;
    return r;
}
