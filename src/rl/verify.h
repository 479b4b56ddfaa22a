/* verify.h — reading a model's reply the way a rule-based reward does: where its answer is,
 * whether it kept the think-then-answer format, and whether the answer is right.
 *
 * Owns answer extraction, number normalization, the verifiers (number, exact, regex, countdown)
 * and their limits. Does not own the problems (task.h) or generation (eval.h). Pure functions
 * over bytes: no model, no engine, no allocation except PCRE2's for regexes and
 * rl_reformat_plain's result.
 *
 * The reply's answer (rl_answer_find):
 *   - the text after the LAST "</think>"; when the reply (or the prompt: start_in_think) opened
 *     a "<think>" that no "</think>" closes, there is no answer at all;
 *   - a reply with no think tags at all (and a prompt that did not open one) is all answer;
 *   - inside that text, when "<answer>" is present: the content of the last <answer>...</answer>
 *     pair (an <answer> never closed: no answer);
 *   - inside that, when "\boxed{" is present: the content of the last \boxed{...}.
 * Format (rl_verdict.format_ok): exactly one "</think>", at most one "<think>" and only before
 * it (none needed when the prompt opened it), no think tag after it, and a non-empty answer; at
 * most one <answer> pair when one is used.
 *
 * Anti-gaming rules (docs/RL.md):
 *   - only the LAST number of the answer counts ("12 or 13 or 14" is the answer 14), and an
 *     answer holding more than RL_ANSWER_MAX_NUMBERS numbers is a guess list: wrong;
 *   - replies longer than RL_REPLY_MAX_BYTES and answers longer than RL_ANSWER_MAX_BYTES are
 *     wrong (and not well formatted) without being examined further;
 *   - numbers are plain decimals (digits, "1,234" groups, one ".", a leading "-"); nan, inf,
 *     exponents ("1e9") and numbers longer than RL_NUMBER_MAX_DIGITS are not numbers;
 *   - a regex must match the whole answer, under PCRE2 match and depth limits;
 *   - a countdown expression may use only the given numbers, each at most once; it is
 *     evaluated in exact rational arithmetic (division by zero, overflow: wrong). */
#ifndef WHALE_RL_VERIFY_H
#define WHALE_RL_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* A reply longer than this is wrong without being read: the tasks' replies are a few thousand
 * tokens at most (~4 bytes each), and a reward must not cost more than the generation. */
#define RL_REPLY_MAX_BYTES (1u << 20)
/* An answer (after </think>, tags and \boxed peeled) longer than this is a dump, not an
 * answer; it also bounds the number scan, exact comparison and regex work. */
#define RL_ANSWER_MAX_BYTES 4096
/* More numbers than this in the answer is a list of guesses. A worked last line such as
 * "12 * 5 = 60" holds 3; "the answer is 60" holds 1. */
#define RL_ANSWER_MAX_NUMBERS 4
/* Digits in one number (integer and fraction together): beyond int64 and double's exactness
 * range comparisons would be meaningless; 30 covers every answer a task here has. */
#define RL_NUMBER_MAX_DIGITS 30
/* PCRE2 limits for user regexes: a backtracking blow-up stops at these and counts as no match
 * (the defaults, 10,000,000 steps, would let one answer take seconds). */
#define RL_REGEX_MATCH_LIMIT 100000
#define RL_REGEX_DEPTH_LIMIT 1000
/* The normalized answer kept for majority voting and display (longer ones are cut; votes
   compare a hash of the whole). */
#define RL_NORM_MAX 64
/* Numbers a countdown problem may give. */
#define RL_COUNTDOWN_MAX_NUMS 6

enum rl_verifier {
    RL_VERIFY_NUMBER = 0, /* numeric equality after normalization */
    RL_VERIFY_EXACT,      /* trimmed, whitespace collapsed, byte equality */
    RL_VERIFY_REGEX,      /* the reference is a PCRE2 pattern the whole answer must match */
    RL_VERIFY_COUNTDOWN,  /* an expression over the given numbers reaching the target */
};

