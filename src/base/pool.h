/* pool.h: a fixed set of worker threads that run one parallel job at a time.
 *
 * lg_pool_run(p, fn, arg) calls fn(arg, ith, nth) once for every ith in [0, nth) — ith 0 on
 * the calling thread, the others on the workers — and returns when all have finished. Jobs
 * split their work by (ith, nth) themselves (see kern/kern.h). One caller at a time: a pool
 * belongs to one thread (the engine thread); lg_pool_run is not reentrant.
 */
#ifndef LG_BASE_POOL_H
#define LG_BASE_POOL_H

struct lg_pool;

typedef void (*lg_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1: no workers, run inline). NULL when out of memory or threads fail. */
struct lg_pool *lg_pool_create(int n_threads);
void lg_pool_destroy(struct lg_pool *p);
int lg_pool_size(const struct lg_pool *p);
void lg_pool_run(struct lg_pool *p, lg_pool_fn fn, void *arg);

/* Threads to use by default: LG_THREADS if set (1..256), else the online CPU count. */
int lg_pool_default_threads(void);

#endif
