/* quality.h — the document quality rules of `whale data prepare`, in the spirit of the
 * published heuristic filters (Gopher's "quality filters", Rae et al. 2021; C4's, Raffel et al.
 * 2020), adapted so that ordinary Chinese prose and ordinary source code pass. Each rule is one
 * named threshold; docs/DATA.md gives every default and why.
 *
 * Definitions (over Unicode code points; the text must be valid UTF-8):
 *   space        ASCII whitespace or a Unicode separator (Zs, Zl, Zp)
 *   unspaced     a letter of a script written without spaces between words: Han, kana, Thai,
 *                Lao, Khmer, Myanmar, Tibetan. Each counts as one word.
 *   words        whitespace-separated tokens, with every unspaced letter a word of its own
 *   alnum runs   maximal runs of letters, marks and digits ("self.assertEqual(x," has three)
 *   spaced text  unspaced letters are under DATA_UNSPACED_SHARE of all letters
 * Owns: the rule table, the statistics, the per-document check. Knows nothing of files. */
#ifndef WHALE_DATA_QUALITY_H
#define WHALE_DATA_QUALITY_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* A text whose unspaced letters make up at least this share of its letters is "CJK-heavy": the
 * mean word length rule does not apply and near-duplicate shingles are characters, not words. */
#define DATA_UNSPACED_SHARE 0.3

/* The rules in the order they are checked; a document is counted under the first it fails. */
enum quality_rule {
    QUALITY_OK = 0,
    QUALITY_MIN_WORDS,              /* fewer than min_words words */
    QUALITY_MAX_NONPRINTABLE_RATIO, /* control characters, U+FFFD: binary or broken text */
    QUALITY_MAX_SYMBOL_RATIO,       /* punctuation and symbols per non-space character */
    QUALITY_MAX_DIGIT_RATIO,        /* digits per non-space character */
    QUALITY_MEAN_WORD_LENGTH,       /* mean alnum run length outside [min, max] (spaced text) */
    QUALITY_MAX_DUPLICATE_LINE_FRACTION, /* characters in lines that repeat an earlier line */
    QUALITY_N
};

typedef struct quality_rules {
    int64_t min_words;
    double max_nonprintable_ratio;
    double max_symbol_ratio;
    double max_digit_ratio;
    double mean_word_length_min, mean_word_length_max;
    double max_duplicate_line_fraction;
} quality_rules;

/* What the rules measure, for a document (also used by near-duplicate shingling). */
typedef struct text_stats {
    int64_t chars;                      /* code points */
    int64_t nonspace;                   /* code points that are not space */
    int64_t letters;                    /* L* and M* */
    int64_t unspaced;                   /* letters of unspaced scripts */
    int64_t digits;                     /* N* */
    int64_t symbols;                    /* P* and S* */
    int64_t nonprintable;               /* Cc other than tab, LF, CR; U+FFFD */
    int64_t words;                      /* see the file comment */
    int64_t runs, run_chars;            /* alnum runs and the code points in them */
    int64_t line_chars, dup_line_chars; /* non-space code points in lines; in repeated lines */
} text_stats;

void quality_rules_default(quality_rules *q);
/* The rule's name as in manifest.json and --quality ("min_words", ...); "kept" for QUALITY_OK. */
const char *quality_rule_name(int rule);
/* Set one threshold from "NAME=VALUE" (names: the rules', plus mean_word_length_min/max).
 * Returns 0, or WHALE_E_ARG naming what was wrong. */
int quality_rules_set(quality_rules *q, const char *assignment, whale_err *err);

/* 1 when the text is CJK-heavy (see DATA_UNSPACED_SHARE). */
int text_stats_unspaced(const text_stats *s);
/* Measure text[0..n) (valid UTF-8). Returns 0, or WHALE_E_NOMEM (the line table). */
int text_stats_compute(text_stats *s, const char *text, size_t n, whale_err *err);
/* The first rule s fails under q, or QUALITY_OK. */
int quality_check(const quality_rules *q, const text_stats *s);

#endif
