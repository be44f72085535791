/* model.c: binds GGUF tensors to a struct lg_model by llama.cpp's names, with shape checks.
 *
 * Matrices stay in the mapping (struct lg_wmat) or, after binding, get an R8 copy
 * (model/repack.c); 1-D tensors (norms, scales, rope_freqs) are
 * dequantized once into an arena so the forward pass reads plain f32. A tensor that is
 * required and absent, or present with another shape, is refused with its name and shapes.
 * Optional tensors: attn_k/attn_v/attn_k_norm on KV-shared layers (ignored), attn_v on K==V
 * layers, rope_freqs, layer_output_scale, output (tied embeddings), ffn_gate_inp.scale,
 * ffn_down_exps.scale, and fused vs split expert gate/up tensors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/err.h"
#include "model/model.h"
#include "quant/quant.h"

struct binder {
    struct lg_model *m;
    struct lg_arena *arena;
    size_t max_cols;
};

static void ne_str(char *buf, size_t n, const struct lg_gguf_tensor *t)
{
    snprintf(buf, n, "[%llu, %llu, %llu]", (unsigned long long)t->ne[0],
             (unsigned long long)t->ne[1], (unsigned long long)t->ne[2]);
}

/* Finds a tensor and checks ne == (ne0, ne1, ne2) (unused dims 1) and the type. */
static enum lg_status find_checked(const struct lg_model *m, const char *name, int64_t ne0,
                                   int64_t ne1, int64_t ne2, bool required,
                                   const struct lg_gguf_tensor **out, struct lg_err *err)
{
    *out = NULL;
    const struct lg_gguf_tensor *t = lg_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "missing tensor %s", name);
        return LG_OK;
    }
    if ((int64_t)t->ne[0] != ne0 || (int64_t)t->ne[1] != ne1 || (int64_t)t->ne[2] != ne2 ||
        t->ne[3] != 1) {
        char got[96];
        ne_str(got, sizeof got, t);
        return lg_err_set(err, LG_ERR_FORMAT, "tensor %s: shape %s, expected [%lld, %lld, %lld]",
                          name, got, (long long)ne0, (long long)ne1, (long long)ne2);
    }
    const struct lg_qtype_info *qi = lg_qtype_get(t->type);
    if (!qi || !qi->can_dequant)
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "tensor %s: type %s is not supported", name,
                          qi ? qi->name : "unknown");
    uint64_t rb;
    if (lg_qtype_row_bytes(t->type, (uint64_t)ne0, &rb) != LG_OK)
        return lg_err_set(err, LG_ERR_FORMAT, "tensor %s: row of %lld is not a whole number of "
                          "%s blocks", name, (long long)ne0, qi->name);
    if (rb * (uint64_t)ne1 * (uint64_t)ne2 > t->nbytes)
        return lg_err_set(err, LG_ERR_FORMAT, "tensor %s: data is %llu bytes, want %llu", name,
                          (unsigned long long)t->nbytes,
                          (unsigned long long)(rb * (uint64_t)ne1 * (uint64_t)ne2));
    *out = t;
    return LG_OK;
}

static enum lg_status bind_mat(struct binder *b, const char *name, int64_t cols, int64_t rows,
                               bool required, struct lg_wmat *w, struct lg_err *err)
{
    const struct lg_gguf_tensor *t;
    memset(w, 0, sizeof *w);
    enum lg_status st = find_checked(b->m, name, cols, rows, 1, required, &t, err);
    if (st != LG_OK || !t)
        return st;
    uint64_t rb;
    lg_qtype_row_bytes(t->type, (uint64_t)cols, &rb);
    w->type = t->type;
    w->data = t->data;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = (size_t)rb;
    if ((size_t)cols > b->max_cols)
        b->max_cols = (size_t)cols;
    return LG_OK;
}

