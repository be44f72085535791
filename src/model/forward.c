/* forward.c: the Gemma 3 / Gemma 4 decoder forward pass (shared/spec/gemma4.md §2).
 *
 * A batch of tokens at consecutive positions is processed in chunks of at most n_chunk
 * tokens; each chunk goes through every layer before the next starts, writing its K/V into the
 * cache first and then attending over the cache (see kv/kv.h for why the sliding rings are
 * W + n_chunk slots). Prefill and decode are the same code with n_tok = 1 for decode.
 * Everything the pass needs is allocated in lg_model_state_create(); the pass itself does not
 * allocate. The pass reads only the per-layer table: no branch on an architecture name.
 *
 * Matrix products follow ggml's arithmetic so that logits match llama.cpp's: each token's
 * input row is converted once to the weight type's activation format (kern/qdot.h: Q8_0, Q8_1,
 * Q8_K, F16, BF16; F32 weights keep f32 inputs; the threads share the tokens of a chunk) and
 * shared by all threads, which then pull chunks of output rows from an atomic counter; chunks
 * start at multiples of 8 rows of each matrix (the GEMM kernels work on groups of 8 rows).
 * Products that read the same input (Q/K/V, gate/up) run as one parallel job.
 *
 * Everything between two products is row-local (norms, residual adds, RoPE, the GLU, the
 * K/V stores), so it runs as one "row step" per gap: the rows of the chunk are shared out
 * across the pool and each row goes through all the gap's operations while in cache, ending
 * with its conversion to the next product's activation format (s->qx). A row step computes
 * every element exactly as the separate passes did (same kernels, same order), so the split
 * of rows across threads or chunks never changes a result: prefill == decode bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "kern/qdot.h"
#include "model/model.h"
#include "model/state_priv.h"
#include "quant/quant.h"

/* ROWS_MIN: element-operations below which a row step runs on the calling thread alone (a
 * wake-up of the workers costs about as much as 30K element operations). */
enum { MM_MAX = 3, MM_ALIGN = 8, ROWS_MIN = 32768 };

/* Up to MM_MAX products y_i[t] = W_i x[t] over the same input, run as one job whose threads
 * pull chunks of rows (of the concatenated outputs) from `next`. */
struct mm_job {
    const struct lg_model_state *s;
    int count;
    const struct lg_wmat *w[MM_MAX];
    float *y[MM_MAX];
    int64_t ldy[MM_MAX];
    const void *qx[MM_MAX]; /* converted input per product (NULL: dequant path on x) */
    size_t ldq[MM_MAX];
    /* product i owns rows [row0[i], row0[i] + rows) of the total; row0[i] is a multiple of
     * MM_ALIGN (the rows in between are skipped) */
    int64_t row0[MM_MAX + 1];
    int64_t step;
    const float *x;
    int64_t ldx, n;
    atomic_llong next;
};

static void mm_rows(const struct mm_job *j, int64_t lo, int64_t hi, int ith)
{
    const struct lg_kern *k = j->s->k;
    for (int i = 0; i < j->count; i++) {
        const struct lg_wmat *w = j->w[i];
        int64_t end = j->row0[i] + w->rows;
        int64_t a = lo > j->row0[i] ? lo : j->row0[i];
        int64_t b = hi < end ? hi : end;
        if (a >= b)
            continue;
        a -= j->row0[i];
        b -= j->row0[i];
        if (j->qx[i]) {
            lg_matmul_q(k->vec_dot[w->type], k->vec_dot4[w->type], w, j->qx[i], j->ldq[i],
                        j->y[i], j->ldy[i], j->n, a, b);
        } else {
            /* no quantized dot for this type: dequantize rows [a, b) and use f32 */
            struct lg_wmat part = *w;
            part.data = (const uint8_t *)w->data + (size_t)a * w->row_bytes;
            part.rows = b - a;
            k->matmul(&part, j->x, j->ldx, j->y[i] + a, j->ldy[i], j->n,
                      j->s->dq + ith * j->s->dq_stride, 0, 1);
        }
    }
}

static void mm_run(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    int64_t lo, hi;
    (void)nth;
    while (lg_tp_chunk(&j->next, j->row0[j->count], j->step, &lo, &hi))
        mm_rows(j, lo, hi, ith);
}

/* Converts the n rows of x to the activation format of weight type `type` in s->qx. */
struct quant_job {
    const struct lg_kern *k;
    uint32_t type;
    const float *x;
    int64_t ldx, n, cols;
    uint8_t *qx;
    size_t ldq;
};

static void quant_run(void *arg, int ith, int nth)
{
    const struct quant_job *j = arg;
    for (int64_t t = j->n * ith / nth; t < j->n * (ith + 1) / nth; t++)
        j->k->act_quantize(j->type, j->x + t * j->ldx, j->qx + (size_t)t * j->ldq, j->cols);
}

