/* threadpool.c: see threadpool.h.
 *
 * A job is published by bumping `gen` (seq_cst) after storing fn/ctx/pending. Workers spin on
 * `gen` for about SPIN pause instructions, then sleep on a condition variable after
 * registering in `sleepers`; the caller takes the mutex only when someone sleeps. Because a
 * worker increments `sleepers` before re-checking `gen` (both seq_cst, the re-check under the
 * mutex), the caller either sees the sleeper or the sleeper sees the new generation.
 * Completion: `pending` counts workers still running the job; the caller spins, then sleeps
 * on `done` (the last worker signals under the mutex).
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/threadpool.h"

/* Spin rounds before sleeping: the first ones pause, later ones yield the CPU (on a loaded or
 * oversubscribed machine the thread we wait for may need our core to run at all). */
enum { SPIN = 2000, SPIN_PAUSE = 200 };

struct worker {
    struct lg_tp *pool;
    int ith;
    pthread_t tid;
};

struct lg_tp {
    int n;
    struct worker *w; /* [n - 1] */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_uint gen;
    atomic_int pending;
    atomic_int sleepers;
    atomic_int caller_sleeps;
    atomic_int stop;
    lg_tp_fn fn;
    void *ctx;
};

static inline void cpu_relax(int i)
{
    if (i >= SPIN_PAUSE) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct lg_tp *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        int i = 0;
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop) && i < SPIN) {
            cpu_relax(i);
            i++;
        }
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->go, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->ctx, w->ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeps)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

struct lg_tp *lg_tp_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    struct lg_tp *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->w = calloc((size_t)n_threads - 1, sizeof *p->w);
        if (!p->w) {
            lg_tp_destroy(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->w[i].pool = p;
            p->w[i].ith = i + 1;
            if (pthread_create(&p->w[i].tid, NULL, worker_main, &p->w[i]) != 0) {
                lg_tp_destroy(p);
                return NULL;
            }
            p->n_started++;
        }
    }
    return p;
}

void lg_tp_destroy(struct lg_tp *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->w[i].tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->w);
    free(p);
}

int lg_tp_size(const struct lg_tp *p)
{
    return p ? p->n : 1;
}

void lg_tp_run(struct lg_tp *p, lg_tp_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    for (int i = 0; i < SPIN && atomic_load(&p->pending) > 0; i++)
        cpu_relax(i);
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeps, 1);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeps, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

int lg_tp_default_threads(void)
{
    const char *e = getenv("LG_THREADS");
    if (e && *e) {
        int n = atoi(e);
        if (n >= 1 && n <= 256)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}
