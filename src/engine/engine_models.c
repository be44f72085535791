/* engine_models.c: the engine's model table. Several models may be loaded at once (at most
 * max_models), each with n_parallel sequence slots, its own KV caches, batch scratch and
 * keep-alive. Loading happens on the engine thread: the other models pause while one loads.
 *
 * Memory budget. MemAvailable already excludes the pages the loaded models have touched, but
 * their heap buffers (KV caches, scratch) become resident only as they are written, so the
 * current figure alone would let models overcommit. The engine therefore takes a budget B =
 * lg_plan_mem_available() whenever no model is loaded, and admits a new model when its plan
 * total (model/plan.h: the peak RSS at a full context) fits in
 *     min(B - sum of the loaded models' plan totals, lg_plan_mem_available() now)
 * with the plan's headroom (each loaded model's total counted without the process baseline,
 * which the new plan already includes). If it does not fit, idle models are unloaded, least
 * recently used first, until it does; if it still does not fit while other models are busy,
 * the request waits in the queue until they go idle; if it cannot fit even alone (in B), it
 * fails with the plan's explanation. A request for a loaded model that needs a larger context
 * (num_ctx) reloads that model once its jobs are done.
 *
 *
 * Engine thread only; lg_eng_publish_stats() copies what other threads may read under mu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/engine_priv.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/model.h"
#include "model/plan.h"
#include "tok/tok.h"

/* ---- models ---------------------------------------------------------------------------- */

static void model_free(struct eng_model *m)
{
    if (!m)
        return;
    for (int32_t i = 0; i < m->n_slots; i++) {
        lg_model_state_destroy(m->slots[i].state);
        free(m->slots[i].snap);
        free(m->slots[i].cache_ids);
    }
    free(m->slots);
    free(m->blogits);
    lg_grammar_vocab_free(m->gvocab);
    lg_model_close(m->model);
    lg_vocab_free(m->vocab);
    lg_gguf_close(m->gguf);
    free(m);
}

void lg_eng_model_unload(struct lg_engine *e, struct eng_model *m)
{
    for (int32_t i = 0; i < e->n_loaded; i++) {
        if (e->models_loaded[i] != m)
            continue;
        e->models_loaded[i] = e->models_loaded[--e->n_loaded];
        e->models_loaded[e->n_loaded] = NULL;
        model_free(m);
        lg_eng_publish_stats(e);
        return;
    }
}

struct eng_model *lg_eng_model_by_path(const struct lg_engine *e, const char *path)
{
    for (int32_t i = 0; i < e->n_loaded; i++)
        if (!strcmp(e->models_loaded[i]->path, path))
            return e->models_loaded[i];
    return NULL;
}

static int32_t find_tok(const struct lg_vocab *v, const char *s)
{
    return lg_tok_find(v, s, strlen(s));
}

/* The context a job asks for: its num_ctx, else --ctx, else the default. */
static int64_t job_want_ctx(const struct lg_engine *e, const struct eng_job *j)
{
    if (j->req->num_ctx > 0)
        return j->req->num_ctx;
    return e->p.n_ctx > 0 ? e->p.n_ctx : ENG_DEFAULT_CTX;
}

/* True when the loaded model m can serve the job as it is: the same file, and slots at least
 * as long as the job's num_ctx (unless they already hold the whole trained context). Ollama
 * reloads the runner for a larger num_ctx; so do we, once the model's requests are done. */
static bool model_serves(const struct eng_model *m, const struct eng_job *j)
{
    if (!m || strcmp(m->path, j->path) != 0)
        return false;
    int64_t train = m->model->cfg.n_ctx_train;
    return j->req->num_ctx <= m->n_ctx || (train > 0 && m->n_ctx >= train);
}

/* The memory plan (model/plan.h) before anything big is allocated: refuse with its
 * explanation rather than be killed by the OOM killer. When the context was not chosen by
 * the user (no --ctx, no num_ctx), a smaller one that fits is taken instead. avail is the
 * memory the model may have alone (the engine's budget; 0: detect). *total / *base get the
 * plan's total and its process baseline. */