static void quant_rows(struct lg_model_state *s, const struct lg_wmat *w, const float *x,
                       int64_t ldx, int64_t n)
{
    struct quant_job q = {s->k, w->type, x, ldx, n, w->cols, s->qx, s->qx_stride};
    /* ~2 instructions per element (AVX2): waking the workers pays from ~64K elements on (a
     * dense prefill chunk; not the few tokens an MoE expert gets) */
    if (n * w->cols >= 65536 && s->nth > 1)
        lg_tp_run(s->pool, quant_run, &q);
    else
        quant_run(&q, 0, 1);
}

/* The activation format lg_matmul_q reads for w on this table, or -1 when its product takes
 * f32 rows (F32 weights, or a type without a quantized dot: the dequantizing `matmul`). */
static int mm_act(const struct lg_model_state *s, const struct lg_wmat *w)
{
    int act = s->k->vec_dot[w->type] ? lg_act_type(w->type) : -1;
    return act == LG_QTYPE_F32 ? -1 : act;
}

static void mm_job_init(struct mm_job *j, const struct lg_model_state *s, const float *x,
                        int64_t ldx, int64_t n)
{
    memset(j, 0, sizeof *j);
    j->s = s;
    j->x = x;
    j->ldx = ldx;
    j->n = n;
}

