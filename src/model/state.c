/* state.c: creation and sizing of a sequence state (struct lg_model_state, state_priv.h):
 * the KV cache (in the K/V storage types of struct lg_state_opts) plus every activation buffer
 * the forward pass needs, allocated once; a KV-only state (lg_state_opts.kv_only, the engine's
 * slots 1..n) has the cache alone. lg_model_state_bytes() and create share state_plan(),
 * and create adds up what it allocates in s->bytes (test_kv_types checks the two agree). The
 * thread pool (threads and their stacks) is not counted. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "kern/qdot.h"
#include "model/model.h"
#include "model/state_priv.h"
#include "quant/quant.h"

void lg_model_state_destroy(struct lg_model_state *s)
{
    if (!s)
        return;
    lg_kv_destroy(s->kv);
    lg_tp_destroy(s->pool);
    free(s->qx);
    free(s->mem);
    free(s);
}

struct lg_kv *lg_model_state_kv(struct lg_model_state *s)
{
    return s->kv;
}

void lg_model_state_set_kern(struct lg_model_state *s, const struct lg_kern *k)
{
    s->k = k ? k : lg_kern_get();
    if (s->kv)
        lg_kv_set_kern(s->kv, s->k); /* the cache stores with the same table (same bytes) */
}

enum lg_status lg_model_state_set_threads(struct lg_model_state *s, int n_threads,
                                          struct lg_err *err)
{
    if (s->kv_only)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "threads: a KV-only state runs no pass");
    if (n_threads < 1 || n_threads > 256)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "threads: %d out of range 1..256",
                          n_threads);
    if (n_threads > s->nth_max)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "threads: %d exceeds the %d this state "
                          "was created for", n_threads, s->nth_max);
    struct lg_tp *p = lg_tp_create(n_threads);
    if (!p)
        return lg_err_set(err, LG_ERR_NOMEM, "threads: cannot start %d threads", n_threads);
    lg_tp_destroy(s->pool);
    s->pool = p;
    s->nth = n_threads;
    return LG_OK;
}

/* Everything the sizes of a state depend on, computed once for lg_model_state_bytes() and
 * lg_model_state_create_opts() so that the two cannot disagree. */
struct state_plan {
    int64_t n_ctx, n_chunk;
    int nth, nth_max;
    int64_t dq_stride, sc_stride;
    size_t qx_stride;
    struct lg_kv_layer_layout lay[LG_MODEL_MAX_LAYERS];
    struct lg_kv_layout layout;
    size_t kv_bytes;  /* lg_kv_size() */
    int64_t sz[26];   /* floats per activation buffer, in the order of the fields below */
    size_t mem_floats;/* the buffers, each rounded up to 16 floats */
    size_t bytes;     /* the state struct + qx + mem + KV (kv_only: struct + KV) */
};

static enum lg_status state_plan(const struct lg_model_cfg *c, size_t max_cols,
                                 const struct lg_state_opts *o, struct state_plan *p,
                                 struct lg_err *err)
{
    enum lg_status st;
    int64_t n_ctx = o->n_ctx, n_chunk = o->n_chunk;
    if (n_ctx <= 0 || n_ctx > ((int64_t)1 << 30))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "context size %lld out of range",
                          (long long)n_ctx);
    if (c->n_layer <= 0 || c->n_layer > LG_MODEL_MAX_LAYERS)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "state: %d layers", (int)c->n_layer);
    if (n_chunk <= 0)
        n_chunk = LG_STATE_DEFAULT_CHUNK;
    if (n_chunk > n_ctx)
        n_chunk = n_ctx;
    p->n_ctx = n_ctx;
    p->n_chunk = n_chunk;
    p->nth = lg_tp_default_threads();
    p->nth_max = p->nth > 16 ? p->nth : 16;
    p->dq_stride = ((int64_t)max_cols + 16 + 15) / 16 * 16;
    /* the AVX2 attention scores the 8 query heads of a KV head together when they fit */
    p->sc_stride = 8 * (n_ctx < 4096 ? n_ctx : 4096);
    if (p->sc_stride < n_ctx)
        p->sc_stride = n_ctx;
    /* widest activation format: 2 bytes per element (F16/BF16); Q8_* use less */
    p->qx_stride = (max_cols * 2 + 63) / 64 * 64;

    int64_t HD = 0, KVD = 0, F = 0, maxrot = 0;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_cfg *lc = &c->layers[il];
        p->lay[il].src = lc->kv_src;
        p->lay[il].window = lc->sliding ? c->sliding_window : 0;
        p->lay[il].n_head_kv = lc->n_head_kv;
        p->lay[il].head_dim = lc->head_dim;
        if ((int64_t)c->n_head * lc->head_dim > HD)
            HD = (int64_t)c->n_head * lc->head_dim;
        if ((int64_t)lc->n_head_kv * lc->head_dim > KVD)
            KVD = (int64_t)lc->n_head_kv * lc->head_dim;
        if (lc->n_ff > F)
            F = lc->n_ff;
        if (lc->n_rot > maxrot)
            maxrot = lc->n_rot;
    }
    p->layout = (struct lg_kv_layout){
        .n_layer = c->n_layer, .layers = p->lay, .type_k = o->type_k, .type_v = o->type_v};
    if ((st = lg_kv_size(&p->layout, n_ctx, n_chunk, &p->kv_bytes, err)))
        return st;

    const int64_t C = n_chunk, D = c->n_embd, P = c->n_embd_per_layer;
    const int64_t LP = (int64_t)c->n_layer * P, X = c->n_expert, K = c->n_expert_used;
    const int64_t Fe = c->n_ff_exp;
    if (P > F)
        F = P;
    const int64_t sz[] = {
        C * D, C * D, C * HD, C * KVD, C * KVD, C * HD, C * D, C * F, C * F, C * D,
        C * LP, C * LP, maxrot + 2, p->nth_max * p->dq_stride, p->nth_max * p->sc_stride,
        X ? C * D : 0, X ? C * D : 0, C * X, C * K, C * K, C, C, X ? C * D : 0, C * 2 * Fe,
        C * Fe, X ? C * D : 0,
    };
    _Static_assert(sizeof sz == sizeof p->sz, "state_plan.sz");
    memcpy(p->sz, sz, sizeof sz);
    p->mem_floats = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
        p->mem_floats += ((size_t)sz[i] + 15) / 16 * 16;
    if (o->kv_only) { /* the KV cache alone: no activations, no qx */
        memset(p->sz, 0, sizeof p->sz);
        p->mem_floats = 0;
        p->bytes = sizeof(struct lg_model_state) + p->kv_bytes;
        return LG_OK;
    }
    p->bytes = sizeof(struct lg_model_state) + (size_t)C * p->qx_stride +
               p->mem_floats * sizeof(float) + 64 + p->kv_bytes;
    return LG_OK;
}

