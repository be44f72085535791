/* test_threadpool.c: every ith runs exactly once per job, jobs see each other's writes in
 * order (job j reads what job j-1 wrote), the chunk counter hands out [0, n) exactly once,
 * pools larger than the CPU count (workers that fall asleep and wake) and pools of one. */
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "base/threadpool.h"
#include "test.h"

enum { MAX_T = 8, N_ITEMS = 10007 };

struct job {
    atomic_int calls[MAX_T];
    int seen_nth[MAX_T];
    int64_t data[MAX_T];     /* thread ith writes data[ith] = round */
    int64_t round;
    int bad_order;
    atomic_llong next;
    atomic_int hits[N_ITEMS];
};

static void count_job(void *ctx, int ith, int nth)
{
    struct job *j = ctx;
    atomic_fetch_add(&j->calls[ith], 1);
    j->seen_nth[ith] = nth;
    /* every thread's write of the previous round must be visible now */
    for (int i = 0; i < nth; i++)
        if (j->data[i] != j->round - 1)
            j->bad_order = 1;
}

static void write_job(void *ctx, int ith, int nth)
{
    struct job *j = ctx;
    (void)nth;
    j->data[ith] = j->round;
}

static void chunk_job(void *ctx, int ith, int nth)
{
    struct job *j = ctx;
    (void)ith;
    (void)nth;
    int64_t lo, hi;
    while (lg_tp_chunk(&j->next, N_ITEMS, 37, &lo, &hi))
        for (int64_t i = lo; i < hi; i++)
            atomic_fetch_add(&j->hits[i], 1);
}

static void run_pool(int n)
{
    static struct job j;
    memset(&j, 0, sizeof j);
    struct lg_tp *p = lg_tp_create(n);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_EQ_INT(lg_tp_size(p), n);
    const int rounds = 200;
    j.round = 0;
    for (int i = 0; i < MAX_T; i++)
        j.data[i] = -1;
    for (int r = 0; r < rounds; r++) {
        lg_tp_run(p, write_job, &j);
        j.round++;
        lg_tp_run(p, count_job, &j);
        if (r == 10)
            usleep(20000); /* let the workers fall asleep once */
    }
    int ok = 1;
    for (int i = 0; i < n; i++)
        ok &= atomic_load(&j.calls[i]) == rounds && j.seen_nth[i] == n;
    for (int i = n; i < MAX_T; i++)
        ok &= atomic_load(&j.calls[i]) == 0;
    CHECK_MSG(ok, "pool of %d: a thread index ran a wrong number of times", n);
    CHECK_MSG(!j.bad_order, "pool of %d: a job did not see the previous job's writes", n);

    for (int rep = 0; rep < 20; rep++) {
        atomic_store(&j.next, 0);
        lg_tp_run(p, chunk_job, &j);
    }
    int bad = 0;
    for (int i = 0; i < N_ITEMS; i++)
        bad += atomic_load(&j.hits[i]) != 20;
    CHECK_MSG(bad == 0, "pool of %d: %d items not processed exactly once per job", n, bad);
    lg_tp_destroy(p);
}

int main(void)
{
    const int sizes[] = {1, 2, 3, 5};
    for (int i = 0; i < 4; i++)
        run_pool(sizes[i]);
    lg_tp_run(NULL, write_job, &(struct job){.round = 7});
    lg_tp_destroy(NULL);
    CHECK(lg_tp_default_threads() >= 1);
    return lg_test_done("test_threadpool");
}