static enum lg_status bind_exp(struct binder *b, const char *name, int64_t cols, int64_t rows,
                               int64_t n_exp, bool required, struct lg_wexp *w,
                               struct lg_err *err)
{
    const struct lg_gguf_tensor *t;
    memset(w, 0, sizeof *w);
    enum lg_status st = find_checked(b->m, name, cols, rows, n_exp, required, &t, err);
    if (st != LG_OK || !t)
        return st;
    uint64_t rb;
    lg_qtype_row_bytes(t->type, (uint64_t)cols, &rb);
    w->mat.type = t->type;
    w->mat.data = t->data;
    w->mat.rows = rows;
    w->mat.cols = cols;
    w->mat.row_bytes = (size_t)rb;
    w->expert_bytes = (size_t)rb * (size_t)rows;
    w->n_expert = (int32_t)n_exp;
    if ((size_t)cols > b->max_cols)
        b->max_cols = (size_t)cols;
    return LG_OK;
}

/* A 1-D tensor of n elements, copied to f32. *out stays NULL when optional and absent. */
static enum lg_status bind_vec(struct binder *b, const char *name, int64_t n, bool required,
                               const float **out, struct lg_err *err)
{
    const struct lg_gguf_tensor *t;
    *out = NULL;
    enum lg_status st = find_checked(b->m, name, n, 1, 1, required, &t, err);
    if (st != LG_OK || !t)
        return st;
    float *dst = lg_arena_calloc(b->arena, (size_t)n, sizeof(float));
    if (!dst)
        return lg_err_set(err, LG_ERR_NOMEM, "tensor %s: out of memory", name);
    lg_dequant_row((enum lg_qtype)t->type, t->data, dst, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return lg_err_set(err, LG_ERR_FORMAT, "tensor %s: element %lld is not finite", name,
                              (long long)i);
    *out = dst;
    return LG_OK;
}

#define TN(buf, il, suffix) (snprintf((buf), sizeof(buf), "blk.%d." suffix, (int)(il)), (buf))

static enum lg_status bind_layer(struct binder *b, int32_t il, struct lg_err *err)
{
    struct lg_model *m = b->m;
    struct lg_model_cfg *c = &m->cfg;
    struct lg_layer_cfg *lc = &c->layers[il];
    struct lg_layer_w *w = &m->layers[il];
    const int64_t D = c->n_embd, H = c->n_head, hd = lc->head_dim, Hkv = lc->n_head_kv;
    const int64_t F = lc->n_ff;
    const bool owns = lc->kv_src == il;
    char n[96];
    enum lg_status st;

#define TRY(x)                                                                                 \
    do {                                                                                       \
        if ((st = (x)) != LG_OK)                                                               \
            return st;                                                                         \
    } while (0)

    TRY(bind_vec(b, TN(n, il, "attn_norm.weight"), D, true, &w->attn_norm, err));
    TRY(bind_mat(b, TN(n, il, "attn_q.weight"), D, H * hd, true, &w->wq, err));
    TRY(bind_mat(b, TN(n, il, "attn_output.weight"), H * hd, D, true, &w->wo, err));
    TRY(bind_vec(b, TN(n, il, "attn_q_norm.weight"), hd, true, &w->q_norm, err));
    if (owns) {
        TRY(bind_mat(b, TN(n, il, "attn_k.weight"), D, Hkv * hd, true, &w->wk, err));
        TRY(bind_vec(b, TN(n, il, "attn_k_norm.weight"), hd, true, &w->k_norm, err));
        /* V may be absent only where the architecture allows K==V (Gemma 4: v_norm). */
        TRY(bind_mat(b, TN(n, il, "attn_v.weight"), D, Hkv * hd, !c->v_norm, &w->wv, err));
        lc->has_v = w->wv.data != NULL;
    } else {
        lc->has_v = false; /* shared layers never use their own K/V weights */
    }
    TRY(bind_vec(b, TN(n, il, "post_attention_norm.weight"), D, true, &w->post_attn_norm, err));
    TRY(bind_vec(b, TN(n, il, "ffn_norm.weight"), D, true, &w->ffn_norm, err));
    TRY(bind_mat(b, TN(n, il, "ffn_gate.weight"), D, F, true, &w->ffn_gate, err));
    TRY(bind_mat(b, TN(n, il, "ffn_up.weight"), D, F, true, &w->ffn_up, err));
    TRY(bind_mat(b, TN(n, il, "ffn_down.weight"), F, D, true, &w->ffn_down, err));
    TRY(bind_vec(b, TN(n, il, "post_ffw_norm.weight"), D, true, &w->post_ffw_norm, err));

    const float *os;
    TRY(bind_vec(b, TN(n, il, "layer_output_scale.weight"), 1, false, &os, err));
    w->out_scale = os ? os[0] : 1.0f;

    if (c->n_embd_per_layer > 0) {
        const int64_t P = c->n_embd_per_layer;
        TRY(bind_mat(b, TN(n, il, "inp_gate.weight"), D, P, true, &w->inp_gate, err));
        TRY(bind_mat(b, TN(n, il, "proj.weight"), P, D, true, &w->proj, err));
        TRY(bind_vec(b, TN(n, il, "post_norm.weight"), D, true, &w->post_norm, err));
    }

    if (lc->has_moe) {
        const int64_t X = c->n_expert, Fe = c->n_ff_exp;
        TRY(bind_mat(b, TN(n, il, "ffn_gate_inp.weight"), D, X, true, &w->router, err));
        TRY(bind_vec(b, TN(n, il, "ffn_gate_inp.scale"), D, false, &w->router_scale, err));
        TRY(bind_vec(b, TN(n, il, "pre_ffw_norm_2.weight"), D, true, &w->pre_ffw_norm_2, err));
        TRY(bind_vec(b, TN(n, il, "post_ffw_norm_1.weight"), D, true, &w->post_ffw_norm_1, err));
        TRY(bind_vec(b, TN(n, il, "post_ffw_norm_2.weight"), D, true, &w->post_ffw_norm_2, err));
        TRY(bind_exp(b, TN(n, il, "ffn_gate_up_exps.weight"), D, 2 * Fe, X, false,
                     &w->gate_up_exps, err));
        if (!w->gate_up_exps.n_expert) {
            TRY(bind_exp(b, TN(n, il, "ffn_gate_exps.weight"), D, Fe, X, false, &w->gate_exps,
                         err));
            if (!w->gate_exps.n_expert)
                return lg_err_set(err, LG_ERR_NOT_FOUND, "missing tensor blk.%d.ffn_gate_up_exps"
                                  ".weight (or ffn_gate_exps + ffn_up_exps)", (int)il);
            TRY(bind_exp(b, TN(n, il, "ffn_up_exps.weight"), D, Fe, X, true, &w->up_exps, err));
        }
        TRY(bind_exp(b, TN(n, il, "ffn_down_exps.weight"), Fe, D, X, true, &w->down_exps, err));
        TRY(bind_vec(b, TN(n, il, "ffn_down_exps.scale"), X, false, &w->expert_scale, err));
    }
#undef TRY
    return LG_OK;
}

static enum lg_status bind_all(struct binder *b, struct lg_err *err)
{
    struct lg_model *m = b->m;
    struct lg_model_cfg *c = &m->cfg;
    const int64_t D = c->n_embd;
    enum lg_status st;

    const struct lg_gguf_tensor *te = lg_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "missing tensor token_embd.weight");
    if (te->ne[1] < 1 || te->ne[1] > ((uint64_t)1 << 24))
        return lg_err_set(err, LG_ERR_FORMAT, "tensor token_embd.weight: %llu rows",
                          (unsigned long long)te->ne[1]);
    c->n_vocab = (int32_t)te->ne[1];
    const struct lg_gguf_kv *tk = lg_gguf_find_kv(m->gguf, "tokenizer.ggml.tokens");
    if (tk && tk->val.type == LG_GGUF_TYPE_ARRAY && tk->val.v.arr.n != (uint64_t)c->n_vocab)
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries but "
                          "token_embd.weight has %d rows", (unsigned long long)tk->val.v.arr.n,
                          (int)c->n_vocab);
    if ((st = bind_mat(b, "token_embd.weight", D, c->n_vocab, true, &m->tok_embd, err)))
        return st;
    if ((st = bind_mat(b, "output.weight", D, c->n_vocab, false, &m->output, err)))
        return st;
    if (!m->output.data)
        m->output = m->tok_embd;
    if ((st = bind_vec(b, "output_norm.weight", D, true, &m->output_norm, err)))
        return st;
    if (c->n_embd_per_layer > 0) {
        const int64_t LP = (int64_t)c->n_layer * c->n_embd_per_layer;
        if ((st = bind_mat(b, "per_layer_token_embd.weight", LP, c->n_vocab, true, &m->ple_tok,
                           err)))
            return st;
        if ((st = bind_mat(b, "per_layer_model_proj.weight", D, LP, true, &m->ple_proj, err)))
            return st;
        if ((st = bind_vec(b, "per_layer_proj_norm.weight", c->n_embd_per_layer, true,
                           &m->ple_norm, err)))
            return st;
    }
    /* rope_freqs divides the angles of global layers (proportional RoPE). */
    int32_t n_rot_global = 0;
    for (int32_t il = 0; il < c->n_layer; il++)
        if (!c->layers[il].sliding)
            n_rot_global = c->layers[il].n_rot;
    if (lg_gguf_find_tensor(m->gguf, "rope_freqs.weight")) {
        if ((st = bind_vec(b, "rope_freqs.weight", n_rot_global / 2, true, &m->rope_freqs, err)))
            return st;
        for (int32_t i = 0; i < n_rot_global / 2; i++)
            if (!(m->rope_freqs[i] > 0.0f))
                return lg_err_set(err, LG_ERR_FORMAT, "tensor rope_freqs.weight: element %d "
                                  "is not positive", (int)i);
    }
    for (int32_t il = 0; il < c->n_layer; il++)
        if ((st = bind_layer(b, il, err)))
            return st;
    return LG_OK;
}

