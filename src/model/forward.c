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

enum { MM_MAX = 3, MM_ALIGN = 8 };

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

/* y_i[t] = W_i x[t] for i < count over the chunk: the input is converted once per activation
 * format (in s->qx, one format at a time, so products of different formats run as separate
 * jobs), rows are shared out across the pool. */
static void mm_multi(struct lg_model_state *s, const float *x, int64_t ldx, int64_t n, int count,
                     const struct lg_wmat *const *ws, float *const *ys, const int64_t *ldys)
{
    struct mm_job j;
    memset(&j, 0, sizeof j);
    j.s = s;
    j.x = x;
    j.ldx = ldx;
    j.n = n;
    int cur_act = -2;
    for (int i = 0; i < count; i++) {
        const struct lg_wmat *w = ws[i];
        int act = s->k->vec_dot[w->type] ? lg_act_type(w->type) : -1;
        if (act >= 0 && act != LG_QTYPE_F32 && act != cur_act && cur_act != -2 &&
            j.count > 0) {
            /* s->qx holds another format: flush what we have first */
            mm_multi(s, x, ldx, n, j.count, j.w, j.y, j.ldy);
            memset(&j, 0, sizeof j);
            j.s = s;
            j.x = x;
            j.ldx = ldx;
            j.n = n;
            cur_act = -2;
        }
        int c = j.count++;
        j.w[c] = w;
        j.y[c] = ys[i];
        j.ldy[c] = ldys[i];
        if (act == LG_QTYPE_F32) {
            j.qx[c] = x;
            j.ldq[c] = (size_t)ldx * sizeof(float);
        } else if (act >= 0) {
            if (cur_act != act) {
                quant_rows(s, w, x, ldx, n);
                cur_act = act;
            }
            j.qx[c] = s->qx;
            j.ldq[c] = s->qx_stride;
        }
        j.row0[c + 1] = j.row0[c] + (w->rows + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN;
    }
    int64_t total = j.row0[j.count];
    /* ~8 chunks per thread balance a loaded machine; at least 16 rows keep dot4 blocks; a
     * multiple of MM_ALIGN keeps every chunk on the GEMM's 8-row groups. */
    int64_t step = total / ((int64_t)s->nth * 8);
    j.step = step < 16 ? 16 : (step + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN;
    atomic_store(&j.next, 0);
    if (total * ws[0]->cols * n < 32768 || s->nth == 1) /* not worth waking the workers */
        mm_rows(&j, 0, total, 0);
    else
        lg_tp_run(s->pool, mm_run, &j);
}

/* y[t] = W x[t] over the chunk. */
static void mm(struct lg_model_state *s, const struct lg_wmat *w, const float *x, int64_t ldx,
               float *y, int64_t ldy, int64_t n)
{
    mm_multi(s, x, ldx, n, 1, &w, &y, &ldy);
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

static void norm_rows(const struct lg_model_state *s, float *y, const float *x, const float *w,
                      int64_t n_rows, int64_t width, int64_t stride, float eps)
{
    for (int64_t r = 0; r < n_rows; r++)
        s->k->rmsnorm(y + r * stride, x + r * stride, w, width, eps);
}

/* The tokens of one pass: segment i is n consecutive positions pos0.. of one sequence (its KV
 * cache kv), stored at rows t0..t0+n-1 of the chunk buffers. A plain forward is one segment. */
struct fw_seg {
    struct lg_kv *kv;
    int64_t t0, n, pos0;
};

struct fw_batch {
    const struct fw_seg *seg;
    int n_seg;
    int64_t n; /* rows in all */
};

/* RoPE on the rows of q ([n][n_head * head_dim]) and, when kk is not NULL, of kk
 * ([n][n_head_kv * head_dim]): the angles of a position are computed once for both. */
static void rope_rows(const struct lg_model *m, const struct lg_model_state *s,
                      const struct lg_layer_cfg *lc, float *q, float *kk,
                      const struct fw_batch *b, int64_t n_head)
{
    const float *ff = lc->use_rope_freqs ? m->rope_freqs : NULL;
    const int64_t hd = lc->head_dim, QD = n_head * hd, KD = lc->n_head_kv * hd;
    for (int i = 0; i < b->n_seg; i++) {
        const struct fw_seg *g = &b->seg[i];
        for (int64_t t = 0; t < g->n; t++) {
            lg_rope_angles(s->cs, lc->n_rot, g->pos0 + t, lc->rope_base, lc->rope_freq_scale,
                           ff);
            s->k->rope_neox(q + (g->t0 + t) * QD, n_head, hd, lc->n_rot, s->cs);
            if (kk)
                s->k->rope_neox(kk + (g->t0 + t) * KD, lc->n_head_kv, hd, lc->n_rot, s->cs);
        }
    }
}

static void attention_block(const struct lg_model *m, struct lg_model_state *s, int32_t il,
                            const struct fw_batch *b)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_cfg *lc = &c->layers[il];
    const struct lg_layer_w *w = &m->layers[il];
    const struct lg_kern *k = s->k;
    const int64_t D = c->n_embd, H = c->n_head, hd = lc->head_dim, Hkv = lc->n_head_kv;
    const int64_t QD = H * hd, KD = Hkv * hd, n = b->n;

    norm_rows(s, s->a, s->x, w->attn_norm, n, D, D, c->eps);
    {
        /* Q, and K/V when this layer computes its own, in one job */
        const struct lg_wmat *ws[3] = {&w->wq, &w->wk, &w->wv};
        float *ys[3] = {s->q, s->kk, s->vv};
        const int64_t lds[3] = {QD, KD, KD};
        int cnt = lc->kv_src != il ? 1 : lc->has_v ? 3 : 2;
        mm_multi(s, s->a, D, n, cnt, ws, ys, lds);
    }
    norm_rows(s, s->q, s->q, w->q_norm, n * H, hd, hd, c->eps);
    if (lc->kv_src != il) {
        rope_rows(m, s, lc, s->q, NULL, b, H);
    } else {
        if (!lc->has_v) /* K==V: V is the raw K projection (neither k-normed nor roped) */
            memcpy(s->vv, s->kk, (size_t)(n * KD) * sizeof(float));
        norm_rows(s, s->kk, s->kk, w->k_norm, n * Hkv, hd, hd, c->eps);
        rope_rows(m, s, lc, s->q, s->kk, b, H);
        if (c->v_norm)
            norm_rows(s, s->vv, s->vv, NULL, n * Hkv, hd, hd, c->eps);
        for (int i = 0; i < b->n_seg; i++) {
            const struct fw_seg *g = &b->seg[i];
            for (int64_t t = 0; t < g->n; t++) /* converted to the cache's storage types */
                lg_kv_store(g->kv, il, g->pos0 + t, s->kk + (g->t0 + t) * KD,
                            s->vv + (g->t0 + t) * KD);
        }
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

    mm(s, &w->wo, s->att, QD, s->o, D, n);
    norm_rows(s, s->o, s->o, w->post_attn_norm, n, D, D, c->eps);
    for (int64_t t = 0; t < n; t++)
        k->axpy(s->x + t * D, s->o + t * D, 1.0f, D);
}

/* g[t] = gelu(g[t]) * u[t] for rows t < n of F elements, rows shared out across threads. */
struct glu_job {
    const struct lg_kern *k;
    float *g;       /* [n][F] */
    const float *u; /* [n][F] */
    int64_t n, F;
};

static void glu_run(void *arg, int ith, int nth)
{
    const struct glu_job *j = arg;
    for (int64_t t = j->n * ith / nth; t < j->n * (ith + 1) / nth; t++) {
        /* a row at a time: it stays in cache from the gelu to the mul */
        j->k->gelu_tanh(j->g + t * j->F, j->F);
        j->k->mul(j->g + t * j->F, j->g + t * j->F, j->u + t * j->F, j->F);
    }
}

/* f = W_down(gelu(W_gate a) * W_up a) for the dense MLP. */
static void dense_mlp(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n)
{
    const struct lg_layer_w *w = &m->layers[il];
    const int64_t D = m->cfg.n_embd, F = m->cfg.layers[il].n_ff;
    const struct lg_wmat *ws[2] = {&w->ffn_gate, &w->ffn_up};
    float *ys[2] = {s->g, s->u};
    const int64_t lds[2] = {F, F};
    mm_multi(s, s->a, D, n, 2, ws, ys, lds);
    struct glu_job gj = {s->k, s->g, s->u, n, F};
    if (n * F >= 32768 && s->nth > 1)
        lg_tp_run(s->pool, glu_run, &gj);
    else
        glu_run(&gj, 0, 1);
    mm(s, &w->ffn_down, s->g, F, s->f, D, n);
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
    mm(s, &w->router, s->x2, D, s->rl, X, n);
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
            mm(s, &gu, s->ex, D, s->egu, 2 * Fe, ne);
            for (int64_t r = 0; r < ne; r++) {
                float *gp = s->egu + r * 2 * Fe;
                k->gelu_tanh(gp, Fe);
                k->mul(s->eh + r * Fe, gp, gp + Fe, Fe);
            }
        } else {
            struct lg_wmat gm = expert_mat(&w->gate_exps, e), um = expert_mat(&w->up_exps, e);
            mm(s, &gm, s->ex, D, s->egu, 2 * Fe, ne);
            mm(s, &um, s->ex, D, s->egu + Fe, 2 * Fe, ne);
            for (int64_t r = 0; r < ne; r++) {
                float *gp = s->egu + r * 2 * Fe;
                k->gelu_tanh(gp, Fe);
                k->mul(s->eh + r * Fe, gp, gp + Fe, Fe);
            }
        }
        struct lg_wmat dm = expert_mat(&w->down_exps, e);
        mm(s, &dm, s->eh, Fe, s->ey, D, ne);
        for (int64_t r = 0; r < ne; r++)
            k->axpy(s->racc + (int64_t)s->etok[r] * D, s->ey + r * D, s->ew[r], D);
    }
}

static void ffn_block(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_w *w = &m->layers[il];
    const int64_t D = c->n_embd;

    norm_rows(s, s->a, s->x, w->ffn_norm, n, D, D, c->eps);
    dense_mlp(m, s, il, n);
    if (c->layers[il].has_moe) {
        norm_rows(s, s->f, s->f, w->post_ffw_norm_1, n, D, D, c->eps);
        moe_block(m, s, il, n);
        norm_rows(s, s->racc, s->racc, w->post_ffw_norm_2, n, D, D, c->eps);
        for (int64_t t = 0; t < n; t++)
            s->k->axpy(s->f + t * D, s->racc + t * D, 1.0f, D);
    }
    norm_rows(s, s->f, s->f, w->post_ffw_norm, n, D, D, c->eps);
    for (int64_t t = 0; t < n; t++)
        s->k->axpy(s->x + t * D, s->f + t * D, 1.0f, D);
}

/* Per-layer inputs for the chunk (spec §2.2): pl[t][l*P..] = (ctx + tok) / sqrt 2. */
static void ple_inputs(const struct lg_model *m, struct lg_model_state *s, const int32_t *tok,
                       int64_t n)
{
    const struct lg_model_cfg *c = &m->cfg;
    const int64_t D = c->n_embd, P = c->n_embd_per_layer, LP = (int64_t)c->n_layer * P;
    const float tok_scale = (float)sqrt((double)P);
    const float proj_scale = (float)(1.0 / sqrt((double)D));
    const float mix = (float)(1.0 / sqrt(2.0));
    mm(s, &m->ple_proj, s->x, D, s->plc, LP, n);
    for (int64_t t = 0; t < n; t++) {
        float *pc = s->plc + t * LP, *pt = s->pl + t * LP;
        for (int64_t i = 0; i < LP; i++)
            pc[i] *= proj_scale;
        norm_rows(s, pc, pc, m->ple_norm, c->n_layer, P, P, c->eps);
        lg_dequant_row((enum lg_qtype)m->ple_tok.type,
                       (const uint8_t *)m->ple_tok.data + (size_t)tok[t] * m->ple_tok.row_bytes,
                       pt, LP);
        for (int64_t i = 0; i < LP; i++)
            pt[i] = (pc[i] + pt[i] * tok_scale) * mix;
    }
}

/* PLE injection after the FFN (spec §2.6). */
static void ple_block(const struct lg_model *m, struct lg_model_state *s, int32_t il, int64_t n)
{
    const struct lg_model_cfg *c = &m->cfg;
    const struct lg_layer_w *w = &m->layers[il];
    const int64_t D = c->n_embd, P = c->n_embd_per_layer, LP = (int64_t)c->n_layer * P;
    mm(s, &w->inp_gate, s->x, D, s->g, P, n);
    s->k->gelu_tanh(s->g, n * P);
    for (int64_t t = 0; t < n; t++)
        s->k->mul(s->g + t * P, s->g + t * P, s->pl + t * LP + (int64_t)il * P, P);
    mm(s, &w->proj, s->g, P, s->o, D, n);
    norm_rows(s, s->o, s->o, w->post_norm, n, D, D, c->eps);
    for (int64_t t = 0; t < n; t++)
        s->k->axpy(s->x + t * D, s->o + t * D, 1.0f, D);
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

    for (int64_t t = 0; t < n; t++) {
        float *xt = s->x + t * D;
        lg_dequant_row((enum lg_qtype)m->tok_embd.type,
                       (const uint8_t *)m->tok_embd.data + (size_t)tok[t] * m->tok_embd.row_bytes,
                       xt, D);
        for (int64_t i = 0; i < D; i++)
            xt[i] *= c->embd_scale;
    }
    if (c->n_embd_per_layer > 0)
        ple_inputs(m, s, tok, n);

    for (int32_t il = 0; il < c->n_layer; il++) {
        attention_block(m, s, il, b);
        ffn_block(m, s, il, n);
        if (c->n_embd_per_layer > 0)
            ple_block(m, s, il, n);
        float sc = m->layers[il].out_scale;
        if (sc != 1.0f)
            for (int64_t i = 0; i < n * D; i++)
                s->x[i] *= sc;
    }

    if (n_lrow == 0)
        return;
    for (int64_t i = 0; i < n_lrow; i++)
        s->k->rmsnorm(s->a + i * D, s->x + lrow[i] * D, m->output_norm, D, c->eps);
    for (int64_t i = 0; i < n_lrow;) {
        int64_t j = i + 1;
        while (j < n_lrow && ldst[j] == ldst[j - 1] + V)
            j++;
        mm(s, &m->output, s->a + i * D, D, ldst[i], V, j - i);
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
        struct fw_batch b = {fs, nf, rows};
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