/* What the verifier compares an answer with. */
typedef struct rl_ref {
    int verifier;       /* enum rl_verifier */
    const char *answer; /* number, text or pattern (borrowed); for countdown the target */
    int n_nums;         /* countdown: the numbers given */
    int64_t nums[RL_COUNTDOWN_MAX_NUMS];
    int64_t target;
} rl_ref;

typedef struct rl_verdict {
    int correct;             /* the answer is right (0 when there is no answer) */
    int format_ok;           /* think-then-answer format kept */
    int has_answer;          /* an answer was found (it may be empty or wrong) */
    size_t ans_off, ans_len; /* the answer's bytes in the reply (after peeling tags, \boxed) */
    size_t think_end;        /* bytes of the reply up to the end of the last </think> (0: none) */
    char norm[RL_NORM_MAX];  /* the normalized answer ("" when none or not valid) */
    uint64_t vote;           /* hash of the whole normalized answer; 0: no valid answer (no vote) */
} rl_verdict;

/* Find the answer in reply[0..n) as the head of this file says. start_in_think: the prompt
 * ended inside <think>. Fills out's has_answer, ans_off/ans_len, think_end and format_ok
 * (correct, norm and vote are left 0). Never fails. */
void rl_answer_find(const char *reply, size_t n, int start_in_think, rl_verdict *out);

/* The last number in s[0..n) in normalized form ("-1234.5": no leading zeros, no trailing
 * fraction zeros, no "-0", full-width digits read as ASCII) into out (cap bytes), and how many
 * numbers s holds into *count (may be NULL). Returns 1 when found, 0 when s holds no number or
 * its last one is not a valid number (too long, an exponent). */
int rl_number_last(const char *s, size_t n, char *out, size_t cap, int *count);

/* s[0..n) trimmed with whitespace runs collapsed to one space, into out (cap bytes, cut).
 * Returns the length written. */
size_t rl_text_collapse(const char *s, size_t n, char *out, size_t cap);

/* Countdown: evaluate expression s[0..n) (numbers, + - * / and the signs × ÷, parentheses,
 * spaces; text after a first "=" is ignored) over the given numbers, each at most once.
 * Returns 0 and sets *num and *den (den > 0, reduced) on success; -1 for a syntax error, a number
 * not given or used too often, division by zero, or overflow. */
int rl_countdown_eval(const char *s, size_t n, const int64_t *nums, int n_nums, int64_t *num,
                      int64_t *den);

/* Check that pattern compiles (for loading user tasks). Returns 0, or WHALE_E_FORMAT with
 * PCRE2's message and offset in err. */
int rl_regex_check(const char *pattern, whale_err *err);

/* The whole verdict on reply[0..n) against ref. Never fails: a reply that cannot be read is
 * simply wrong. */
void rl_verify(const char *reply, size_t n, int start_in_think, const rl_ref *ref, rl_verdict *out);

/* Finding "</answer>" in a reply as it is generated, token by token (a token's bytes may hold
 * part of it). Zero-initialize; rl_stop_feed returns 1 once the bytes fed so far contain it. */
#define RL_ANSWER_CLOSE "</answer>"
typedef struct rl_stop_scan {
    char tail[sizeof RL_ANSWER_CLOSE - 2]; /* the last bytes before the newest piece */
    size_t n_tail;
    int hit;
} rl_stop_scan;
int rl_stop_feed(rl_stop_scan *st, const char *bytes, size_t n);

/* A reply written without think tags, as reasoning then answer: everything before its last
 * paragraph (split at the last blank line, else the last line break) inside <think> ... </think>,
 * the last paragraph after it: "<think>\nREASONING\n</think>\n\nANSWER". A one-paragraph
 * reply gets an empty reasoning; a reply that has think tags is returned as it is. malloc'd, its
 * length in *out_len and the bytes put before the reply's text in *prefix; NULL when out of
 * memory. DeepSeek-R1's cold-start data was such replies, re-formatted. */
#define RL_PLAIN_OPEN "<think>\n"
#define RL_PLAIN_CLOSE "\n</think>" /* then "\n\n" and the answer */
char *rl_reformat_plain(const char *s, size_t n, size_t *out_len, size_t *prefix);

#endif