void lg_state_opts_default(struct lg_state_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_ctx = 4096;
    o->type_k = LG_QTYPE_F16;
    o->type_v = LG_QTYPE_F16;
}

size_t lg_model_state_bytes(const struct lg_model_cfg *cfg, size_t max_cols,
                            const struct lg_state_opts *o)
{
    struct state_plan p;
    struct lg_err err;
    return state_plan(cfg, max_cols, o, &p, &err) == LG_OK ? p.bytes : 0;
}

enum lg_status lg_model_state_create_opts(const struct lg_model *m, const struct lg_state_opts *o,
                                          struct lg_model_state **out, struct lg_err *err)
{
    enum lg_status st;
    *out = NULL;
    struct state_plan plan, *pl = &plan;
    if ((st = state_plan(&m->cfg, m->max_cols, o, pl, err)))
        return st;
    struct lg_model_state *s = calloc(1, sizeof *s);
    if (!s)
        return lg_err_set(err, LG_ERR_NOMEM, "state: out of memory");
    s->bytes = sizeof *s;
    s->k = lg_kern_get();
    s->n_ctx = pl->n_ctx;
    s->n_chunk = pl->n_chunk;
    s->nth = pl->nth;
    s->nth_max = pl->nth_max;
    s->dq_stride = pl->dq_stride;
    s->sc_stride = pl->sc_stride;
    s->qx_stride = pl->qx_stride;
    if (o->kv_only) {
        s->kv_only = true;
        if ((st = lg_kv_create(&pl->layout, pl->n_ctx, pl->n_chunk, &s->kv, err)))
            goto fail;
        s->bytes += lg_kv_footprint(s->kv);
        *out = s;
        return LG_OK;
    }
    s->pool = lg_tp_create(s->nth);
    if (!s->pool) {
        st = lg_err_set(err, LG_ERR_NOMEM, "state: cannot start %d threads", s->nth);
        goto fail;
    }
    if ((st = lg_kv_create(&pl->layout, pl->n_ctx, pl->n_chunk, &s->kv, err)))
        goto fail;
    s->bytes += lg_kv_footprint(s->kv);
    s->qx = aligned_alloc(64, (size_t)pl->n_chunk * s->qx_stride);
    if (!s->qx) {
        st = lg_err_set(err, LG_ERR_NOMEM, "state: out of memory");
        goto fail;
    }
    s->bytes += (size_t)pl->n_chunk * s->qx_stride;
    s->mem = aligned_alloc(64, pl->mem_floats * sizeof(float) + 64);
    if (!s->mem) {
        st = lg_err_set(err, LG_ERR_NOMEM, "state: cannot allocate %zu bytes of activations",
                        pl->mem_floats * sizeof(float));
        goto fail;
    }
    s->bytes += pl->mem_floats * sizeof(float) + 64;
    float *p = s->mem;
    float **dst[] = {&s->x,  &s->a,  &s->q,    &s->kk,  &s->vv, &s->att, &s->o,
                     &s->g,  &s->u,  &s->f,    &s->pl,  &s->plc, &s->cs, &s->dq,
                     &s->sc, &s->x2, &s->racc, &s->rl,  NULL,   &s->selw, NULL,
                     &s->ew, &s->ex, &s->egu,  &s->eh,  &s->ey};
    _Static_assert(sizeof dst / sizeof dst[0] == sizeof pl->sz / sizeof pl->sz[0], "dst");
    for (size_t i = 0; i < sizeof dst / sizeof dst[0]; i++) {
        if (dst[i])
            *dst[i] = p;
        else if (i == 18)
            s->sel = (int32_t *)(void *)p;
        else
            s->etok = (int32_t *)(void *)p;
        p += ((size_t)pl->sz[i] + 15) / 16 * 16;
    }
    *out = s;
    return LG_OK;
fail:
    lg_model_state_destroy(s);
    return st;
}

enum lg_status lg_model_state_create(const struct lg_model *m, int64_t n_ctx, int64_t n_chunk,
                                     struct lg_model_state **out, struct lg_err *err)
{
    struct lg_state_opts o = {.n_ctx = n_ctx, .n_chunk = n_chunk,
                              .type_k = LG_QTYPE_F32, .type_v = LG_QTYPE_F32};
    return lg_model_state_create_opts(m, &o, out, err);
}
