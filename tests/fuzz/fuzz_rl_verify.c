/* fuzz_rl_verify.c — libFuzzer target for the reading of model replies (rl/verify.h), which
 * sees whatever a model (or a policy being trained to please it) writes.
 *
 * The first byte picks the verifier and whether the prompt opened <think>; the rest is the
 * reply. Every input must give a verdict whose answer span lies inside the reply, with
 * "correct" only where there is an answer; countdown parsing and the number scan run on the
 * same bytes. ASan/UBSan turn any out-of-bounds read or overflow into a crash.
 * Seeds: tests/fuzz/corpus/rl_verify/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rl/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    static const char *const refs[] = {"12", "Paris", "(a|b)+c", "80"};
    rl_ref ref = {.verifier = data[0] % 4,
                  .answer = refs[data[0] % 4],
                  .n_nums = 4,
                  .nums = {25, 5, 4, 3},
                  .target = 80};
    rl_verdict v;
    rl_verify(s, n, (data[0] >> 2) & 1, &ref, &v);
    if (v.ans_off > n || v.ans_len > n - v.ans_off || v.think_end > n) abort();
    if ((v.correct || v.format_ok) && !v.has_answer) abort();
    if (v.has_answer && v.ans_len > RL_ANSWER_MAX_BYTES) abort();
    if (!memchr(v.norm, 0, sizeof v.norm)) abort();
    int64_t p, q;
    if (rl_countdown_eval(s, n < RL_ANSWER_MAX_BYTES ? n : RL_ANSWER_MAX_BYTES, ref.nums,
                          ref.n_nums, &p, &q) == 0 &&
        q <= 0)
        abort();
    char norm[RL_NORM_MAX];
    int count;
    if (rl_number_last(s, n, norm, sizeof norm, &count) && (count < 1 || !norm[0])) abort();
    return 0;
}
