/* test.h: the tiny test harness every tests/unit/test_*.c uses.
 *
 * CHECK* record a pass or a failure (with file:line and the values); a test binary ends with
 * `return lg_test_done("name");`, which prints "name: N passed, N failed" and returns the exit
 * code. scripts/run-tests adds up those lines. A check that cannot fail is not a check. */
#ifndef LG_TEST_H
#define LG_TEST_H

#include <math.h>
#include <stdint.h>
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

/* Random test data: xorshift64, one generator per test binary (each test_*.c is its own
 * program, and the state lives in a static inline accessor, so files never share it). A test
 * calls lg_test_rand_seed() first so its data is a fixed, repeatable stream; a failure then
 * reproduces exactly. Not for statistics beyond "varied inputs". */
static inline uint64_t *lg_test_rand_state(void)
{
    static uint64_t state = 0x9e3779b97f4a7c15ull;
    return &state;
}

/* Any seed (0, 1, 2 ...) gives a well-mixed, nonzero state: the seed goes through the
 * splitmix64 finalizer, so small consecutive seeds still give unrelated streams. */
static inline void lg_test_rand_seed(uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    *lg_test_rand_state() = z ? z : 0x9e3779b97f4a7c15ull; /* 0 is xorshift's fixed point */
}

static inline uint64_t lg_test_rand_u64(void)
{
    uint64_t *s = lg_test_rand_state();
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static inline uint32_t lg_test_rand_u32(void) /* the high half: xorshift's best bits */
{
    return (uint32_t)(lg_test_rand_u64() >> 32);
}

/* Uniform in [0, n), n > 0 (modulo bias is negligible for test sizes). */
static inline uint32_t lg_test_rand_below(uint32_t n)
{
    return (uint32_t)(lg_test_rand_u64() % n);
}

/* Uniform in [-1, 1): 24 random bits, so every value is exact in float and 1 never occurs. */
static inline float lg_test_frand(void)
{
    return (float)(lg_test_rand_u64() >> 40) * 0x1p-23f - 1.0f;
}

/* Uniform in (0, 1): never 0, so log() of it is finite. */
static inline double lg_test_rand_open01(void)
{
    return ((double)(lg_test_rand_u64() >> 11) + 0.5) * 0x1p-53;
}

/* Standard normal N(0, 1) by Box-Muller (uses two uniforms per value). */
static inline float lg_test_rand_gauss(void)
{
    double u1 = lg_test_rand_open01(), u2 = lg_test_rand_open01();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Directory of committed test data; overridable with LG_TEST_DATA. */
static inline const char *lg_test_data_dir(void)
{
    const char *d = getenv("LG_TEST_DATA");
    return d ? d : "tests";
}

#endif
