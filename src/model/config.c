/* config.c: GGUF metadata -> struct lg_model_cfg (the per-layer table).
 *
 * Keys are read as llama.cpp's converter writes them for `gemma3` and `gemma4`
 * (shared/spec/gemma4.md §3.1, §3.3). This is the only place that knows architecture names;
 * what differs between them becomes data in the table (v_norm, query scale, SWA pattern,
 * rope bases). Every value is checked for meaning (ranges, divisibility, finiteness) before
 * anything is sized from it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "model/model.h"

/* Scalar-or-array integer key: out[0..n) receives one value per layer. */
static enum lg_status get_per_layer(const struct lg_gguf *g, const char *key, int32_t n,
                                    bool required, int64_t dflt, int64_t lo, int64_t hi,
                                    int64_t *out, struct lg_err *err)
{
    const struct lg_gguf_kv *kv = lg_gguf_find_kv(g, key);
    if (!kv) {
        if (required)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "missing key %s", key);
        for (int32_t i = 0; i < n; i++)
            out[i] = dflt;
        return LG_OK;
    }
    const struct lg_gguf_value *v = &kv->val;
    if (v->type == LG_GGUF_TYPE_ARRAY) {
        enum lg_gguf_type et = v->v.arr.elem_type;
        if (et > LG_GGUF_TYPE_INT32 && et != LG_GGUF_TYPE_UINT64 && et != LG_GGUF_TYPE_INT64)
            return lg_err_set(err, LG_ERR_FORMAT, "key %s: array of %s, want integers", key,
                              lg_gguf_type_name(et));
        if (v->v.arr.n != (uint64_t)n)
            return lg_err_set(err, LG_ERR_FORMAT, "key %s: %llu elements, want %d (block_count)",
                              key, (unsigned long long)v->v.arr.n, (int)n);
        for (int32_t i = 0; i < n; i++) {
            int64_t x = lg_gguf_arr_i64(v, (uint64_t)i);
            if (et == LG_GGUF_TYPE_UINT64 && x < 0)
                x = INT64_MAX;
            if (x < lo || x > hi)
                return lg_err_set(err, LG_ERR_FORMAT, "key %s[%d] = %lld out of range [%lld, %lld]",
                                  key, (int)i, (long long)x, (long long)lo, (long long)hi);
            out[i] = x;
        }
        return LG_OK;
    }
    int64_t x;
    enum lg_status st = lg_gguf_get_i64(g, key, &x, err);
    if (st != LG_OK)
        return st;
    if (x < lo || x > hi)
        return lg_err_set(err, LG_ERR_FORMAT, "key %s = %lld out of range [%lld, %lld]", key,
                          (long long)x, (long long)lo, (long long)hi);
    for (int32_t i = 0; i < n; i++)
        out[i] = x;
    return LG_OK;
}

static enum lg_status get_int(const struct lg_gguf *g, const char *key, bool required,
                              int64_t dflt, int64_t lo, int64_t hi, int64_t *out,
                              struct lg_err *err)
{
    if (!lg_gguf_find_kv(g, key)) {
        if (required)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "missing key %s", key);
        *out = dflt;
        return LG_OK;
    }
    int64_t x;
    enum lg_status st = lg_gguf_get_i64(g, key, &x, err);
    if (st != LG_OK)
        return st;
    if (x < lo || x > hi)
        return lg_err_set(err, LG_ERR_FORMAT, "key %s = %lld out of range [%lld, %lld]", key,
                          (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return LG_OK;
}

/* A float key; must be finite and within [lo, hi]. */
static enum lg_status get_float(const struct lg_gguf *g, const char *key, bool required,
                                float dflt, float lo, float hi, float *out, struct lg_err *err)
{
    if (!lg_gguf_find_kv(g, key)) {
        if (required)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "missing key %s", key);
        *out = dflt;
        return LG_OK;
    }
    float x;
    enum lg_status st = lg_gguf_get_f32(g, key, &x, err);
    if (st != LG_OK)
        return st;
    if (!isfinite(x) || x < lo || x > hi)
        return lg_err_set(err, LG_ERR_FORMAT, "key %s = %g out of range [%g, %g]", key,
                          (double)x, (double)lo, (double)hi);
    *out = x;
    return LG_OK;
}

