/* engine.c: the inference engine behind `localgemma serve` (engine.h ops table).
 *
 * One engine thread owns the loaded models, their sequence slots (each an lg_model_state with
 * its KV cache and the ids it holds: slot 0's state also has the activation buffers and
 * threads every batch of the model runs on, slots 1.. are KV-only), the samplers and the
 * grammar states. Other threads only
 * call submit/stats/list_loaded, which touch the queue and a stats snapshot under e->mu.
 *
 * Every step, for each model with active jobs: check its active requests' cancel flags; one
 * decode token for every decoding slot; then prefill chunks for the prefilling slots, taken
 * in turn, within what the decode tokens leave of n_chunk (256) rows per step and model, so a
 * long prompt never stalls the decoders for more than one chunk while several short prompts
 * start together, and the whole step is one pass over the weights (engine_step.c).
 * Loading a model happens on the engine thread: the other models pause while it loads.
 *
 * Prefix cache: a request goes to the free slot whose cached ids share the longest prefix
 * with its prompt; the slot's cache is cut back to that prefix (lg_kv_rewind), or recomputed
 * from 0 when a sliding ring no longer holds the window before the cut. A turn that extends
 * the previous turn's ids needs no rewind and reuses everything.
 *
 * Models: several at once (at most max_models, ENG_MAX_MODELS), each with its own slots,
 * batch scratch and keep-alive; every step runs one batched forward per model that has active
 * jobs (the prefill budget is per model). A model unloads after its own keep-alive once idle
 * (keep_alive 0: as soon as it is idle).
 *
 * Memory budget, loading and unloading: engine_models.c.
 *
 * Queue order: the queue is scanned in order each loop; a job whose model is loaded but has
 * no free slot is skipped, the first job that must wait for memory (or for its model to
 * reload) stops the scan, so later jobs cannot keep the busy models busy forever.
 *
 * The files: see engine_priv.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "engine/engine_priv.h"
#include "quant/quant.h"
#include "store/store.h"

void lg_engine_params_default(struct lg_engine_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_parallel = 1;
    p->max_queue = 512;
    p->n_ctx = 0;
    p->type_k = LG_QTYPE_F16;
    p->type_v = LG_QTYPE_F16;
    p->keep_alive_ms = 5 * 60 * 1000;
    p->reasoning_budget = -1;
    p->n_chunk = 0; /* the model state's default (LG_STATE_DEFAULT_CHUNK, 256) */
}

/* Admits what can run from the queue, in order (see the top of the file). Called and returns
 * with e->mu held. */
static void admit_queued(struct lg_engine *e)
{
    struct eng_job *prev = NULL;
    struct eng_job *j = e->q_head;
    while (j && !e->stopping) {
        pthread_mutex_unlock(&e->mu);
        struct lg_err err = {0};
        enum job_readiness rd = lg_eng_job_ready(e, j, &err);
        pthread_mutex_lock(&e->mu);
        struct eng_job *next = j->next;
        if (rd == READY_WAIT)
            break;
        if (rd == READY_SKIP) {
            prev = j;
            j = next;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            e->q_head = next;
        if (e->q_tail == j)
            e->q_tail = prev;
        e->q_len--;
        j->next = NULL;
        pthread_mutex_unlock(&e->mu);
        if (atomic_load(&j->req->cancel))
            lg_eng_job_fail(e, j, LG_ERR_CANCELLED, "cancelled: the client went away");
        else if (rd == READY_FAIL)
            lg_eng_job_fail(e, j, err.code ? err.code : LG_ERR_INTERNAL, err.msg);
        else
            lg_eng_job_admit(e, j);
        pthread_mutex_lock(&e->mu);
        j = next;
    }
}

static void *engine_main(void *arg)
{
    struct lg_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        int64_t wait_ms;
        pthread_mutex_unlock(&e->mu);
        lg_eng_expire_models(e, &wait_ms);
        pthread_mutex_lock(&e->mu);
        if (e->stopping)
            break;
        /* nothing to run, and nothing queued or ended since the last scan */
        if (e->n_active == 0 && (!e->q_head || (e->q_seen == e->next_id && !e->rescan))) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            continue;
        }
        e->q_seen = e->next_id;
        e->rescan = false;
        admit_queued(e);
        pthread_mutex_unlock(&e->mu);
        if (e->n_active > 0)
            lg_eng_step(e);
        pthread_mutex_lock(&e->mu);
    }
    /* stopping: end everything */
    struct eng_job *q = e->q_head;
    e->q_head = e->q_tail = NULL;
    e->q_len = 0;
    pthread_mutex_unlock(&e->mu);
    while (q) {
        struct eng_job *next = q->next;
        lg_eng_job_fail(e, q, LG_ERR_CANCELLED, "the server is shutting down");
        q = next;
    }
    for (int32_t k = 0; k < e->n_loaded; k++) {
        struct eng_model *m = e->models_loaded[k];
        for (int32_t i = 0; i < m->n_slots; i++)
            if (m->slots[i].job)
                lg_eng_job_fail(e, m->slots[i].job, LG_ERR_CANCELLED,
                                "the server is shutting down");
    }
    while (e->n_loaded > 0)
        lg_eng_model_unload(e, e->models_loaded[e->n_loaded - 1]);
    return NULL;
}