enum lg_status lg_model_from_gguf(struct lg_gguf *g, struct lg_model **out, struct lg_err *err)
{
    enum lg_status st;
    *out = NULL;
    struct lg_model *m = calloc(1, sizeof *m);
    if (!m)
        return lg_err_set(err, LG_ERR_NOMEM, "model: out of memory");
    m->gguf = g;
    struct binder b = {.m = m};
    if ((st = lg_model_cfg_read(g, &m->cfg, err)))
        goto fail;
    b.arena = lg_arena_create(0);
    m->layers = calloc((size_t)m->cfg.n_layer, sizeof *m->layers);
    if (!b.arena || !m->layers) {
        st = lg_err_set(err, LG_ERR_NOMEM, "model: out of memory");
        goto fail;
    }
    m->arena = b.arena;
    if ((st = bind_all(&b, err)))
        goto fail;
    m->max_cols = b.max_cols;
    if ((st = lg_model_repack(m, err)))
        goto fail;
    *out = m;
    return LG_OK;
fail:
    if (!m->arena)
        lg_arena_destroy(b.arena);
    lg_model_close(m);
    return st;
}

enum lg_status lg_model_open(const char *path, struct lg_model **out, struct lg_err *err)
{
    struct lg_gguf *g;
    *out = NULL;
    enum lg_status st = lg_gguf_open(path, &g, err);
    if (st != LG_OK)
        return st;
    st = lg_model_from_gguf(g, out, err);
    if (st != LG_OK) {
        lg_gguf_close(g);
        return st;
    }
    (*out)->own_gguf = true;
    return LG_OK;
}

void lg_model_close(struct lg_model *m)
{
    if (!m)
        return;
    if (m->own_gguf)
        lg_gguf_close(m->gguf);
    lg_model_repack_free(m);
    lg_arena_destroy(m->arena);
    free(m->layers);
    free(m);
}
