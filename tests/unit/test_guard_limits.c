/* test_guard_limits.c: token-bucket arithmetic with an injected clock (requests/min,
 * tokens/min debt, tokens/day, concurrent streams, Retry-After values, per-key isolation,
 * refill capped at the limit) and a 4-thread run that never exceeds max_concurrent. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "guard/guard.h"
#include "test.h"

static double fake_now;
static double clock_fn(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static void test_rpm(void)
{
    struct lg_limits *l = lg_limits_create(clock_fn, NULL);
    struct lg_key_limits lim = {.rpm = 3};
    int64_t ra;
    fake_now = 1000;
    for (int i = 0; i < 3; i++) {
        CHECK(lg_limits_admit(l, "a", &lim, &ra) == LG_LIMIT_OK);
        lg_limits_release(l, "a", &lim, 0);
    }
    CHECK(lg_limits_admit(l, "a", &lim, &ra) == LG_LIMIT_RPM);
    CHECK_EQ_INT(ra, 20); /* one request per 20 s */
    /* another key has its own bucket */
    CHECK(lg_limits_admit(l, "b", &lim, &ra) == LG_LIMIT_OK);
    lg_limits_release(l, "b", &lim, 0);
    fake_now += 19.5;
    CHECK(lg_limits_admit(l, "a", &lim, &ra) == LG_LIMIT_RPM);
    CHECK_EQ_INT(ra, 1);
    fake_now += 0.5;
    CHECK(lg_limits_admit(l, "a", &lim, &ra) == LG_LIMIT_OK);
    lg_limits_release(l, "a", &lim, 0);
    /* a long idle period refills only up to the limit */
    fake_now += 3600;
    for (int i = 0; i < 3; i++) {
        CHECK(lg_limits_admit(l, "a", &lim, &ra) == LG_LIMIT_OK);
        lg_limits_release(l, "a", &lim, 0);
    }
    CHECK(lg_limits_admit(l, "a", &lim, &ra) == LG_LIMIT_RPM);
    lg_limits_destroy(l);
}

static void test_tokens(void)
{
    struct lg_limits *l = lg_limits_create(clock_fn, NULL);
    struct lg_key_limits lim = {.tpm = 100, .tpd = 1000};
    int64_t ra;
    fake_now = 50;
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_OK);
    lg_limits_release(l, "k", &lim, 150); /* 100 - 150 = -50: in debt */
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_TPM);
    CHECK_EQ_INT(ra, 31); /* (1 + 50) tokens at 100/60 per s = 30.6 s */
    fake_now += 30;
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_TPM);
    fake_now += 1;
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_OK);
    lg_limits_release(l, "k", &lim, 0);
    /* drain the daily bucket: 1000 - 150 = 850 left; charge 850 more over time */
    fake_now += 120;
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_OK);
    lg_limits_release(l, "k", &lim, 900);
    fake_now += 600; /* tpd: 850 + 151 s refill (1.75) - 900 + 600 s refill (6.94) = -41.3 */
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_TPD);
    CHECK(ra >= 3650 && ra <= 3660); /* 42.3 tokens at 1000/86400 per s = 3655 s */
    fake_now += (double)ra;
    CHECK(lg_limits_admit(l, "k", &lim, &ra) == LG_LIMIT_OK);
    lg_limits_release(l, "k", &lim, 0);
    lg_limits_destroy(l);
}

static void test_concurrent_counter(void)
{
    struct lg_limits *l = lg_limits_create(clock_fn, NULL);
    struct lg_key_limits lim = {.max_concurrent = 2};
    int64_t ra;
    fake_now = 10;
    CHECK(lg_limits_admit(l, "c", &lim, &ra) == LG_LIMIT_OK);
    CHECK(lg_limits_admit(l, "c", &lim, &ra) == LG_LIMIT_OK);
    CHECK(lg_limits_admit(l, "c", &lim, &ra) == LG_LIMIT_CONCURRENT);
    CHECK_EQ_INT(ra, 1);
    lg_limits_release(l, "c", &lim, 5);
    CHECK(lg_limits_admit(l, "c", &lim, &ra) == LG_LIMIT_OK);
    /* unlimited key */
    struct lg_key_limits none = {0};
    for (int i = 0; i < 1000; i++)
        CHECK(lg_limits_admit(l, "free", &none, &ra) == LG_LIMIT_OK);
    lg_limits_destroy(l);
}

static struct lg_limits *shared;
static atomic_int in_flight, max_seen, n_ok, n_busy;
static const struct lg_key_limits conc3 = {.max_concurrent = 3};

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        int64_t ra;
        if (lg_limits_admit(shared, "t", &conc3, &ra) == LG_LIMIT_OK) {
            int now = atomic_fetch_add(&in_flight, 1) + 1;
            int m = atomic_load(&max_seen);
            while (now > m && !atomic_compare_exchange_weak(&max_seen, &m, now))
                ;
            atomic_fetch_add(&n_ok, 1);
            atomic_fetch_sub(&in_flight, 1);
            lg_limits_release(shared, "t", &conc3, 1);
        } else {
            atomic_fetch_add(&n_busy, 1);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    shared = lg_limits_create(NULL, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&max_seen) <= 3);
    CHECK(atomic_load(&max_seen) >= 1);
    CHECK_EQ_INT(atomic_load(&n_ok) + atomic_load(&n_busy), 80000);
    /* all slots were returned */
    int64_t ra;
    for (int i = 0; i < 3; i++)
        CHECK(lg_limits_admit(shared, "t", &conc3, &ra) == LG_LIMIT_OK);
    CHECK(lg_limits_admit(shared, "t", &conc3, &ra) == LG_LIMIT_CONCURRENT);
    lg_limits_destroy(shared);
}

int main(void)
{
    test_rpm();
    test_tokens();
    test_concurrent_counter();
    test_threads();
    return lg_test_done("test_guard_limits");
}
