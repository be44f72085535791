/* engine_double.h: a scripted stand-in for the engine (tests only). It implements
 * struct lg_engine_ops with one thread that takes submitted requests in order and emits a
 * fixed script of events for each, checking req->cancel before every event the way the
 * real engine checks it before every step. Bounded queue: submit answers LG_ERR_BUSY when
 * cap requests are waiting. */
#ifndef LG_TEST_ENGINE_DOUBLE_H
#define LG_TEST_ENGINE_DOUBLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "engine/engine.h"

struct ed_step {
    enum lg_gen_event_kind kind;
    const char *text;
    int32_t tool_index;
    const char *tool_id, *tool_name;
};

enum { ED_QUEUE_MAX = 256 };

struct engine_double {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct lg_gen_req *queue[ED_QUEUE_MAX];
    int n_queue, cap;
    bool stop;
    const struct ed_step *script;
    size_t n_script;
    int step_ms;          /* sleep before each event */
    enum lg_finish finish;
    struct lg_gen_usage usage;
    struct lg_gen_timings timings;
    atomic_int n_submitted, n_done, n_cancelled;
    atomic_int busy_now;  /* 1 = refuse every submit with LG_ERR_BUSY */
    atomic_int loading;   /* reported as stats.n_loading */
};

static void ed_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *ed_thread(void *arg)
{
    struct engine_double *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && e->n_queue == 0)
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop && e->n_queue == 0) {
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        struct lg_gen_req *r = e->queue[0];
        memmove(e->queue, e->queue + 1, (size_t)(e->n_queue - 1) * sizeof e->queue[0]);
        e->n_queue--;
        pthread_mutex_unlock(&e->mu);
        bool cancelled = false;
        for (size_t i = 0; i < e->n_script; i++) {
            if (e->step_ms)
                ed_sleep_ms(e->step_ms);
            if (atomic_load(&r->cancel)) {
                cancelled = true;
                break;
            }
            const struct ed_step *s = &e->script[i];
            struct lg_gen_event ev = {.kind = s->kind, .text = s->text,
                                      .n_text = s->text ? strlen(s->text) : 0,
                                      .tool_index = s->tool_index, .tool_id = s->tool_id,
                                      .tool_name = s->tool_name};
            r->emit(r->emit_ctx, &ev);
        }
        if (cancelled) {
            atomic_fetch_add(&e->n_cancelled, 1);
            struct lg_gen_event ev = {.kind = LG_GEN_EV_ERROR, .status = LG_ERR_CANCELLED,
                                      .message = "cancelled"};
            r->emit(r->emit_ctx, &ev);
        } else {
            atomic_fetch_add(&e->n_done, 1);
            struct lg_gen_event ev = {.kind = LG_GEN_EV_DONE, .finish = e->finish,
                                      .usage = e->usage, .timings = e->timings};
            r->emit(r->emit_ctx, &ev);
        }
        /* r must not be touched after the terminal event */
    }
}

static enum lg_status ed_submit(void *self, struct lg_gen_req *req, uint64_t *id,
                                struct lg_err *err)
{
    struct engine_double *e = self;
    if (atomic_load(&e->busy_now))
        return lg_err_set(err, LG_ERR_BUSY, "queue full (test double)");
    pthread_mutex_lock(&e->mu);
    if (e->n_queue >= e->cap || e->n_queue >= ED_QUEUE_MAX) {
        pthread_mutex_unlock(&e->mu);
        return lg_err_set(err, LG_ERR_BUSY, "queue full (test double)");
    }
    e->queue[e->n_queue++] = req;
    int n = atomic_fetch_add(&e->n_submitted, 1);
    if (id)
        *id = (uint64_t)n;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return LG_OK;
}

static void ed_stats(void *self, struct lg_engine_stats *out)
{
    struct engine_double *e = self;
    pthread_mutex_lock(&e->mu);
    memset(out, 0, sizeof *out);
    out->queue_depth = e->n_queue;
    out->queue_cap = e->cap;
    out->n_parallel = 1;
    out->n_loading = atomic_load(&e->loading);
    pthread_mutex_unlock(&e->mu);
}

static size_t ed_list_loaded(void *self, struct lg_loaded_model *out, size_t cap)
{
    (void)self;
    if (cap > 0) {
        memset(&out[0], 0, sizeof out[0]);
        strcpy(out[0].name, "double:latest");
        out[0].size_bytes = 1234;
        out[0].expires_at_ms = -1;
        out[0].context_length = 4096;
    }
    return 1;
}

static const struct lg_engine_ops ed_ops = {ed_submit, ed_stats, ed_list_loaded};

static void ed_start(struct engine_double *e, const struct ed_step *script, size_t n,
                     int step_ms, int cap)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->script = script;
    e->n_script = n;
    e->step_ms = step_ms;
    e->cap = cap;
    pthread_create(&e->th, NULL, ed_thread, e);
}

static void ed_stop(struct engine_double *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
}

#endif
