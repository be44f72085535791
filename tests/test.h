/* test.h: the tiny test harness every tests/unit/test_*.c uses.
 *
 * CHECK* record a pass or a failure (with file:line and the values); a test binary ends with
 * `return lg_test_done("name");`, which prints "name: N passed, N failed" and returns the exit
 * code. scripts/run-tests adds up those lines. A check that cannot fail is not a check. */
#ifndef LG_TEST_H
#define LG_TEST_H

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int lg_test_passed, lg_test_failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (cond) {                                                                            \
            lg_test_passed++;                                                                  \
        } else {                                                                               \
            lg_test_failed++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
        }                                                                                      \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                   \
    do {                                                                                       \
        if (cond) {                                                                            \
            lg_test_passed++;                                                                  \
        } else {                                                                               \
            lg_test_failed++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                    \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                     \
    do {                                                                                       \
        long long lg_a_ = (long long)(a), lg_b_ = (long long)(b);                              \
        CHECK_MSG(lg_a_ == lg_b_, "%lld != %lld", lg_a_, lg_b_);                               \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                     \
    do {                                                                                       \
        const char *lg_a_ = (a), *lg_b_ = (b);                                                 \
        CHECK_MSG(lg_a_ && lg_b_ && strcmp(lg_a_, lg_b_) == 0, "\"%s\" != \"%s\"",             \
                  lg_a_ ? lg_a_ : "(null)", lg_b_ ? lg_b_ : "(null)");                         \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                  \
    do {                                                                                       \
        double lg_a_ = (double)(a), lg_b_ = (double)(b);                                       \
        CHECK_MSG(fabs(lg_a_ - lg_b_) <= (tol), "%.9g vs %.9g (tol %g)", lg_a_, lg_b_,         \
                  (double)(tol));                                                              \
    } while (0)

static inline int lg_test_done(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, lg_test_passed, lg_test_failed);
    return lg_test_failed ? 1 : 0;
}

/* Directory of committed test data; overridable with LG_TEST_DATA. */
static inline const char *lg_test_data_dir(void)
{
    const char *d = getenv("LG_TEST_DATA");
    return d ? d : "tests";
}

#endif
