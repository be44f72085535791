/* alloc_countdown.h: a countdown allocator for allocation-failure sweeps in one unit test
 * binary (hardening.md G21; the model of SQLite's). Include it once, in the test's .c file: it
 * replaces malloc / calloc / realloc / free (glibc allows that) with versions that forward to
 * glibc's __libc_* entry points, count live blocks and, armed with af_fail_at = N, fail the
 * Nth allocation call after arming (af_hit tells that it happened). Under AddressSanitizer,
 * which owns malloc, nothing is replaced and COV_ASAN is defined: such tests skip the sweep.
 * Used by test_cov_gguf.c and test_cov_tok.c (test_alloc_fail.c has its own, wider one:
 * memalign and friends, stacks of the failed call).
 */
#ifndef LG_TEST_ALLOC_COUNTDOWN_H
#define LG_TEST_ALLOC_COUNTDOWN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define COV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COV_ASAN 1
#endif
#endif

#ifndef COV_ASAN
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t sz);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static atomic_long af_live;    /* blocks from malloc/calloc/realloc not yet freed */
static atomic_long af_calls;   /* allocation calls since arming */
static atomic_long af_fail_at; /* 0: disarmed, else the call number that fails */
static atomic_bool af_hit;

static bool af_fail_now(void)
{
    long at = atomic_load(&af_fail_at);
    if (at <= 0)
        return false;
    if (atomic_fetch_add(&af_calls, 1) + 1 != at)
        return false;
    atomic_store(&af_hit, true);
    return true;
}

void *malloc(size_t n)
{
    if (af_fail_now())
        return NULL;
    void *p = __libc_malloc(n);
    if (p)
        atomic_fetch_add(&af_live, 1);
    return p;
}

void *calloc(size_t n, size_t sz)
{
    if (af_fail_now())
        return NULL;
    void *p = __libc_calloc(n, sz);
    if (p)
        atomic_fetch_add(&af_live, 1);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (!old)
        return malloc(n);
    if (n == 0) {
        free(old);
        return NULL;
    }
    if (af_fail_now())
        return NULL;
    return __libc_realloc(old, n);
}

void free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub(&af_live, 1);
    __libc_free(p);
}
#endif

#endif