#define KEY(buf, arch, suffix) (snprintf((buf), sizeof(buf), "%s." suffix, (arch)), (buf))

enum lg_status lg_model_cfg_read(const struct lg_gguf *g, struct lg_model_cfg *cfg,
                                 struct lg_err *err)
{
    enum lg_status st;
    char k[128];
    int64_t ff[LG_MODEL_MAX_LAYERS], hkv[LG_MODEL_MAX_LAYERS], hq[LG_MODEL_MAX_LAYERS];
    int64_t v;

    memset(cfg, 0, sizeof *cfg);
    struct lg_str arch;
    st = lg_gguf_get_str(g, "general.architecture", &arch, err);
    if (st != LG_OK)
        return st;
    bool is_g4 = lg_str_eq(arch, "gemma4");
    bool is_g3 = lg_str_eq(arch, "gemma3");
    if (!is_g3 && !is_g4) {
        int n = arch.len > 40 ? 40 : (int)arch.len;
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "architecture \"%.*s\" is not supported "
                          "(gemma3, gemma4)", n, arch.ptr);
    }
    const char *a = is_g4 ? "gemma4" : "gemma3";
    snprintf(cfg->arch, sizeof cfg->arch, "%s", a);

    if ((st = get_int(g, KEY(k, a, "block_count"), true, 0, 1, LG_MODEL_MAX_LAYERS, &v, err)))
        return st;
    int32_t L = (int32_t)v;
    cfg->n_layer = L;
    if ((st = get_int(g, KEY(k, a, "embedding_length"), true, 0, 1, 1 << 16, &v, err)))
        return st;
    cfg->n_embd = (int32_t)v;
    if ((st = get_int(g, KEY(k, a, "context_length"), false, 0, 0, (int64_t)1 << 31, &v, err)))
        return st;
    cfg->n_ctx_train = v;

    if ((st = get_per_layer(g, KEY(k, a, "attention.head_count"), L, true, 0, 1, 1024, hq, err)))
        return st;
    for (int32_t il = 1; il < L; il++)
        if (hq[il] != hq[0])
            return lg_err_set(err, LG_ERR_UNSUPPORTED, "key %s: per-layer head counts differ",
                              k);
    cfg->n_head = (int32_t)hq[0];
    if ((st = get_per_layer(g, KEY(k, a, "attention.head_count_kv"), L, false, cfg->n_head, 1,
                            1024, hkv, err)))
        return st;
    if ((st = get_per_layer(g, KEY(k, a, "feed_forward_length"), L, true, 0, 1, 1 << 20, ff, err)))
        return st;

    int64_t hd, hd_v, hd_swa, hd_v_swa;
    int64_t dflt_hd = cfg->n_embd / cfg->n_head;
    if ((st = get_int(g, KEY(k, a, "attention.key_length"), false, dflt_hd, 1, 8192, &hd, err)))
        return st;
    if ((st = get_int(g, KEY(k, a, "attention.value_length"), false, hd, 1, 8192, &hd_v, err)))
        return st;
    if ((st = get_int(g, KEY(k, a, "attention.key_length_swa"), false, hd, 1, 8192, &hd_swa, err)))
        return st;
    if ((st = get_int(g, KEY(k, a, "attention.value_length_swa"), false, hd_swa, 1, 8192,
                      &hd_v_swa, err)))
        return st;
    if (hd_v != hd || hd_v_swa != hd_swa)
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "%s: value_length != key_length", a);
    if (hd % 2 || hd_swa % 2)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: odd head size", a);

    if ((st = get_float(g, KEY(k, a, "attention.layer_norm_rms_epsilon"), true, 0, 1e-12f, 0.1f,
                        &cfg->eps, err)))
        return st;
    if ((st = get_int(g, KEY(k, a, "attention.sliding_window"), false, 0, 0, (int64_t)1 << 31,
                      &v, err)))
        return st;
    cfg->sliding_window = (int32_t)v;

    /* Sliding pattern: a bool array (gemma4; newer converters), a scalar period n (layer il
     * slides iff il % n < n - 1, llama.cpp's rule), or gemma3's fixed period 6. */
    bool sliding[LG_MODEL_MAX_LAYERS];
    const struct lg_gguf_kv *pk = lg_gguf_find_kv(g, KEY(k, a, "attention.sliding_window_pattern"));
    if (pk && pk->val.type == LG_GGUF_TYPE_ARRAY) {
        if (pk->val.v.arr.elem_type != LG_GGUF_TYPE_BOOL &&
            pk->val.v.arr.elem_type > LG_GGUF_TYPE_INT32)
            return lg_err_set(err, LG_ERR_FORMAT, "key %s: array of %s, want bool", k,
                              lg_gguf_type_name(pk->val.v.arr.elem_type));
        if (pk->val.v.arr.n != (uint64_t)L)
            return lg_err_set(err, LG_ERR_FORMAT, "key %s: %llu elements, want %d", k,
                              (unsigned long long)pk->val.v.arr.n, (int)L);
        for (int32_t il = 0; il < L; il++)
            sliding[il] = lg_gguf_arr_i64(&pk->val, (uint64_t)il) != 0;
    } else if (pk) {
        int64_t n;
        if ((st = get_int(g, k, true, 0, 0, LG_MODEL_MAX_LAYERS, &n, err)))
            return st;
        for (int32_t il = 0; il < L; il++)
            sliding[il] = n > 0 && il % n < n - 1;
    } else if (is_g3) {
        for (int32_t il = 0; il < L; il++)
            sliding[il] = il % 6 < 5;
    } else {
        return lg_err_set(err, LG_ERR_NOT_FOUND, "missing key %s", k);
    }
    bool any_sliding = false;
    for (int32_t il = 0; il < L; il++)
        any_sliding |= sliding[il];
    if (any_sliding && cfg->sliding_window <= 0)
        return lg_err_set(err, LG_ERR_FORMAT, "%s.attention.sliding_window missing or 0 with "
                          "sliding layers", a);

    if ((st = get_int(g, KEY(k, a, "attention.shared_kv_layers"), false, 0, 0, L - 1, &v, err)))
        return st;
    cfg->n_kv_shared = (int32_t)v;
    if ((st = get_int(g, KEY(k, a, "embedding_length_per_layer_input"), false, 0, 0, 1 << 16, &v,
                      err)))
        return st;
    cfg->n_embd_per_layer = (int32_t)v;
    if ((st = get_int(g, KEY(k, a, "expert_count"), false, 0, 0, LG_MODEL_MAX_EXPERTS, &v, err)))
        return st;
    cfg->n_expert = (int32_t)v;
    if ((st = get_int(g, KEY(k, a, "expert_used_count"), false, 0, 0, cfg->n_expert, &v, err)))
        return st;
    cfg->n_expert_used = (int32_t)v;
    if ((st = get_int(g, KEY(k, a, "expert_feed_forward_length"), false, 0, 0, 1 << 20, &v, err)))
        return st;
    cfg->n_ff_exp = (int32_t)v;
    if (cfg->n_expert > 0 && (cfg->n_expert_used <= 0 || cfg->n_ff_exp <= 0))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expert_count %d needs expert_used_count and "
                          "expert_feed_forward_length > 0", a, (int)cfg->n_expert);

    float base, base_swa, scale_factor = 1.0f;
    if ((st = get_float(g, KEY(k, a, "rope.freq_base"), false, 10000.0f, 1e-3f, 1e30f, &base, err)))
        return st;
    if ((st = get_float(g, KEY(k, a, "rope.freq_base_swa"), false, 10000.0f, 1e-3f, 1e30f,
                        &base_swa, err)))
        return st;
    int64_t n_rot, n_rot_swa;
    if ((st = get_int(g, KEY(k, a, "rope.dimension_count"), false, hd, 0, hd, &n_rot, err)))
        return st;
    if ((st = get_int(g, KEY(k, a, "rope.dimension_count_swa"), false, hd_swa, 0, hd_swa,
                      &n_rot_swa, err)))
        return st;
    if (n_rot % 2 || n_rot_swa % 2)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: odd rope.dimension_count", a);
    const struct lg_gguf_kv *sk = lg_gguf_find_kv(g, KEY(k, a, "rope.scaling.type"));
    if (sk) {
        struct lg_str s;
        if ((st = lg_gguf_get_str(g, k, &s, err)))
            return st;
        if (lg_str_eq(s, "linear")) {
            if ((st = get_float(g, KEY(k, a, "rope.scaling.factor"), false, 1.0f, 1e-6f, 1e6f,
                                &scale_factor, err)))
                return st;
        } else if (!lg_str_eq(s, "none")) {
            return lg_err_set(err, LG_ERR_UNSUPPORTED, "%s.rope.scaling.type \"%.*s\"", a,
                              s.len > 32 ? 32 : (int)s.len, s.ptr);
        }
    }
    if ((st = get_float(g, KEY(k, a, "final_logit_softcapping"), false, 0.0f, 0.0f, 1e6f,
                        &cfg->final_softcap, err)))
        return st;
    if ((st = get_float(g, KEY(k, a, "attn_logit_softcapping"), false, 0.0f, 0.0f, 1e6f,
                        &cfg->attn_softcap, err)))
        return st;
    /* Query scale: Gemma 4 uses 1.0; Gemma 3 uses query_pre_attn_scalar^-1/2, which llama.cpp
     * takes as head_dim^-1/2, except for the 27B (62 layers) where it is (D/H)^-1/2. An
     * explicit attention.scale key wins. */
    float q_scale;
    float dflt_scale = 1.0f;
    if (is_g3)
        dflt_scale = L == 62 ? (float)(1.0 / sqrt((double)cfg->n_embd / cfg->n_head))
                             : (float)(1.0 / sqrt((double)hd));
    if ((st = get_float(g, KEY(k, a, "attention.scale"), false, dflt_scale, 1e-6f, 1e6f, &q_scale,
                        err)))
        return st;

    cfg->v_norm = is_g4;
    cfg->embd_scale = (float)sqrt((double)cfg->n_embd);

    int32_t first_shared = L - cfg->n_kv_shared;
    for (int32_t il = 0; il < L; il++) {
        struct lg_layer_cfg *lc = &cfg->layers[il];
        lc->sliding = sliding[il];
        lc->head_dim = (int32_t)(sliding[il] ? hd_swa : hd);
        lc->n_head_kv = (int32_t)hkv[il];
        lc->n_ff = (int32_t)ff[il];
        lc->has_v = true;
        lc->has_moe = cfg->n_expert > 0;
        lc->n_rot = (int32_t)(sliding[il] ? n_rot_swa : n_rot);
        lc->rope_base = sliding[il] ? base_swa : base;
        lc->rope_freq_scale = sliding[il] ? 1.0f : 1.0f / scale_factor;
        lc->use_rope_freqs = !sliding[il];
        lc->q_scale = q_scale;
        if (cfg->n_head % lc->n_head_kv)
            return lg_err_set(err, LG_ERR_FORMAT, "layer %d: head_count %d not a multiple of "
                              "head_count_kv %d", (int)il, (int)cfg->n_head, (int)lc->n_head_kv);
        lc->kv_src = il;
        if (il >= first_shared) {
            /* The last non-shared layer of the same type (transformers' rule; equal to
             * llama.cpp's n_layer_kv_from_start - (swa ? 2 : 1) for released layouts). */
            int32_t src = -1;
            for (int32_t j = first_shared - 1; j >= 0; j--)
                if (sliding[j] == sliding[il]) {
                    src = j;
                    break;
                }
            if (src < 0)
                return lg_err_set(err, LG_ERR_FORMAT, "layer %d: KV-shared but no earlier %s "
                                  "layer to share with", (int)il,
                                  sliding[il] ? "sliding" : "global");
            if (hkv[src] != hkv[il])
                return lg_err_set(err, LG_ERR_FORMAT, "layer %d: head_count_kv %d differs from "
                                  "its KV source layer %d (%d)", (int)il, (int)hkv[il],
                                  (int)src, (int)hkv[src]);
            lc->kv_src = src;
        }
    }
    return LG_OK;
}