static void mm_launch(struct lg_model_state *s, struct mm_job *j)
{
    if (j->count == 0)
        return;
    int64_t total = j->row0[j->count];
    /* ~8 chunks per thread balance a loaded machine; at least 16 rows keep dot4 blocks; a
     * multiple of MM_ALIGN keeps every chunk on the GEMM's 8-row groups. */
    int64_t step = total / ((int64_t)s->nth * 8);
    j->step = step < 16 ? 16 : (step + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN;
    atomic_store(&j->next, 0);
    if (total * j->w[0]->cols * j->n < 32768 || s->nth == 1) /* not worth waking the workers */
        mm_rows(j, 0, total, 0);
    else
        lg_tp_run(s->pool, mm_run, j);
}

/* y_i[t] = W_i x[t] for i < count over the chunk: the input is converted once per activation
 * format (in s->qx, one format at a time, so products of different formats run as separate
 * jobs), rows are shared out across the pool. `have`: the format s->qx already holds for these
 * rows of x (a row step converted them), or -1. */
static void mm_multi(struct lg_model_state *s, const float *x, int64_t ldx, int64_t n, int count,
                     const struct lg_wmat *const *ws, float *const *ys, const int64_t *ldys,
                     int have)
{
    struct mm_job j;
    mm_job_init(&j, s, x, ldx, n);
    int cur = have;    /* the format s->qx holds */
    bool used = false; /* a product of j reads s->qx */
    for (int i = 0; i < count; i++) {
        const struct lg_wmat *w = ws[i];
        int act = s->k->vec_dot[w->type] ? lg_act_type(w->type) : -1;
        if (act >= 0 && act != LG_QTYPE_F32 && act != cur && used) {
            /* s->qx holds another format: run what we have first */
            mm_launch(s, &j);
            mm_job_init(&j, s, x, ldx, n);
            used = false;
        }
        int c = j.count++;
        j.w[c] = w;
        j.y[c] = ys[i];
        j.ldy[c] = ldys[i];
        if (act == LG_QTYPE_F32) {
            j.qx[c] = x;
            j.ldq[c] = (size_t)ldx * sizeof(float);
        } else if (act >= 0) {
            if (cur != act) {
                quant_rows(s, w, x, ldx, n);
                cur = act;
            }
            j.qx[c] = s->qx;
            j.ldq[c] = s->qx_stride;
            used = true;
        }
        j.row0[c + 1] = j.row0[c] + (w->rows + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN;
    }
    mm_launch(s, &j);
}

/* y[t] = W x[t] over the chunk (have: as mm_multi). */
static void mm(struct lg_model_state *s, const struct lg_wmat *w, const float *x, int64_t ldx,
               float *y, int64_t ldy, int64_t n, int have)
{
    mm_multi(s, x, ldx, n, 1, &w, &y, &ldy, have);
}

/* ---- row steps ------------------------------------------------------------------------------ */

/* Runs row(ctx, t, ith) for every t < n; rows go to the pool's threads in chunks pulled from a
 * counter (a loaded machine balances) when the step has ROWS_MIN element-operations or more
 * (work: per row), else all on the calling thread. */
struct rows_job {
    void (*row)(void *ctx, int64_t t, int ith);
    void *ctx;
    int64_t n, step;
    atomic_llong next;
};

static void rows_run(void *arg, int ith, int nth)
{
    struct rows_job *j = arg;
    int64_t lo, hi;
    (void)nth;
    while (lg_tp_chunk(&j->next, j->n, j->step, &lo, &hi))
        for (int64_t t = lo; t < hi; t++)
            j->row(j->ctx, t, ith);
}

static void for_rows(struct lg_model_state *s, int64_t n, int64_t work,
                     void (*row)(void *ctx, int64_t t, int ith), void *ctx)
{
    struct rows_job j = {.row = row, .ctx = ctx, .n = n};
    if (s->nth > 1 && n > 1 && n * work >= ROWS_MIN) {
        int64_t step = n / ((int64_t)s->nth * 4);
        j.step = step < 1 ? 1 : step;
        atomic_store(&j.next, 0);
        lg_tp_run(s->pool, rows_run, &j);
    } else {
        for (int64_t t = 0; t < n; t++)
            row(ctx, t, 0);
    }
}

/* The input of the next product w: row t of src ([n][width]), normed into dst when norm_w or
 * `norm`, then converted into s->qx row t when the product reads a quantized format (act). */
struct in_step {
    const struct lg_wmat *w; /* NULL: no next product */
    const float *src;
    float *dst;              /* the normed rows (when normed) */
    const float *norm_w;     /* NULL with norm: a weightless norm */
    bool norm;
    int64_t width;
    int act;                 /* mm_act(w), -1 when nothing is converted */
};

static struct in_step in_step(const struct lg_model_state *s, const struct lg_wmat *w,
                              const float *src, float *dst, const float *norm_w, bool norm,
                              int64_t width)
{
    return (struct in_step){w, src, dst, norm_w, norm, width, w ? mm_act(s, w) : -1};
}

static void in_row(const struct lg_model_state *s, const struct in_step *in, int64_t t, float eps)
{
    if (!in->w)
        return;
    const float *r = in->src + t * in->width;
    if (in->norm) {
        s->k->rmsnorm(in->dst + t * in->width, r, in->norm_w, in->width, eps);
        r = in->dst + t * in->width;
    }
    if (in->act >= 0)
        s->k->act_quantize(in->w->type, r, s->qx + (size_t)t * s->qx_stride, in->width);
}

struct in_ctx {
    const struct lg_model_state *s;
    struct in_step in;
    float eps;
};

static void in_rows_one(void *arg, int64_t t, int ith)
{
    const struct in_ctx *c = arg;
    (void)ith;
    in_row(c->s, &c->in, t, c->eps);
}

/* The rows of in, prepared for its product (a step of its own). Returns the format in s->qx. */
static int prep_rows(struct lg_model_state *s, const struct in_step *in, int64_t n, float eps)
{
    struct in_ctx c = {s, *in, eps};
    for_rows(s, n, in->width * (in->norm ? 3 : 1), in_rows_one, &c);
    return in->act;
}

/* Residual: o = rmsnorm(o; post_w), x += o, x *= out_scale; then the next product's input. */
struct res_ctx {
    const struct lg_model_state *s;
    float *o; /* [n][D] */
    const float *post_w;
    float out_scale;
    int64_t D;
    float eps;
    struct in_step next;
};

static void res_row(void *arg, int64_t t, int ith)
{
    const struct res_ctx *c = arg;
    const struct lg_kern *k = c->s->k;
    float *o = c->o + t * c->D, *x = c->s->x + t * c->D;
    (void)ith;
    k->rmsnorm(o, o, c->post_w, c->D, c->eps);
    k->axpy(x, o, 1.0f, c->D);
    if (c->out_scale != 1.0f)
        for (int64_t i = 0; i < c->D; i++)
            x[i] *= c->out_scale;
    in_row(c->s, &c->next, t, c->eps);
}

static int residual(struct lg_model_state *s, float *o, const float *post_w, float out_scale,
                    const struct in_step *next, int64_t n, int64_t D, float eps)
{
    struct res_ctx c = {s, o, post_w, out_scale, D, eps, *next};
    for_rows(s, n, 6 * D, res_row, &c);
    return next->act;
}

/* GLU: gelu(g) * m (m: the up projection, or the PLE input) as the next product's input:
 * converted straight into s->qx when it reads a quantized format (g itself then keeps the
 * gate values), else written to g. */
struct glu_ctx {
    const struct lg_model_state *s;
    float *g;       /* [n][F] */
    const float *m; /* [n] rows of ldm */
    int64_t ldm, F;
    float eps;
    struct in_step next;
};

static void glu_row(void *arg, int64_t t, int ith)
{
    const struct glu_ctx *c = arg;
    const struct lg_kern *k = c->s->k;
    float *g = c->g + t * c->F;
    (void)ith;
    if (c->next.act >= 0) {
        /* straight to the next product's format: g and m are read once, nothing written back
         * but the (4x smaller) converted row */
        k->glu_quantize(c->next.w->type, g, c->m + t * c->ldm,
                        c->s->qx + (size_t)t * c->s->qx_stride, c->F);
        return;
    }
    k->gelu_tanh(g, c->F);
    k->mul(g, g, c->m + t * c->ldm, c->F);
}

static int glu(struct lg_model_state *s, float *g, const float *m, int64_t ldm, int64_t F,
               const struct lg_wmat *next_w, int64_t n, float eps)
{
    struct glu_ctx c = {s, g, m, ldm, F, eps, in_step(s, next_w, g, NULL, NULL, false, F)};
    for_rows(s, n, 8 * F, glu_row, &c);
    return c.next.act;
}

enum { FW_MAX_SEG = 64, FW_MAX_ROWS = 512 };

struct attn_job {
    const struct lg_kern *k;
    const struct lg_attn_args *a; /* [n] */
    int n;
};

/* Segments write disjoint outputs: each thread does its share of every segment, no barrier. */
static void attn_run(void *arg, int ith, int nth)
{
    const struct attn_job *j = arg;
    for (int i = 0; i < j->n; i++)
        j->k->attention(&j->a[i], ith, nth);
}

/* rmsnorm of n_rows rows (stride apart) of width elements, shared out across the pool. */
struct norm_ctx {
    const struct lg_model_state *s;
    float *y;
    const float *x, *w;
    int64_t width, stride;
    float eps;
};

static void norm_row(void *arg, int64_t r, int ith)
{
    const struct norm_ctx *c = arg;
    (void)ith;
    c->s->k->rmsnorm(c->y + r * c->stride, c->x + r * c->stride, c->w, c->width, c->eps);
}

static void norm_rows(struct lg_model_state *s, float *y, const float *x, const float *w,
                      int64_t n_rows, int64_t width, int64_t stride, float eps)
{
    struct norm_ctx c = {s, y, x, w, width, stride, eps};
    for_rows(s, n_rows, 3 * width, norm_row, &c);
}

/* The tokens of one pass: segment i is n consecutive positions pos0.. of one sequence (its KV
 * cache kv), stored at rows t0..t0+n-1 of the chunk buffers. A plain forward is one segment. */
struct fw_seg {
    struct lg_kv *kv;
    int64_t t0, n, pos0;
};

struct fw_batch {
    const struct fw_seg *seg;
    const uint8_t *row_seg; /* [n] the segment of each row */
    int n_seg;
    int64_t n; /* rows in all */
};

/* After the Q/K/V products, row t (token at position pos): per-head q norm; when the layer
 * computes its own K/V: V = raw K when K==V, per-head k norm, RoPE on q and k (the angles of
 * the position computed once for both, in the thread's scratch), weightless v norm, and the
 * store into the cache in its storage types; else RoPE on q alone. */
struct qkv_ctx {
    const struct lg_model *m;
    const struct lg_model_state *s;
    const struct fw_batch *b;
    int32_t il;
    bool own_cs; /* cos/sin in the threads' dq scratch, inverse frequencies in s->cs (else
                  * everything in s->cs: one thread) */
};

static void qkv_row(void *arg, int64_t t, int ith)
{
    const struct qkv_ctx *cx = arg;
    const struct lg_model_state *s = cx->s;
    const struct lg_model_cfg *c = &cx->m->cfg;
    const struct lg_layer_cfg *lc = &c->layers[cx->il];
    const struct lg_layer_w *w = &cx->m->layers[cx->il];
    const struct lg_kern *k = s->k;
    const int64_t H = c->n_head, hd = lc->head_dim, Hkv = lc->n_head_kv;
    const struct fw_seg *g = &cx->b->seg[cx->b->row_seg[t]];
    const int64_t pos = g->pos0 + (t - g->t0);
    float *q = s->q + t * H * hd, *kk = s->kk + t * Hkv * hd, *vv = s->vv + t * Hkv * hd;
    float *cs = cx->own_cs ? s->dq + (int64_t)ith * s->dq_stride : s->cs;
    const bool own = lc->kv_src == cx->il;

    for (int64_t h = 0; h < H; h++)
        k->rmsnorm(q + h * hd, q + h * hd, w->q_norm, hd, c->eps);
    if (own) {
        if (!lc->has_v) /* K==V: V is the raw K projection (neither k-normed nor roped) */
            memcpy(vv, kk, (size_t)(Hkv * hd) * sizeof(float));
        for (int64_t h = 0; h < Hkv; h++)
            k->rmsnorm(kk + h * hd, kk + h * hd, w->k_norm, hd, c->eps);
    }
    const float *ff = lc->use_rope_freqs ? cx->m->rope_freqs : NULL;
    if (cx->own_cs) /* the layer's inverse frequencies are in s->cs */
        lg_rope_angles_inv(cs, lc->n_rot, pos, s->cs, lc->rope_freq_scale, ff);
    else
        lg_rope_angles(cs, lc->n_rot, pos, lc->rope_base, lc->rope_freq_scale, ff);
    k->rope_neox(q, H, hd, lc->n_rot, cs);
    if (own) {
        k->rope_neox(kk, Hkv, hd, lc->n_rot, cs);
        if (c->v_norm)
            for (int64_t h = 0; h < Hkv; h++)
                k->rmsnorm(vv + h * hd, vv + h * hd, NULL, hd, c->eps);
        /* converted to the cache's storage types; rows of a chunk hold distinct slots */
        lg_kv_store(g->kv, cx->il, pos, kk, vv);
    }
}

/* The attention block up to its output projection's input: s->a holds the normed input, in
 * s->qx in format `have` (-1: not converted). Leaves o = W_o attention. */
static void attention_block(const struct lg_model *m, struct lg_model_state *s, int32_t il,
                            const struct fw_batch *b, int have)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_cfg *lc = &c->layers[il];
    const struct lg_layer_w *w = &m->layers[il];
    const struct lg_kern *k = s->k;
    const int64_t D = c->n_embd, H = c->n_head, hd = lc->head_dim, Hkv = lc->n_head_kv;
    const int64_t QD = H * hd, KD = Hkv * hd, n = b->n;

    {
        /* Q, and K/V when this layer computes its own, in one job */
        const struct lg_wmat *ws[3] = {&w->wq, &w->wk, &w->wv};
        float *ys[3] = {s->q, s->kk, s->vv};
        const int64_t lds[3] = {QD, KD, KD};
        int cnt = lc->kv_src != il ? 1 : lc->has_v ? 3 : 2;
        mm_multi(s, s->a, D, n, cnt, ws, ys, lds, have);
    }
    {
        struct qkv_ctx qc = {m, s, b, il, lc->n_rot + 2 <= s->dq_stride};
        if (qc.own_cs)
            lg_rope_inv_freq(s->cs, lc->n_rot, lc->rope_base);
        /* per row: the norms (3 passes), RoPE (~6 ops per rotated element + the angles) */
        int64_t work = qc.own_cs ? 4 * (QD + 2 * KD) + 40 * lc->n_rot : 0;
        for_rows(s, n, work, qkv_row, &qc);
    }

    struct lg_attn_args aa[FW_MAX_SEG];
    for (int i = 0; i < b->n_seg; i++) {
        const struct fw_seg *g = &b->seg[i];
        aa[i] = (struct lg_attn_args){
            .q = s->q + g->t0 * QD,
            .out = s->att + g->t0 * QD,
            .k = lg_kv_k(g->kv, il),
            .v = lg_kv_v(g->kv, il),
            .type_k = lg_kv_type_k(g->kv),
            .type_v = lg_kv_type_v(g->kv),
            .k_stride = lg_kv_row_bytes_k(g->kv, il),
            .v_stride = lg_kv_row_bytes_v(g->kv, il),
            .n_tok = g->n,
            .n_head = H,
            .n_head_kv = Hkv,
            .head_dim = hd,
            .n_slots = lg_kv_n_slots(g->kv, il),
            .pos0 = g->pos0,
            .window = lc->sliding ? c->sliding_window : 0,
            .scale = lc->q_scale,
            .softcap = c->attn_softcap,
            .scratch = s->sc,
            .scratch_stride = s->sc_stride,
        };
    }
    struct attn_job aj = {k, aa, b->n_seg};
    lg_tp_run(s->pool, attn_run, &aj);

    mm(s, &w->wo, s->att, QD, s->o, D, n, -1);
}

/* f = W_down(gelu(W_gate a) * W_up a) for the dense MLP (a in s->qx as `have`). */
static void dense_mlp(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n,
                      int have)
{
    const struct lg_layer_w *w = &m->layers[il];
    const int64_t D = m->cfg.n_embd, F = m->cfg.layers[il].n_ff;
    const struct lg_wmat *ws[2] = {&w->ffn_gate, &w->ffn_up};
    float *ys[2] = {s->g, s->u};
    const int64_t lds[2] = {F, F};
    mm_multi(s, s->a, D, n, 2, ws, ys, lds, have);
    have = glu(s, s->g, s->u, F, F, &w->ffn_down, n, m->cfg.eps);
    mm(s, &w->ffn_down, s->g, F, s->f, D, n, have);
}

static struct lg_wmat expert_mat(const struct lg_wexp *e, int32_t i)
{
    struct lg_wmat w = e->mat;
    w.data = (const uint8_t *)e->mat.data + (size_t)i * e->expert_bytes;
    return w;
}

/* The MoE branch (spec §2.5): router on the residual, top-k experts, weighted sum into racc. */
static void moe_block(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_w *w = &m->layers[il];
    const struct lg_kern *k = s->k;
    const int64_t D = c->n_embd, X = c->n_expert, K = c->n_expert_used, Fe = c->n_ff_exp;

    /* Router input: weightless norm of the residual, x router scale, x D^-1/2. */
    const float rs = (float)(1.0 / sqrt((double)D));
    norm_rows(s, s->x2, s->x, NULL, n, D, D, c->eps);
    for (int64_t t = 0; t < n; t++) {
        float *r = s->x2 + t * D;
        for (int64_t i = 0; i < D; i++)
            r[i] = r[i] * (w->router_scale ? w->router_scale[i] : 1.0f) * rs;
    }
    mm(s, &w->router, s->x2, D, s->rl, X, n, -1);
    for (int64_t t = 0; t < n; t++) {
        float *p = s->rl + t * X;
        k->softmax(p, X);
        int32_t *sel = s->sel + t * K;
        float *sw = s->selw + t * K;
        double sum = 0.0;
        for (int64_t j = 0; j < K; j++) {
            int32_t best = -1;
            for (int32_t e = 0; e < X; e++) {
                bool taken = false;
                for (int64_t q = 0; q < j; q++)
                    taken |= sel[q] == e;
                if (!taken && (best < 0 || p[e] > p[best]))
                    best = e;
            }
            sel[j] = best;
            sw[j] = p[best];
            sum += p[best];
        }
        for (int64_t j = 0; j < K; j++) {
            sw[j] = (float)(sw[j] / sum);
            if (w->expert_scale)
                sw[j] *= w->expert_scale[sel[j]];
        }
    }

    /* Experts see pre_ffw_norm_2(h); batch the tokens routed to each expert. */
    norm_rows(s, s->x2, s->x, w->pre_ffw_norm_2, n, D, D, c->eps);
    memset(s->racc, 0, (size_t)(n * D) * sizeof(float));
    for (int32_t e = 0; e < X; e++) {
        int64_t ne = 0;
        for (int64_t t = 0; t < n; t++)
            for (int64_t j = 0; j < K; j++)
                if (s->sel[t * K + j] == e) {
                    s->etok[ne] = (int32_t)t;
                    s->ew[ne] = s->selw[t * K + j];
                    memcpy(s->ex + ne * D, s->x2 + t * D, (size_t)D * sizeof(float));
                    ne++;
                }
        if (!ne)
            continue;
        if (w->gate_up_exps.n_expert) {
            struct lg_wmat gu = expert_mat(&w->gate_up_exps, e);
            mm(s, &gu, s->ex, D, s->egu, 2 * Fe, ne, -1);
        } else {
            struct lg_wmat gm = expert_mat(&w->gate_exps, e), um = expert_mat(&w->up_exps, e);
            mm(s, &gm, s->ex, D, s->egu, 2 * Fe, ne, -1);
            mm(s, &um, s->ex, D, s->egu + Fe, 2 * Fe, ne, -1);
        }
        for (int64_t r = 0; r < ne; r++) {
            float *gp = s->egu + r * 2 * Fe;
            k->gelu_tanh(gp, Fe);
            k->mul(s->eh + r * Fe, gp, gp + Fe, Fe);
        }
        struct lg_wmat dm = expert_mat(&w->down_exps, e);
        mm(s, &dm, s->eh, Fe, s->ey, D, ne, -1);
        for (int64_t r = 0; r < ne; r++)
            k->axpy(s->racc + (int64_t)s->etok[r] * D, s->ey + r * D, s->ew[r], D);
    }
}

/* The input step of layer il's attention: a = attn_norm(x), converted for W_q. */
static struct in_step attn_in(const struct lg_model *m, const struct lg_model_state *s,
                              int32_t il)
{
    return in_step(s, &m->layers[il].wq, s->x, s->a, m->layers[il].attn_norm, true,
                   m->cfg.n_embd);
}

/* What follows layer il's FFN residual: the PLE gate's input (x itself), else the next
 * layer's attention input, else nothing. */
static struct in_step after_ffn(const struct lg_model *m, const struct lg_model_state *s,
                                int32_t il)
{
    if (m->cfg.n_embd_per_layer > 0)
        return in_step(s, &m->layers[il].inp_gate, s->x, NULL, NULL, false, m->cfg.n_embd);
    if (il + 1 < m->cfg.n_layer)
        return attn_in(m, s, il + 1);
    return in_step(s, NULL, NULL, NULL, NULL, false, m->cfg.n_embd);
}

/* The FFN block (a = ffn_norm(x) in s->qx as `have`) and its residual; returns the format of
 * what the residual step converted (see after_ffn). */
static int ffn_block(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n,
                     int have)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_w *w = &m->layers[il];
    const int64_t D = c->n_embd;

    dense_mlp(m, s, il, n, have);
    if (c->layers[il].has_moe) {
        norm_rows(s, s->f, s->f, w->post_ffw_norm_1, n, D, D, c->eps);
        moe_block(m, s, il, n);
        norm_rows(s, s->racc, s->racc, w->post_ffw_norm_2, n, D, D, c->eps);
        for (int64_t t = 0; t < n; t++)
            s->k->axpy(s->f + t * D, s->racc + t * D, 1.0f, D);
    }
    /* without PLE the layer ends here: its output scale */
    float sc = c->n_embd_per_layer > 0 ? 1.0f : w->out_scale;
    struct in_step next = after_ffn(m, s, il);
    return residual(s, s->f, w->post_ffw_norm, sc, &next, n, D, c->eps);
}

