/* quality.c — the rules of quality.h: one pass over the code points gathers every statistic
 * (utf8proc gives each one's Unicode category), then each rule is one comparison. */
#include "data/quality.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/err.h"
#include "base/siphash.h"
#include "base/utf8.h"

static const char *const rule_names[QUALITY_N] = {
    "kept",
    "min_words",
    "max_nonprintable_ratio",
    "max_symbol_ratio",
    "max_digit_ratio",
    "mean_word_length",
    "max_duplicate_line_fraction",
};

const char *quality_rule_name(int rule) {
    return rule >= 0 && rule < QUALITY_N ? rule_names[rule] : "?";
}

void quality_rules_default(quality_rules *q) {
    q->min_words = 50;                /* Gopher's lower bound */
    q->max_nonprintable_ratio = 0.01; /* one control character in a hundred: not text */
    q->max_symbol_ratio = 0.6;        /* our C: 0.24 median, 0.33 at most; rows of marks near 1 */
    q->max_digit_ratio = 0.4;         /* tables of numbers, hex dumps */
    q->mean_word_length_min = 2.0;    /* Gopher: 3; code: i, n, x[i] * w[k] (src/train/ops.c: 2.45) */
    q->mean_word_length_max = 12;     /* Gopher: 10; long identifiers in code */
    q->max_duplicate_line_fraction = 0.3; /* Gopher: 0.2 of characters in duplicate lines */
}

int quality_rules_set(quality_rules *q, const char *a, whale_err *err) {
    const char *eq = strchr(a, '=');
    if (!eq || eq == a || !eq[1])
        return err_set(err, WHALE_E_ARG, "--quality %s: expected NAME=VALUE", a);
    char *end;
    double v = strtod(eq + 1, &end);
    if (*end || v < 0)
        return err_set(err, WHALE_E_ARG, "--quality %s: the value is not a number >= 0", a);
    size_t n = (size_t)(eq - a);
    struct {
        const char *name;
        double *d;
    } dbl[] = {
        {"max_nonprintable_ratio", &q->max_nonprintable_ratio},
        {"max_symbol_ratio", &q->max_symbol_ratio},
        {"max_digit_ratio", &q->max_digit_ratio},
        {"mean_word_length_min", &q->mean_word_length_min},
        {"mean_word_length_max", &q->mean_word_length_max},
        {"max_duplicate_line_fraction", &q->max_duplicate_line_fraction},
    };
    if (n == strlen("min_words") && !strncmp(a, "min_words", n)) {
        q->min_words = (int64_t)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++)
        if (n == strlen(dbl[i].name) && !strncmp(a, dbl[i].name, n)) {
            *dbl[i].d = v;
            return 0;
        }
    return err_set(err, WHALE_E_ARG,
                   "--quality %s: unknown rule (min_words, max_nonprintable_ratio, "
                   "max_symbol_ratio, max_digit_ratio, "
                   "mean_word_length_min, mean_word_length_max, max_duplicate_line_fraction)",
                   a);
}

static int is_unspaced(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x3FFFF) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0x3040 && c <= 0x30FF) ||                               /* Han, kana */
           (c >= 0x0E00 && c <= 0x0EFF) ||                               /* Thai, Lao */
           (c >= 0x0F00 && c <= 0x0FFF) ||                               /* Tibetan */
           (c >= 0x1000 && c <= 0x109F) || (c >= 0x1780 && c <= 0x17FF); /* Myanmar, Khmer */
}

static int is_space(uint32_t c, int cat) {
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || cat == UTF8PROC_CATEGORY_ZS ||
           cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

int text_stats_unspaced(const text_stats *s) {
    return s->letters > 0 && (double)s->unspaced >= DATA_UNSPACED_SHARE * (double)s->letters;
}

/* The set of line hashes seen so far in one document (open addressing; 0 marks a free slot). */
typedef struct line_set {
    uint64_t *v;
    size_t cap, n;
} line_set;

/* 1 when h was already there, 0 when added, -1 on OOM. */
static int line_set_add(line_set *s, uint64_t h) {
    if (!h) h = 1;
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        uint64_t *v = calloc(cap, sizeof *v);
        if (!v) return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->v[i]) continue;
            size_t j = s->v[i] & (cap - 1);
            while (v[j]) j = (j + 1) & (cap - 1);
            v[j] = s->v[i];
        }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    size_t j = h & (s->cap - 1);
    while (s->v[j]) {
        if (s->v[j] == h) return 1;
        j = (j + 1) & (s->cap - 1);
    }
    s->v[j] = h;
    s->n++;
    return 0;
}

