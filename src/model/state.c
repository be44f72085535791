/* state.c: creation and sizing of a sequence state (struct lg_model_state, state_priv.h):
 * the KV cache plus every activation buffer the forward pass needs, allocated once. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "kern/qdot.h"
#include "model/model.h"
#include "model/state_priv.h"
#include "quant/quant.h"

enum { DEFAULT_CHUNK = 64 };



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
}

enum lg_status lg_model_state_set_threads(struct lg_model_state *s, int n_threads,
                                          struct lg_err *err)
{
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

enum lg_status lg_model_state_create(const struct lg_model *m, int64_t n_ctx, int64_t n_chunk,
                                     struct lg_model_state **out, struct lg_err *err)
{
    const struct lg_model_cfg *c = &m->cfg;
    enum lg_status st;
    *out = NULL;
    if (n_ctx <= 0 || n_ctx > ((int64_t)1 << 30))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "context size %lld out of range",
                          (long long)n_ctx);
    if (n_chunk <= 0)
        n_chunk = DEFAULT_CHUNK;
    if (n_chunk > n_ctx)
        n_chunk = n_ctx;
    struct lg_model_state *s = calloc(1, sizeof *s);
    if (!s)
        return lg_err_set(err, LG_ERR_NOMEM, "state: out of memory");
    s->k = lg_kern_get();
    s->n_ctx = n_ctx;
    s->n_chunk = n_chunk;
    s->nth = lg_tp_default_threads();
    s->nth_max = s->nth > 16 ? s->nth : 16;
    s->pool = lg_tp_create(s->nth);
    if (!s->pool) {
        st = lg_err_set(err, LG_ERR_NOMEM, "state: cannot start %d threads", s->nth);
        goto fail;
    }
    s->dq_stride = ((int64_t)m->max_cols + 16 + 15) / 16 * 16;
    /* widest activation format: 2 bytes per element (F16/BF16); Q8_* use less */
    s->qx_stride = ((size_t)m->max_cols * 2 + 63) / 64 * 64;

    struct lg_kv_layer_layout lay[LG_MODEL_MAX_LAYERS];
    int64_t HD = 0, KVD = 0, F = 0, maxrot = 0;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_cfg *lc = &c->layers[il];
        lay[il].src = lc->kv_src;
        lay[il].window = lc->sliding ? c->sliding_window : 0;
        lay[il].n_head_kv = lc->n_head_kv;
        lay[il].head_dim = lc->head_dim;
        if ((int64_t)c->n_head * lc->head_dim > HD)
            HD = (int64_t)c->n_head * lc->head_dim;
        if ((int64_t)lc->n_head_kv * lc->head_dim > KVD)
            KVD = (int64_t)lc->n_head_kv * lc->head_dim;
        if (lc->n_ff > F)
            F = lc->n_ff;
        if (lc->n_rot > maxrot)
            maxrot = lc->n_rot;
    }
    struct lg_kv_layout layout = {.n_layer = c->n_layer, .layers = lay};
    if ((st = lg_kv_create(&layout, n_ctx, n_chunk, &s->kv, err)))
        goto fail;

    const int64_t C = n_chunk, D = c->n_embd, P = c->n_embd_per_layer;
    const int64_t LP = (int64_t)c->n_layer * P, X = c->n_expert, K = c->n_expert_used;
    const int64_t Fe = c->n_ff_exp;
    if (P > F)
        F = P;
    /* Sizes in floats, in the order of the fields below; all fit easily in int64. */
    s->qx = aligned_alloc(64, (size_t)C * s->qx_stride);
    if (!s->qx) {
        st = lg_err_set(err, LG_ERR_NOMEM, "state: out of memory");
        goto fail;
    }
    int64_t sz[] = {
        C * D, C * D, C * HD, C * KVD, C * KVD, C * HD, C * D, C * F, C * F, C * D,
        C * LP, C * LP, maxrot + 2, s->nth_max * s->dq_stride, s->nth_max * n_ctx,
        X ? C * D : 0, X ? C * D : 0, C * X, C * K, C * K, C, C, X ? C * D : 0, C * 2 * Fe,
        C * Fe, X ? C * D : 0,
    };
    enum { N_BUF = sizeof sz / sizeof sz[0] };
    size_t total = 0;
    for (int i = 0; i < N_BUF; i++)
        total += ((size_t)sz[i] + 15) / 16 * 16;
    s->mem = aligned_alloc(64, total * sizeof(float) + 64);
    if (!s->mem) {
        st = lg_err_set(err, LG_ERR_NOMEM, "state: cannot allocate %zu bytes of activations",
                        total * sizeof(float));
        goto fail;
    }
    float *p = s->mem;
    float **dst[] = {&s->x,  &s->a,  &s->q,    &s->kk,  &s->vv, &s->att, &s->o,
                     &s->g,  &s->u,  &s->f,    &s->pl,  &s->plc, &s->cs, &s->dq,
                     &s->sc, &s->x2, &s->racc, &s->rl,  NULL,   &s->selw, NULL,
                     &s->ew, &s->ex, &s->egu,  &s->eh,  &s->ey};
    for (int i = 0; i < N_BUF; i++) {
        if (dst[i])
            *dst[i] = p;
        else if (i == 18)
            s->sel = (int32_t *)(void *)p;
        else
            s->etok = (int32_t *)(void *)p;
        p += ((size_t)sz[i] + 15) / 16 * 16;
    }
    *out = s;
    return LG_OK;
fail:
    lg_model_state_destroy(s);
    return st;
}


/* TODO(#9, in progress): F16 / Q8_0 / Q4_0 K/V storage. Until then only F32 is accepted. */
void lg_state_opts_default(struct lg_state_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_ctx = 4096;
    o->type_k = LG_QTYPE_F16;
    o->type_v = LG_QTYPE_F16;
}

enum lg_status lg_model_state_create_opts(const struct lg_model *m, const struct lg_state_opts *o,
                                          struct lg_model_state **out, struct lg_err *err)
{
    if (o->type_k != LG_QTYPE_F32 || o->type_v != LG_QTYPE_F32) {
        *out = NULL;
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "KV cache type: only f32 for now");
    }
    return lg_model_state_create(m, o->n_ctx, o->n_chunk, out, err);
}