static enum lg_status plan_check(const struct lg_engine *e, const struct lg_gguf *g,
                                 const char *name, int64_t *n_ctx, uint64_t avail,
                                 uint64_t *total, uint64_t *base, struct lg_err *err)
{
    struct lg_plan_opts po;
    lg_plan_opts_default(&po);
    po.n_ctx = *n_ctx;
    po.n_parallel = e->p.n_parallel;
    po.type_k = e->p.type_k;
    po.type_v = e->p.type_v;
    /* every slot's rings are sized for the step's chunk (0: the state's default); slot 0's
     * activations are the batch scratch, slots 1.. are KV-only (model_load) */
    po.n_chunk = e->p.n_chunk > 0 ? e->p.n_chunk : 0;
    po.kv_only_rest = true;
    po.mem_available = avail;
    struct lg_plan plan;
    enum lg_status st = lg_plan_compute(g, &po, &plan, err);
    if (st != LG_OK)
        return st;
    *total = plan.total_bytes;
    *base = plan.baseline_bytes;
    if (plan.fits)
        return LG_OK;
    bool chosen = e->p.n_ctx > 0 || *n_ctx != ENG_DEFAULT_CTX;
    if (!chosen && plan.n_ctx_max >= LG_PLAN_MIN_CTX) {
        fprintf(stderr, "engine: %s: %lld-token context does not fit in memory; using %lld\n",
                name, (long long)*n_ctx, (long long)plan.n_ctx_max);
        *n_ctx = plan.n_ctx_max;
        po.n_ctx = *n_ctx;
        if (lg_plan_compute(g, &po, &plan, err) == LG_OK) {
            *total = plan.total_bytes;
            *base = plan.baseline_bytes;
        }
        return LG_OK;
    }
    char why[1024];
    return lg_err_set(err, LG_ERR_NOMEM, "%s does not fit in memory: %s", name,
                      lg_plan_explain(&plan, why, sizeof why));
}

static enum lg_status model_load(struct lg_engine *e, const char *name, const char *path,
                                 int64_t n_ctx, struct lg_err *err)
{
    if (e->n_loaded >= e->max_models)
        return lg_err_set(err, LG_ERR_INTERNAL, "too many models loaded");
    if (e->n_loaded == 0) /* the budget: what is available with no model loaded */
        e->budget = lg_plan_mem_available(NULL, 0);
    struct eng_model *m = calloc(1, sizeof *m);
    if (!m)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->path, sizeof m->path, "%s", path);
    enum lg_status st = lg_gguf_open(path, &m->gguf, err);
    if (st == LG_OK)
        st = plan_check(e, m->gguf, name, &n_ctx, e->budget, &m->plan_bytes, &m->plan_base,
                        err);
    if (st == LG_OK)
        st = lg_chat_flavour_from_gguf(m->gguf, &m->flavour, err);
    if (st == LG_OK)
        st = lg_vocab_load(m->gguf, &m->vocab, err);
    if (st == LG_OK)
        st = lg_model_from_gguf(m->gguf, &m->model, err);
    if (st != LG_OK)
        goto fail;
    m->n_vocab = m->model->cfg.n_vocab;
    if ((int64_t)m->vocab->n_tokens > m->n_vocab) {
        st = lg_err_set(err, LG_ERR_FORMAT, "%s: vocab has %u tokens but the embedding %d rows",
                        name, m->vocab->n_tokens, m->n_vocab);
        goto fail;
    }
    if (m->model->cfg.n_ctx_train > 0 && n_ctx > m->model->cfg.n_ctx_train)
        n_ctx = m->model->cfg.n_ctx_train;
    m->n_ctx = n_ctx;
    lg_sample_params_default(&m->sdef);
    struct lg_err ignored;
    (void)lg_sample_params_from_gguf(&m->sdef, m->gguf, &ignored);
    m->id_chan_open = find_tok(m->vocab, "<|channel>");
    m->id_chan_close = find_tok(m->vocab, "<channel|>");
    m->id_call_open = find_tok(m->vocab, "<|tool_call>");
    m->keep_alive_ms = e->p.keep_alive_ms;
    m->idle_since_ms = lg_eng_wall_ms();
    m->last_used = ++e->use_clock;
    m->slots = calloc((size_t)e->p.n_parallel, sizeof *m->slots);
    if (!m->slots) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->n_slots = e->p.n_parallel;
    int64_t chunk = e->p.n_chunk > 0 ? e->p.n_chunk : 0; /* 0: the state's default */
    m->blogits = malloc((size_t)m->n_slots * (size_t)m->n_vocab * sizeof *m->blogits);
    if (!m->blogits) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory for %d logits rows", (int)m->n_slots);
        goto fail;
    }
    for (int32_t i = 0; i < m->n_slots; i++) {
        struct eng_slot *s = &m->slots[i];
        /* slot 0's activations are the batch scratch (sized for a whole prefill budget);
         * the other slots only hold their KV cache, with rings for the same chunk (so a
         * prompt can take a whole step's budget), and run on slot 0's buffers */
        struct lg_state_opts so = {.n_ctx = n_ctx, .n_chunk = chunk,
                                   .type_k = e->p.type_k, .type_v = e->p.type_v,
                                   .kv_only = i > 0};
        st = lg_model_state_create_opts(m->model, &so, &s->state, err);
        if (st != LG_OK)
            goto fail;
        s->cache_ids = malloc((size_t)n_ctx * sizeof *s->cache_ids);
        size_t snap = lg_kv_snapshot_bytes(lg_model_state_kv(s->state));
        s->snap = snap ? malloc(snap) : NULL;
        s->snap_pos = -1;
        if (!s->cache_ids || (snap && !s->snap)) {
            st = lg_err_set(err, LG_ERR_NOMEM, "out of memory for %d %lld-token sequences",
                            (int)m->n_slots, (long long)n_ctx);
            goto fail;
        }
    }
    m->work = m->slots[0].state;
    e->models_loaded[e->n_loaded++] = m;
    lg_eng_publish_stats(e);
    return LG_OK;