/* Per-layer inputs for the chunk (spec §2.2): pl[t][l*P..] = (ctx + tok) / sqrt 2. */
struct ple_ctx {
    const struct lg_model *m;
    const struct lg_model_state *s;
    const int32_t *tok;
};

static void ple_row(void *arg, int64_t t, int ith)
{
    const struct ple_ctx *cx = arg;
    const struct lg_model *m = cx->m;
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_model_state *s = cx->s;
    const int64_t D = c->n_embd, P = c->n_embd_per_layer, LP = (int64_t)c->n_layer * P;
    const float tok_scale = (float)sqrt((double)P);
    const float proj_scale = (float)(1.0 / sqrt((double)D));
    const float mix = (float)(1.0 / sqrt(2.0));
    float *pc = s->plc + t * LP, *pt = s->pl + t * LP;
    (void)ith;
    for (int64_t i = 0; i < LP; i++)
        pc[i] *= proj_scale;
    for (int32_t l = 0; l < c->n_layer; l++)
        s->k->rmsnorm(pc + l * P, pc + l * P, m->ple_norm, P, c->eps);
    lg_dequant_row((enum lg_qtype)m->ple_tok.type,
                   (const uint8_t *)m->ple_tok.data + (size_t)cx->tok[t] * m->ple_tok.row_bytes,
                   pt, LP);
    for (int64_t i = 0; i < LP; i++)
        pt[i] = (pc[i] + pt[i] * tok_scale) * mix;
}

