/* threadpool.h: worker threads created once that run one parallel job at a time, with a
 * short spin before sleeping so that the many small jobs of a decode step do not pay a
 * wake-up each.
 *
 * lg_tp_run(p, fn, ctx) calls fn(ctx, ith, nth) once for every ith in [0, nth) — ith 0 on the
 * calling thread, the others on the workers — and returns when all have returned (all their
 * writes are then visible to the caller). Jobs split work by (ith, nth) or pull chunks from an
 * atomic counter they own (lg_tp_chunk). No allocation per job.
 * Thread-safety: one caller at a time (the engine thread); not reentrant from inside a job.
 */
#ifndef LG_BASE_THREADPOOL_H
#define LG_BASE_THREADPOOL_H

#include <stdatomic.h>
#include <stdint.h>

struct lg_tp;

typedef void (*lg_tp_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (1: no workers, jobs run inline). NULL when memory or threads fail. */
struct lg_tp *lg_tp_create(int n_threads);
/* Stops and joins the workers. NULL is fine. */
void lg_tp_destroy(struct lg_tp *p);
int lg_tp_size(const struct lg_tp *p);
/* Runs fn on every thread of the pool (see above); p NULL runs fn(ctx, 0, 1). */
void lg_tp_run(struct lg_tp *p, lg_tp_fn fn, void *ctx);

/* Dynamic split: the next chunk [*lo, *hi) of [0, n) in steps of `step`, or 0 when none
 * is left. `next` starts at 0 (reset it before each job). */
static inline int lg_tp_chunk(atomic_llong *next, int64_t n, int64_t step, int64_t *lo,
                              int64_t *hi)
{
    int64_t a = (int64_t)atomic_fetch_add_explicit(next, step, memory_order_relaxed);
    if (a >= n)
        return 0;
    *lo = a;
    *hi = a + step < n ? a + step : n;
    return 1;
}

/* Threads to use by default: LG_THREADS if set (1..256), else the online CPU count. */
int lg_tp_default_threads(void);

#endif
