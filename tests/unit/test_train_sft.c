/* test_train_sft.c — cutting a padded SFT batch to its longest row (tr_sft_trim): the rows'
 * tokens and targets kept in place up to the last target of any row, whichever row it is in. */
#include <string.h>

#include "check.h"
#include "train/sft.h"

static void test_trim_to_the_longest_row(void) {
    enum { B = 3, T = 8 };
    /* row 1 is the longest: its last target at position 5; pads are id 0, target -1 */
    int32_t ids[B * T] = {11, 12, 13, 0, 0, 0, 0, 0, /**/ 21, 22, 23, 24, 25, 26, 0, 0, /**/ 31, 32, 0, 0, 0, 0, 0, 0};
    int32_t tg[B * T] = {12, 13, -1, -1, -1, -1, -1, -1, /**/ -1, -1, 24, 25, 26, 99, -1, -1, /**/ 32, 98, -1, -1, -1, -1, -1, -1};
    int32_t want_ids[B * 6] = {11, 12, 13, 0, 0, 0, 21, 22, 23, 24, 25, 26, 31, 32, 0, 0, 0, 0};
    int32_t want_tg[B * 6] = {12, 13, -1, -1, -1, -1, -1, -1, 24, 25, 26, 99, 32, 98, -1, -1, -1, -1};
    CHECK(tr_sft_trim(ids, tg, B, T) == 6);
    CHECK(!memcmp(ids, want_ids, sizeof want_ids));
    CHECK(!memcmp(tg, want_tg, sizeof want_tg));
    /* a full row leaves the batch as it is; a batch without targets keeps one position */
    int32_t full_ids[2 * 3] = {1, 2, 3, 4, 5, 6}, full_tg[2 * 3] = {-1, -1, -1, 5, 6, 7};
    CHECK(tr_sft_trim(full_ids, full_tg, 2, 3) == 3);
    CHECK(full_tg[5] == 7 && full_ids[3] == 4);
    int32_t none_ids[2 * 4] = {1, 0, 0, 0, 2, 0, 0, 0}, none_tg[2 * 4] = {-1, -1, -1, -1, -1, -1, -1, -1};
    CHECK(tr_sft_trim(none_ids, none_tg, 2, 4) == 1);
    CHECK(none_ids[0] == 1 && none_ids[1] == 2);
}

int main(void) {
    RUN(test_trim_to_the_longest_row);
    return check_report("test_train_sft");
}