static void ple_inputs(const struct lg_model *m, struct lg_model_state *s, const int32_t *tok,
                       int64_t n, int have)
{
    const struct lg_model_cfg *c = &m->cfg;
    const int64_t D = c->n_embd, LP = (int64_t)c->n_layer * c->n_embd_per_layer;
    mm(s, &m->ple_proj, s->x, D, s->plc, LP, n, have);
    struct ple_ctx pc = {m, s, tok};
    for_rows(s, n, 6 * LP, ple_row, &pc);
}

/* PLE injection after the FFN (spec §2.6; x in s->qx as `have`), then the layer's output scale
 * and the next layer's attention input. Returns the latter's format. */
static int ple_block(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n,
                     int have)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_w *w = &m->layers[il];
    const int64_t D = c->n_embd, P = c->n_embd_per_layer, LP = (int64_t)c->n_layer * P;
    mm(s, &w->inp_gate, s->x, D, s->g, P, n, have);
    have = glu(s, s->g, s->pl + (int64_t)il * P, LP, P, &w->proj, n, c->eps);
    mm(s, &w->proj, s->g, P, s->o, D, n, have);
    struct in_step next = il + 1 < c->n_layer ? attn_in(m, s, il + 1)
                                               : in_step(s, NULL, NULL, NULL, NULL, false, D);
    return residual(s, s->o, w->post_norm, w->out_scale, &next, n, D, c->eps);
}