fail:
    model_free(m);
    return st;
}

enum lg_status lg_eng_ensure_model(struct lg_engine *e, struct eng_job *j, struct lg_err *err)
{
    struct eng_model *m = lg_eng_model_by_path(e, j->path);
    if (m && model_serves(m, j)) {
        j->m = m;
        return LG_OK;
    }
    if (m) { /* too short a context: lg_eng_job_ready saw it idle */
        if (m->n_active > 0)
            return lg_err_set(err, LG_ERR_INTERNAL, "model %s is busy", m->name);
        lg_eng_model_unload(e, m);
    }
    pthread_mutex_lock(&e->mu);
    e->st_loading++;
    pthread_mutex_unlock(&e->mu);
    int64_t t0 = lg_eng_now_ns();
    enum lg_status st = model_load(e, j->req->model, j->path, job_want_ctx(e, j), err);
    j->load_ns = lg_eng_now_ns() - t0;
    pthread_mutex_lock(&e->mu);
    e->st_loading--;
    pthread_mutex_unlock(&e->mu);
    if (st == LG_OK) {
        j->m = e->models_loaded[e->n_loaded - 1];
        fprintf(stderr, "engine: loaded %s (%d x %lld-token sequences, plan %llu bytes; %d "
                        "model%s loaded) in %.1f s\n",
                j->req->model, (int)j->m->n_slots, (long long)j->m->n_ctx,
                (unsigned long long)j->m->plan_bytes, (int)e->n_loaded,
                e->n_loaded == 1 ? "" : "s", j->load_ns / 1e9);
    }
    return st;
}

/* Memory the loaded models may still claim beside a new one (see the top of the file):
 * min(budget - their plan totals, available now). UINT64_MAX when nothing can be measured. */
static uint64_t mem_free_for_new(const struct lg_engine *e)
{
    if (e->budget == 0)
        return UINT64_MAX;
    uint64_t used = 0;
    for (int32_t i = 0; i < e->n_loaded; i++) {
        const struct eng_model *m = e->models_loaded[i];
        used += m->plan_bytes > m->plan_base ? m->plan_bytes - m->plan_base : 0;
    }
    uint64_t free_b = e->budget > used ? e->budget - used : 0;
    uint64_t now = lg_plan_mem_available(NULL, 0);
    if (now > 0 && now < free_b)
        free_b = now;
    return free_b;
}

/* The idle loaded model used least recently, or NULL. */
static struct eng_model *lru_idle(const struct lg_engine *e)
{
    struct eng_model *best = NULL;
    for (int32_t i = 0; i < e->n_loaded; i++) {
        struct eng_model *m = e->models_loaded[i];
        if (m->n_active == 0 && (!best || m->last_used < best->last_used))
            best = m;
    }
    return best;
}

static bool model_has_free_slot(const struct eng_model *m)
{
    for (int32_t i = 0; i < m->n_slots; i++)
        if (!m->slots[i].job)
            return true;
    return false;
}