static const uint8_t line_key[SIPHASH_KEY_BYTES] = "whale data line";

int text_stats_compute(text_stats *s, const char *text, size_t n, whale_err *err) {
    memset(s, 0, sizeof *s);
    line_set lines = {0};
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0, line_first = SIZE_MAX, line_last = 0; /* trimmed line bytes */
    int64_t line_ns = 0;
    int in_word = 0, in_run = 0;
    for (;;) {
        uint32_t c = '\n';
        int len = 1;
        if (i < n) {
            len = utf8_seq_len(p + i, n - i);
            if (len <= 0)
                len = 1, c = 0xFFFD; /* the caller validated; stay safe anyway */
            else
                c = utf8_decode(p + i, len);
        }
        if (c == '\n') { /* a line ends (or the text does) */
            if (line_ns > 0) {
                s->line_chars += line_ns;
                int dup = line_set_add(
                    &lines, siphash64(line_key, text + line_first, line_last - line_first));
                if (dup < 0) {
                    free(lines.v);
                    return err_set(err, WHALE_E_NOMEM, "out of memory measuring lines");
                }
                if (dup) s->dup_line_chars += line_ns;
            }
            line_ns = 0;
            line_first = SIZE_MAX;
            if (i >= n) break;
        }
        int cat = utf8proc_category((utf8proc_int32_t)c);
        s->chars++;
        int space = is_space(c, cat);
        if (!space) {
            s->nonspace++;
            line_ns++;
            if (line_first == SIZE_MAX) line_first = i;
            line_last = i + (size_t)len;
        }
        int letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME;
        int digit = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
        int unspaced = letter && is_unspaced(c);
        if (letter) s->letters++;
        if (unspaced) s->unspaced++;
        if (digit) s->digits++;
        if (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_SO) s->symbols++;
        if ((cat == UTF8PROC_CATEGORY_CC && c != '\t' && c != '\n' && c != '\r') || c == 0xFFFD)
            s->nonprintable++;
        /* words: whitespace tokens, every unspaced letter one of its own */
        if (space) {
            in_word = 0;
        } else if (unspaced) {
            s->words++;
            in_word = 0;
        } else if (!in_word) {
            s->words++;
            in_word = 1;
        }
        /* alnum runs (unspaced letters are not part of them: they are no space-separated words) */
        if ((letter || digit) && !unspaced) {
            if (!in_run) s->runs++;
            s->run_chars++;
            in_run = 1;
        } else {
            in_run = 0;
        }
        i += (size_t)len;
    }
    free(lines.v);
    return 0;
}

int quality_check(const quality_rules *q, const text_stats *s) {
    double ns = s->nonspace > 0 ? (double)s->nonspace : 1;
    if (s->words < q->min_words) return QUALITY_MIN_WORDS;
    if ((double)s->nonprintable > q->max_nonprintable_ratio * (double)(s->chars > 0 ? s->chars : 1))
        return QUALITY_MAX_NONPRINTABLE_RATIO;
    if ((double)s->symbols > q->max_symbol_ratio * ns) return QUALITY_MAX_SYMBOL_RATIO;
    if ((double)s->digits > q->max_digit_ratio * ns) return QUALITY_MAX_DIGIT_RATIO;
    if (!text_stats_unspaced(s) && s->runs > 0) {
        double mean = (double)s->run_chars / (double)s->runs;
        if (mean < q->mean_word_length_min || mean > q->mean_word_length_max)
            return QUALITY_MEAN_WORD_LENGTH;
    }
    if (s->line_chars > 0 &&
        (double)s->dup_line_chars > q->max_duplicate_line_fraction * (double)s->line_chars)
        return QUALITY_MAX_DUPLICATE_LINE_FRACTION;
    return QUALITY_OK;
}
