/* pool.c: workers sleep on a condition variable until the job generation changes, run their
 * share, and the last one to finish wakes the caller. Invariant: `pending` counts the workers
 * that have not finished the current generation. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/pool.h"

struct worker {
    struct lg_pool *pool;
    int ith;
    pthread_t tid;
};

struct lg_pool {
    int n;
    struct worker *w;        /* [n - 1] */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;
    int pending;
    int stop;
    lg_pool_fn fn;
    void *arg;
};

static void *worker_main(void *a)
{
    struct worker *w = a;
    struct lg_pool *p = w->pool;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->stop)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        lg_pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, w->ith, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

struct lg_pool *lg_pool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    struct lg_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->w = calloc((size_t)n_threads - 1, sizeof *p->w);
        if (!p->w) {
            lg_pool_destroy(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->w[i].pool = p;
            p->w[i].ith = i + 1;
            if (pthread_create(&p->w[i].tid, NULL, worker_main, &p->w[i]) != 0) {
                lg_pool_destroy(p);
                return NULL;
            }
            p->n_started++;
        }
    }
    return p;
}

void lg_pool_destroy(struct lg_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
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

int lg_pool_size(const struct lg_pool *p)
{
    return p ? p->n : 1;
}

void lg_pool_run(struct lg_pool *p, lg_pool_fn fn, void *arg)
{
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

int lg_pool_default_threads(void)
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