/* ---- ops ------------------------------------------------------------------------------- */

static enum lg_status resolve_model(struct lg_engine *e, const char *name, char *out,
                                    size_t cap, struct lg_err *err)
{
    if (!name[0])
        return lg_err_set(err, LG_ERR_NOT_FOUND, "no model given");
    for (size_t i = 0; i < e->p.n_models; i++) {
        if (strcmp(e->models[i], name) != 0)
            continue;
        return e->p.store ? lg_store_resolve(e->p.store, name, false, out, cap, err)
                          : lg_store_resolve_default(name, false, out, cap, err);
    }
    if (!e->p.store)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%s' not found", name);
    enum lg_status st = lg_store_resolve_name(e->p.store, name, false, out, cap, err);
    if (st != LG_OK && st != LG_ERR_NOMEM)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%s' not found (try 'localgemma pull')",
                          name);
    return st;
}

static enum lg_status eng_submit(void *self, struct lg_gen_req *req, uint64_t *id,
                                 struct lg_err *err)
{
    struct lg_engine *e = self;
    if (!req || !req->emit)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "no request");
    struct eng_job *j = calloc(1, sizeof *j);
    if (!j)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status st = resolve_model(e, req->model, j->path, sizeof j->path, err);
    if (st != LG_OK) {
        free(j);
        return st;
    }
    j->req = req;
    j->slot = -1;
    j->t_submit = lg_eng_now_ns();
    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->q_len >= e->p.max_queue) {
        bool stopping = e->stopping;
        pthread_mutex_unlock(&e->mu);
        free(j);
        return lg_err_set(err, LG_ERR_BUSY, stopping ? "the server is shutting down"
                                                    : "server busy: the queue is full");
    }
    j->id = ++e->next_id;
    if (id)
        *id = j->id;
    if (e->q_tail)
        e->q_tail->next = j;
    else
        e->q_head = j;
    e->q_tail = j;
    e->q_len++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return LG_OK;
}

static void eng_stats(void *self, struct lg_engine_stats *out)
{
    struct lg_engine *e = self;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->mu);
    out->queue_depth = e->q_len;
    out->queue_cap = e->p.max_queue;
    out->n_active = e->st_active;
    out->n_parallel = e->p.n_parallel;
    out->n_loading = e->st_loading;
    out->kv_used_bytes = e->st_kv_used;
    out->kv_total_bytes = e->st_kv_total;
    pthread_mutex_unlock(&e->mu);
}

static size_t eng_list_loaded(void *self, struct lg_loaded_model *out, size_t cap)
{
    struct lg_engine *e = self;
    pthread_mutex_lock(&e->mu);
    size_t n = (size_t)e->st_n_models;
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = e->st_models[i];
    pthread_mutex_unlock(&e->mu);
    return n;
}

const struct lg_engine_ops lg_engine_ops_real = {eng_submit, eng_stats, eng_list_loaded};

enum lg_status lg_engine_create(const struct lg_engine_params *p, struct lg_engine **out,
                                struct lg_err *err)
{
    *out = NULL;
    if (p->n_parallel < 1 || p->n_parallel > 256 || p->max_queue < 1 || p->max_models < 0 ||
        p->max_models > ENG_MAX_MODELS)
        return lg_err_set(err, LG_ERR_RANGE,
                          "engine: parallel 1..256, max-queue >= 1, max-models 1..%d",
                          ENG_MAX_MODELS);
    struct lg_engine *e = calloc(1, sizeof *e);
    if (!e)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    e->p = *p;
    e->max_models = p->max_models > 0 ? p->max_models : ENG_MAX_MODELS;
    if (p->n_models) {
        e->models = calloc(p->n_models, sizeof *e->models);
        if (!e->models) {
            free(e);
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < p->n_models; i++)
            if (!(e->models[i] = strdup(p->models[i]))) {
                e->p.n_models = i;
                lg_engine_destroy(e);
                return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
            }
    }
    e->p.models = NULL;
    const char *prof = getenv("LG_ENGINE_PROFILE");
    e->prof.on = prof && prof[0] && strcmp(prof, "0") != 0;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        lg_engine_destroy(e);
        return lg_err_set(err, LG_ERR_INTERNAL, "cannot start the engine thread");
    }
    e->started = true;
    *out = e;
    return LG_OK;
}

void lg_engine_destroy(struct lg_engine *e)
{
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    for (size_t i = 0; i < e->p.n_models; i++)
        free(e->models[i]);
    free(e->models);
    free(e);
}