/* limits.c: per-key token buckets (requests/min, tokens/min, tokens/day) and a concurrent
 * stream counter, behind one mutex.
 *
 * A bucket of limit L over period P holds at most L and refills at L/P per second. A request
 * takes 1 from the request bucket at admission; tokens are known only at the end, so they are
 * charged then and may push the token buckets below zero: the key is refused until they refill
 * above zero (debt model — a key can overshoot by one request, never by more). Retry-After is
 * the time until the refusing bucket is usable again, rounded up to whole seconds.
 * Invariant: a key's state exists from its first admission; limits come with every call, so a
 * key whose limits change in the store gets the new capacity at once (level clamped). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard/guard.h"

struct bucket {
    double level;
    double t; /* time of the last refill */
};

struct key_state {
    char name[LG_KEY_NAME_MAX + 1];
    struct bucket rpm, tpm, tpd;
    int64_t n_streams;
};

struct lg_limits {
    pthread_mutex_t mu;
    double (*now)(void *);
    void *now_ctx;
    struct key_state *v;
    size_t n, cap;
};

static double mono_now(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct lg_limits *lg_limits_create(double (*now_fn)(void *), void *now_ctx)
{
    struct lg_limits *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    l->now = now_fn ? now_fn : mono_now;
    l->now_ctx = now_ctx;
    return l;
}

void lg_limits_destroy(struct lg_limits *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l->v);
    free(l);
}

static void bucket_init(struct bucket *b, int64_t limit, double now)
{
    b->level = (double)limit;
    b->t = now;
}

static struct key_state *state_for(struct lg_limits *l, const char *name,
                                   const struct lg_key_limits *lim, double now)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name))
            return &l->v[i];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct key_state *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = cap;
    }
    struct key_state *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    bucket_init(&s->rpm, lim->rpm, now);
    bucket_init(&s->tpm, lim->tpm, now);
    bucket_init(&s->tpd, lim->tpd, now);
    return s;
}

static void refill(struct bucket *b, int64_t limit, double period, double now)
{
    if (limit <= 0)
        return;
    double dt = now - b->t;
    if (dt > 0)
        b->level += dt * (double)limit / period;
    if (b->level > (double)limit)
        b->level = (double)limit;
    b->t = now;
}

/* seconds until the bucket reaches `need` */
static int64_t wait_for(const struct bucket *b, double need, int64_t limit, double period)
{
    double s = (need - b->level) * period / (double)limit;
    if (!(s > 0))
        return 1;
    if (s > 86400.0 * 2)
        s = 86400.0 * 2;
    int64_t w = (int64_t)ceil(s - 1e-9);
    return w < 1 ? 1 : w;
}

enum lg_limit_verdict lg_limits_admit(struct lg_limits *l, const char *name,
                                      const struct lg_key_limits *lim, int64_t *retry_after_s)
{
    *retry_after_s = 0;
    pthread_mutex_lock(&l->mu);
    double now = l->now(l->now_ctx);
    enum lg_limit_verdict v = LG_LIMIT_OK;
    struct key_state *s = state_for(l, name, lim, now);
    if (!s) { /* out of memory: refuse briefly rather than run unmetered */
        *retry_after_s = 1;
        pthread_mutex_unlock(&l->mu);
        return LG_LIMIT_CONCURRENT;
    }
    refill(&s->rpm, lim->rpm, 60.0, now);
    refill(&s->tpm, lim->tpm, 60.0, now);
    refill(&s->tpd, lim->tpd, 86400.0, now);
    if (lim->max_concurrent > 0 && s->n_streams >= lim->max_concurrent) {
        v = LG_LIMIT_CONCURRENT;
        *retry_after_s = 1;
    } else if (lim->tpd > 0 && s->tpd.level <= 0) {
        v = LG_LIMIT_TPD;
        *retry_after_s = wait_for(&s->tpd, 1.0, lim->tpd, 86400.0);
    } else if (lim->tpm > 0 && s->tpm.level <= 0) {
        v = LG_LIMIT_TPM;
        *retry_after_s = wait_for(&s->tpm, 1.0, lim->tpm, 60.0);
    } else if (lim->rpm > 0 && s->rpm.level < 1.0) {
        v = LG_LIMIT_RPM;
        *retry_after_s = wait_for(&s->rpm, 1.0, lim->rpm, 60.0);
    } else {
        if (lim->rpm > 0)
            s->rpm.level -= 1.0;
        s->n_streams++;
    }
    pthread_mutex_unlock(&l->mu);
    return v;
}

void lg_limits_release(struct lg_limits *l, const char *name, const struct lg_key_limits *lim,
                       int64_t n_tokens)
{
    pthread_mutex_lock(&l->mu);
    double now = l->now(l->now_ctx);
    struct key_state *s = state_for(l, name, lim, now);
    if (s) {
        if (s->n_streams > 0)
            s->n_streams--;
        if (n_tokens > 0) {
            refill(&s->tpm, lim->tpm, 60.0, now);
            refill(&s->tpd, lim->tpd, 86400.0, now);
            if (lim->tpm > 0)
                s->tpm.level -= (double)n_tokens;
            if (lim->tpd > 0)
                s->tpd.level -= (double)n_tokens;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

const char *lg_limit_verdict_name(enum lg_limit_verdict v)
{
    switch (v) {
    case LG_LIMIT_OK:
        return "ok";
    case LG_LIMIT_RPM:
        return "requests per minute";
    case LG_LIMIT_TPM:
        return "tokens per minute";
    case LG_LIMIT_TPD:
        return "tokens per day";
    case LG_LIMIT_CONCURRENT:
        return "concurrent requests";
    }
    return "?";
}