/* The token embeddings, scaled; then the first product's input (the PLE projection reads x
 * itself; else layer 0's attention input). */
struct embd_ctx {
    const struct lg_model *m;
    const struct lg_model_state *s;
    const int32_t *tok;
    struct in_step next;
};

static void embd_row(void *arg, int64_t t, int ith)
{
    const struct embd_ctx *cx = arg;
    const struct lg_model *m = cx->m;
    const int64_t D = m->cfg.n_embd;
    float *xt = cx->s->x + t * D;
    (void)ith;
    lg_dequant_row((enum lg_qtype)m->tok_embd.type,
                   (const uint8_t *)m->tok_embd.data + (size_t)cx->tok[t] * m->tok_embd.row_bytes,
                   xt, D);
    for (int64_t i = 0; i < D; i++)
        xt[i] *= m->cfg.embd_scale;
    in_row(cx->s, &cx->next, t, m->cfg.eps);
}

/* One pass over b->n rows (b->n <= s->n_chunk). Logits: rows lrow[0..n_lrow) (increasing)
 * are written to ldst[i] ([n_vocab] each); runs of rows whose destinations are adjacent go
 * through the output matrix together. */
static void run_chunk(const struct lg_model *m, struct lg_model_state *s, const int32_t *tok,
                      const struct fw_batch *b, const int64_t *lrow, float *const *ldst,
                      int64_t n_lrow)
{
    const struct lg_model_cfg *c = &m->cfg;
    const int64_t D = c->n_embd, V = c->n_vocab, n = b->n;
    const bool ple = c->n_embd_per_layer > 0;

    struct embd_ctx ec = {m, s, tok,
                          ple ? in_step(s, &m->ple_proj, s->x, NULL, NULL, false, D)
                              : attn_in(m, s, 0)};
    for_rows(s, n, 4 * D, embd_row, &ec);
    int have = ec.next.act;
    if (ple) {
        ple_inputs(m, s, tok, n, have);
        struct in_step in = attn_in(m, s, 0);
        have = prep_rows(s, &in, n, c->eps);
    }

    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_w *w = &m->layers[il];
        attention_block(m, s, il, b, have);
        struct in_step next = in_step(s, &w->ffn_gate, s->x, s->a, w->ffn_norm, true, D);
        have = residual(s, s->o, w->post_attn_norm, 1.0f, &next, n, D, c->eps);
        have = ffn_block(m, s, il, n, have);
        if (ple)
            have = ple_block(m, s, il, n, have);
    }

    if (n_lrow == 0)
        return;
    for (int64_t i = 0; i < n_lrow; i++)
        s->k->rmsnorm(s->a + i * D, s->x + lrow[i] * D, m->output_norm, D, c->eps);
    for (int64_t i = 0; i < n_lrow;) {
        int64_t j = i + 1;
        while (j < n_lrow && ldst[j] == ldst[j - 1] + V)
            j++;
        mm(s, &m->output, s->a + i * D, D, ldst[i], V, j - i, -1);
        if (c->final_softcap > 0.0f)
            for (int64_t r = i; r < j; r++)
                s->k->softcap(ldst[r], V, c->final_softcap);
        i = j;
    }
}