void lg_eng_publish_stats(struct lg_engine *e)
{
    uint64_t used = 0, total = 0;
    pthread_mutex_lock(&e->mu);
    e->st_n_models = 0;
    int64_t now = lg_eng_wall_ms();
    for (int32_t k = 0; k < e->n_loaded; k++) {
        const struct eng_model *m = e->models_loaded[k];
        uint64_t m_total = 0;
        for (int32_t i = 0; i < m->n_slots; i++) {
            struct lg_kv *kv = lg_model_state_kv(m->slots[i].state);
            size_t b = lg_kv_bytes(kv);
            m_total += b;
            if (m->n_ctx > 0)
                used += (uint64_t)((double)b * (double)m->slots[i].n_cache / (double)m->n_ctx);
        }
        total += m_total;
        struct lg_loaded_model *lm = &e->st_models[e->st_n_models++];
        memset(lm, 0, sizeof *lm);
        snprintf(lm->name, sizeof lm->name, "%s", m->name);
        lm->size_bytes = m->gguf->size + m_total;
        int64_t ka = m->keep_alive_ms;
        lm->expires_at_ms = ka < 0 ? -1 : (m->n_active ? now : m->idle_since_ms) + ka;
        lm->context_length = (int32_t)m->n_ctx;
    }
    e->st_active = e->n_active;
    e->st_kv_used = used;
    e->st_kv_total = total;
    pthread_mutex_unlock(&e->mu);
}
/* ---- keep-alive and admission ------------------------------------------------------- */

void lg_eng_expire_models(struct lg_engine *e, int64_t *wait_ms)
{
    *wait_ms = 1000;
    for (int32_t k = 0; k < e->n_loaded; k++) {
        struct eng_model *m = e->models_loaded[k];
        if (m->n_active > 0 || m->keep_alive_ms < 0)
            continue;
        int64_t left = m->idle_since_ms + m->keep_alive_ms - lg_eng_wall_ms();
        if (left <= 0) {
            fprintf(stderr, "engine: unloaded %s (keep-alive expired)\n", m->name);
            lg_eng_model_unload(e, m);
            k = -1; /* the array changed: look again */
            *wait_ms = 1000;
            continue;
        }
        if (left < *wait_ms)
            *wait_ms = left;
    }
}

enum job_readiness lg_eng_job_ready(struct lg_engine *e, struct eng_job *j, struct lg_err *err)
{
    const struct lg_gen_req *r = j->req;
    if (atomic_load(&r->cancel))
        return READY_GO;
    bool empty = lg_eng_req_empty(r);
    if (empty && r->keep_alive_ms == 0)
        return READY_GO;
    struct eng_model *m = lg_eng_model_by_path(e, j->path);
    if (m && model_serves(m, j))
        return empty || model_has_free_slot(m) ? READY_GO : READY_SKIP;
    if (m) { /* a larger context: reload once its jobs are done */
        if (m->n_active > 0)
            return READY_WAIT;
        fprintf(stderr, "engine: unloading %s to reload it with a larger context\n", m->name);
        lg_eng_model_unload(e, m);
    }
    if (e->n_loaded == 0)
        return READY_GO; /* alone: model_load's plan decides */
    if (!j->planned) {
        /* what the model needs alone, in the budget taken when nothing was loaded */
        struct lg_gguf *g = NULL;
        int64_t n_ctx = job_want_ctx(e, j);
        uint64_t base = 0;
        enum lg_status st = lg_gguf_open(j->path, &g, err);
        if (st == LG_OK)
            st = plan_check(e, g, r->model, &n_ctx, e->budget, &j->need_bytes, &base, err);
        lg_gguf_close(g);
        if (st != LG_OK)
            return READY_GO; /* lg_eng_job_admit loads it and reports the same error */
        j->need_bytes += LG_PLAN_HEADROOM_BYTES;
        j->planned = true;
    }
    for (;;) {
        if (e->n_loaded == 0)
            return READY_GO;
        if (e->n_loaded < e->max_models && j->need_bytes <= mem_free_for_new(e))
            return READY_GO;
        struct eng_model *victim = lru_idle(e);
        if (!victim)
            return READY_WAIT;
        fprintf(stderr, "engine: unloading %s (idle) to make room for %s\n", victim->name,
                r->model);
        lg_eng_model_unload(e, victim);
    }
}
