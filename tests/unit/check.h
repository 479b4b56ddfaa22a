/* check.h — the tiny harness every C unit test uses.
 *
 * A test file defines functions `static void test_x(void)` and runs them with RUN(test_x)
 * from main, then `return check_report("name");`. CHECK records a failure with file:line
 * and keeps going, so one run shows every broken case. A case whose input is absent (a file
 * under ../shared, which a clone of the repository alone lacks) calls check_skip and is
 * counted as skipped, with a "SKIP test_x: <why>" line; check_skip_rest skips every case run
 * after it. The last line a test binary prints is "<name>: N passed, N failed[, N skipped]",
 * which scripts/test sums into the suite's summary. */
#ifndef WHALE_TEST_CHECK_H
#define WHALE_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_cases_passed, check_cases_failed, check_cases_skipped, check_case_failures, check_case_skipped;
static const char *check_case_name = "main";
static char check_skip_all[4200]; /* non-empty: the reason every later case is skipped */

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            check_case_failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                     \
    } while (0)

#define CHECKF(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            check_case_failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

#define RUN(fn)                                                                               \
    do {                                                                                      \
        check_case_failures = 0;                                                              \
        check_case_skipped = 0;                                                               \
        check_case_name = #fn;                                                                \
        if (check_skip_all[0]) check_skip("%s", check_skip_all);                              \
        else fn();                                                                            \
        if (check_case_skipped && !check_case_failures) {                                     \
            check_cases_skipped++;                                                            \
        } else if (check_case_failures) {                                                     \
            check_cases_failed++;                                                             \
            fprintf(stderr, "FAIL %s\n", #fn);                                                \
        } else {                                                                              \
            check_cases_passed++;                                                             \
            printf("ok   %s\n", #fn);                                                         \
        }                                                                                     \
    } while (0)

/* Mark the running case skipped (the caller returns from it), saying why on stdout. */
static void check_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void check_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP %s: ", check_case_name);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    check_case_skipped = 1;
}

/* Skip every case RUN after this call, each with the message "<path> missing". */
static inline void check_skip_rest_missing(const char *path) {
    snprintf(check_skip_all, sizeof check_skip_all, "%s missing", path);
}

static inline int check_report(const char *name) {
    printf("%s: %d passed, %d failed", name, check_cases_passed, check_cases_failed);
    if (check_cases_skipped) printf(", %d skipped", check_cases_skipped);
    putchar('\n');
    return check_cases_failed ? 1 : 0;
}

/* Path of a file under ../shared, in a static buffer: $WHALE_SHARED/rel when that is set, else
 * $WHALE_SRC/../shared/rel (ctest sets WHALE_SRC to the source tree), else ../shared/rel. */
static inline const char *check_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("WHALE_SHARED"), *src = getenv("WHALE_SRC");
    if (root && *root) snprintf(buf, sizeof buf, "%s/%s", root, rel);
    else snprintf(buf, sizeof buf, "%s%sshared/%s", src && *src ? src : "", src && *src ? "/../" : "../", rel);
    return buf;
}

/* check_shared(rel) when that file exists; else NULL after skipping the running case with
 * "SKIP test_x: <path> missing". */
static inline const char *check_shared_need(const char *rel) {
    const char *p = check_shared(rel);
    if (access(p, R_OK) == 0) return p;
    check_skip("%s missing", p);
    return NULL;
}

#endif