static enum lg_status check_tokens(const struct lg_model *m, const int32_t *tokens, int64_t n,
                                   struct lg_err *err)
{
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.n_vocab)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "token %lld: id %d out of range [0, %d)",
                              (long long)i, (int)tokens[i], (int)m->cfg.n_vocab);
    return LG_OK;
}

enum lg_status lg_model_forward_batch(const struct lg_model *m, struct lg_model_state *work,
                                      struct lg_batch_seg *seg, int n_seg, int *i_failed,
                                      struct lg_err *err)
{
    enum lg_status st;
    if (i_failed)
        *i_failed = -1;
    if (n_seg <= 0 || !seg || !work)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "forward: empty batch");
    if (work->kv_only)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "forward: a KV-only state cannot run a "
                          "pass (it has no activation buffers)");
    for (int i = 0; i < n_seg; i++) {
        const struct lg_batch_seg *g = &seg[i];
        if (i_failed)
            *i_failed = i;
        if (!g->state || g->n_tok <= 0 || !g->tokens ||
            (g->mode != LG_LOGITS_NONE && !g->logits))
            return lg_err_set(err, LG_ERR_INVALID_ARG, "forward: segment %d: bad arguments", i);
        if ((st = check_tokens(m, g->tokens, g->n_tok, err)))
            return st;
        struct lg_kv *kv = g->state->kv;
        int64_t pos0 = lg_kv_n_pos(kv);
        if (g->n_tok > lg_kv_n_ctx(kv) - pos0)
            return lg_err_set(err, LG_ERR_CONTEXT, "%lld tokens at position %lld exceed the "
                              "context of %lld", (long long)g->n_tok, (long long)pos0,
                              (long long)lg_kv_n_ctx(kv));
        if (lg_kv_n_ctx(kv) > work->n_ctx)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "forward: segment %d: context %lld "
                              "exceeds the work state's %lld", i, (long long)lg_kv_n_ctx(kv),
                              (long long)work->n_ctx);
        for (int j = 0; j < i; j++)
            if (seg[j].state->kv == kv)
                return lg_err_set(err, LG_ERR_INVALID_ARG, "forward: segments %d and %d share "
                                  "a cache", j, i);
    }
    if (i_failed)
        *i_failed = -1;

    /* Fill sub-batches of at most C rows (capped at FW_MAX_ROWS) and FW_MAX_SEG segments; a segment is cut into parts
     * of at most its own cache's chunk size (the sliding rings are sized for that). */
    const int64_t C = work->n_chunk < FW_MAX_ROWS ? work->n_chunk : FW_MAX_ROWS;
    const int64_t V = m->cfg.n_vocab;
    struct fw_seg fs[FW_MAX_SEG];
    int32_t tok[FW_MAX_ROWS];
    uint8_t row_seg[FW_MAX_ROWS];
    int64_t lrow[FW_MAX_ROWS];
    float *ldst[FW_MAX_ROWS];
    int i = 0;
    int64_t done = 0; /* tokens of seg[i] already run */
    while (i < n_seg) {
        int nf = 0;
        int64_t rows = 0, n_l = 0;
        while (i < n_seg && rows < C && nf < FW_MAX_SEG) {
            struct lg_batch_seg *g = &seg[i];
            struct lg_kv *kv = g->state->kv;
            int64_t part = g->n_tok - done, room = C - rows;
            int64_t kc = lg_kv_n_chunk(kv);
            if (part > room)
                part = room;
            if (part > kc)
                part = kc;
            fs[nf] = (struct fw_seg){kv, rows, part, lg_kv_n_pos(kv)};
            memcpy(tok + rows, g->tokens + done, (size_t)part * sizeof *tok);
            memset(row_seg + rows, nf, (size_t)part);
            bool end = done + part == g->n_tok;
            if (g->mode == LG_LOGITS_ALL) {
                for (int64_t t = 0; t < part; t++) {
                    lrow[n_l] = rows + t;
                    ldst[n_l++] = g->logits + (done + t) * V;
                }
            } else if (g->mode == LG_LOGITS_LAST && end) {
                lrow[n_l] = rows + part - 1;
                ldst[n_l++] = g->logits;
            }
            rows += part;
            nf++;
            done += part;
            if (end) {
                i++;
                done = 0;
            } else if (part == kc) {
                break; /* the rest of this segment goes into the next sub-batch */
            }
        }
        struct fw_batch b = {fs, row_seg, nf, rows};
        run_chunk(m, work, tok, &b, lrow, ldst, n_l);
        for (int f = 0; f < nf; f++)
            lg_kv_advance(fs[f].kv, fs[f].n);
    }
    return LG_OK;
}

enum lg_status lg_model_forward(const struct lg_model *m, struct lg_model_state *s,
                                const int32_t *tokens, int64_t n_tok, enum lg_logits_mode mode,
                                float *logits, struct lg_err *err)
{
    if (n_tok <= 0 || !tokens || (mode != LG_LOGITS_NONE && !logits))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "forward: bad arguments");
    struct lg_batch_seg g = {s, tokens, n_tok, mode, logits};
    return lg_model_forward_batch(m, s, &g, 1, NULL, err);
}
