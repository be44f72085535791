/* convert.c: HF checkpoint -> GGUF (see convert.h). The metadata keys and tensor names are
 * the ones llama.cpp's converter writes (shared/spec/gemma4.md §3); the model loader
 * (model.c) reads exactly these, so a converted file is checked by loading it. Tensor data
 * is produced at write time by a fill callback straight from the mapped safetensors, so a
 * conversion holds at most one row of floats in memory. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "model/convert.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "quant/quant.h"

/* HF name (after "model.layers.N.") -> GGUF name (after "blk.N."). */
static const char *const LAYER_MAP[][2] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {"layer_scalar", "layer_output_scale.weight"},
    {"per_layer_input_gate.weight", "inp_gate.weight"},
    {"per_layer_projection.weight", "proj.weight"},
    {"post_per_layer_input_norm.weight", "post_norm.weight"},
    {"router.proj.weight", "ffn_gate_inp.weight"},
    {"router.scale", "ffn_gate_inp.scale"},
    {"router.per_expert_scale", "ffn_down_exps.scale"},
    {"experts.gate_up_proj", "ffn_gate_up_exps.weight"},
    {"experts.down_proj", "ffn_down_exps.weight"},
    {"pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"},
    {"post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"},
    {"post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"},
};
enum { N_LAYER_MAP = sizeof LAYER_MAP / sizeof LAYER_MAP[0] };

/* Parts of multimodal checkpoints that are not the text decoder. */
static const char *const SKIP_PREFIXES[] = {"model.vision_tower.", "model.audio_tower.",
                                            "model.embed_vision.", "model.embed_audio.",
                                            "model.multi_modal_projector.", "vision_tower.",
                                            "multi_modal_projector."};

struct job {
    char name[128];
    const struct lg_st_tensor *src; /* NULL: gen */
    const float *gen;               /* generated values (rope_freqs) */
    float add;                      /* +1 for Gemma 3 norms */
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[4];
    int64_t row;                    /* ne[0] */
    int64_t n_elem;
};

static enum lg_status fill(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    const struct job *j = user;
    uint64_t rb;
    if (lg_qtype_row_bytes(j->type, (uint64_t)j->row, &rb) != LG_OK ||
        rb * (uint64_t)(j->n_elem / j->row) != nbytes)
        return lg_err_set(err, LG_ERR_INTERNAL, "%s: size mismatch", j->name);
    float *buf = malloc((size_t)j->row * sizeof(float));
    if (!buf)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    uint8_t *out = dst;
    for (int64_t r = 0; r < j->n_elem / j->row; r++) {
        for (int64_t i = 0; i < j->row; i++) {
            int64_t e = r * j->row + i;
            buf[i] = (j->src ? lg_st_get(j->src, e) : j->gen[e]) + j->add;
        }
        uint8_t *d = out + (size_t)r * rb;
        if (j->type == LG_QTYPE_F32) {
            memcpy(d, buf, (size_t)j->row * sizeof(float));
        } else if (j->type == LG_QTYPE_F16) {
            for (int64_t i = 0; i < j->row; i++) {
                uint16_t h = lg_f32_to_f16(buf[i]);
                memcpy(d + 2 * i, &h, 2);
            }
        } else if (j->type == LG_QTYPE_BF16) {
            for (int64_t i = 0; i < j->row; i++) {
                uint16_t h = lg_f32_to_bf16(buf[i]);
                memcpy(d + 2 * i, &h, 2);
            }
        } else {
            lg_quant_row((enum lg_qtype)j->type, buf, d, j->row);
        }
    }
    free(buf);
    return LG_OK;
}

/* ---- config.json helpers ---- */

static enum lg_status cfg_int(const json_t *o, const char *key, bool required, int64_t dflt,
                              int64_t lo, int64_t hi, int64_t *out, struct lg_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "config.json: missing %s", key);
        *out = dflt;
        return LG_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return lg_err_set(err, LG_ERR_FORMAT, "config.json: %s must be an integer in [%lld, %lld]",
                          key, (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return LG_OK;
}

static enum lg_status cfg_num(const json_t *o, const char *key, double dflt, double *out,
                              struct lg_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return LG_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return lg_err_set(err, LG_ERR_FORMAT, "config.json: %s must be a number", key);
    *out = json_number_value(v);
    return LG_OK;
}

static bool cfg_bool(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

struct conv {
    bool g4;
    const char *arch;
    const char *prefix; /* "model." or "model.language_model." */
    int64_t L, D, H, Hkv, hd, ctx, W, shared, P, X, K, Fe;
    double eps, softcap, theta, theta_swa, prf, rope_scale, qpas;
    bool k_eq_v, moe, proportional, rope_linear;
    bool sliding[LG_MODEL_MAX_LAYERS];
    int64_t hd_l[LG_MODEL_MAX_LAYERS], hkv_l[LG_MODEL_MAX_LAYERS], ff_l[LG_MODEL_MAX_LAYERS];
};

/* rope theta of one layer type from rope_parameters (new format) or the flat keys. */
static enum lg_status read_rope(const json_t *tc, struct conv *c, struct lg_err *err)
{
    enum lg_status s;
    json_t *rp = json_object_get(tc, "rope_parameters");
    c->theta = c->g4 ? 1e6 : 1e6;
    c->theta_swa = 1e4;
    c->prf = 1.0;
    c->rope_scale = 1.0;
    if (json_is_object(rp) && json_is_object(json_object_get(rp, "full_attention"))) {
        json_t *fa = json_object_get(rp, "full_attention");
        json_t *sa = json_object_get(rp, "sliding_attention");
        if ((s = cfg_num(fa, "rope_theta", c->theta, &c->theta, err)))
            return s;
        if (json_is_object(sa) && (s = cfg_num(sa, "rope_theta", 1e4, &c->theta_swa, err)))
            return s;
        const char *rt = json_string_value(json_object_get(fa, "rope_type"));
        if (rt && !strcmp(rt, "proportional")) {
            c->proportional = true;
            if ((s = cfg_num(fa, "partial_rotary_factor", 1.0, &c->prf, err)))
                return s;
        } else if (rt && !strcmp(rt, "linear")) {
            c->rope_linear = true;
            if ((s = cfg_num(fa, "factor", 1.0, &c->rope_scale, err)))
                return s;
        } else if (rt && strcmp(rt, "default")) {
            return lg_err_set(err, LG_ERR_UNSUPPORTED, "config.json: rope_type \"%s\"", rt);
        }
    } else {
        /* Older flat format (Gemma 3 releases): rope_theta, rope_local_base_freq, rope_scaling. */
        if ((s = cfg_num(tc, "rope_theta", c->theta, &c->theta, err)) ||
            (s = cfg_num(tc, "rope_local_base_freq", 1e4, &c->theta_swa, err)))
            return s;
        json_t *rs = json_object_get(tc, "rope_scaling");
        if (json_is_object(rs)) {
            const char *rt = json_string_value(json_object_get(rs, "rope_type"));
            if (rt && !strcmp(rt, "linear")) {
                c->rope_linear = true;
                if ((s = cfg_num(rs, "factor", 1.0, &c->rope_scale, err)))
                    return s;
            } else if (rt && strcmp(rt, "default")) {
                return lg_err_set(err, LG_ERR_UNSUPPORTED, "config.json: rope_scaling \"%s\"", rt);
            }
        }
    }
    if (!(c->theta > 0) || !(c->theta_swa > 0) || !(c->prf > 0 && c->prf <= 1) ||
        !(c->rope_scale > 0))
        return lg_err_set(err, LG_ERR_FORMAT, "config.json: bad rope parameters");
    return LG_OK;
}

static enum lg_status read_config(const json_t *root, const struct lg_st *st, struct conv *c,
                                  struct lg_err *err)
{
    enum lg_status s;
    const json_t *tc = json_object_get(root, "text_config");
    if (!json_is_object(tc))
        tc = root;
    const char *mt = json_string_value(json_object_get(tc, "model_type"));
    if (!mt)
        mt = json_string_value(json_object_get(root, "model_type"));
    if (mt && (!strcmp(mt, "gemma4_text") || !strcmp(mt, "gemma4")))
        c->g4 = true;
    else if (!mt || (strcmp(mt, "gemma3_text") && strcmp(mt, "gemma3")))
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "config.json: model_type \"%s\" is not "
                          "gemma4 or gemma3", mt ? mt : "(missing)");
    c->arch = c->g4 ? "gemma4" : "gemma3";
    c->prefix = lg_st_find(st, "model.language_model.embed_tokens.weight")
                    ? "model.language_model." : "model.";

    if ((s = cfg_int(tc, "num_hidden_layers", true, 0, 1, LG_MODEL_MAX_LAYERS, &c->L, err)) ||
        (s = cfg_int(tc, "hidden_size", true, 0, 1, 1 << 16, &c->D, err)) ||
        (s = cfg_int(tc, "num_attention_heads", true, 0, 1, 1024, &c->H, err)) ||
        (s = cfg_int(tc, "num_key_value_heads", false, c->H, 1, 1024, &c->Hkv, err)) ||
        (s = cfg_int(tc, "head_dim", false, c->D / c->H, 1, 8192, &c->hd, err)) ||
        (s = cfg_int(tc, "max_position_embeddings", false, 131072, 1, (int64_t)1 << 31, &c->ctx,
                     err)) ||
        (s = cfg_int(tc, "sliding_window", false, 0, 0, (int64_t)1 << 31, &c->W, err)) ||
        (s = cfg_num(tc, "rms_norm_eps", 1e-6, &c->eps, err)) ||
        (s = cfg_num(tc, "final_logit_softcapping", 0.0, &c->softcap, err)) ||
        (s = read_rope(tc, c, err)))
        return s;
    if (c->g4) {
        if ((s = cfg_int(tc, "num_kv_shared_layers", false, 0, 0, c->L - 1, &c->shared, err)) ||
            (s = cfg_int(tc, "hidden_size_per_layer_input", false, 0, 0, 1 << 16, &c->P, err)))
            return s;
        c->k_eq_v = cfg_bool(tc, "attention_k_eq_v");
        c->moe = cfg_bool(tc, "enable_moe_block");
        if (c->moe && ((s = cfg_int(tc, "num_experts", true, 0, 1, LG_MODEL_MAX_EXPERTS, &c->X,
                                    err)) ||
                       (s = cfg_int(tc, "top_k_experts", true, 0, 1, c->X, &c->K, err)) ||
                       (s = cfg_int(tc, "moe_intermediate_size", true, 0, 1, 1 << 20, &c->Fe,
                                    err))))
            return s;
    } else if ((s = cfg_num(tc, "query_pre_attn_scalar", (double)c->hd, &c->qpas, err))) {
        return s;
    }

    /* Layer types: the explicit list, else the period pattern ((i + 1) % n != 0 slides). */
    json_t *lt = json_object_get(tc, "layer_types");
    if (json_is_array(lt)) {
        if ((int64_t)json_array_size(lt) != c->L)
            return lg_err_set(err, LG_ERR_FORMAT, "config.json: layer_types has %zu entries, "
                              "want %lld", json_array_size(lt), (long long)c->L);
        for (int64_t i = 0; i < c->L; i++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)i));
            if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention")))
                return lg_err_set(err, LG_ERR_FORMAT, "config.json: layer_types[%lld]",
                                  (long long)i);
            c->sliding[i] = !strcmp(t, "sliding_attention");
        }
    } else {
        int64_t pat;
        if ((s = cfg_int(tc, "sliding_window_pattern", false, 6, 1, 1 << 16, &pat, err)))
            return s;
        for (int64_t i = 0; i < c->L; i++)
            c->sliding[i] = (i + 1) % pat != 0;
    }
    if (c->g4)
        c->sliding[c->L - 1] = false; /* transformers forces the last layer global */

    /* Per-layer head size and KV heads (Gemma 4): per_layer_config overrides, or the older
     * global_head_dim / num_global_key_value_heads keys. */
    int64_t ghd = c->hd, ghkv = c->Hkv;
    json_t *plc = json_object_get(tc, "per_layer_config");
    if (c->g4 && !json_is_object(plc)) {
        if ((s = cfg_int(tc, "global_head_dim", false, 512, 1, 8192, &ghd, err)))
            return s;
        if (c->k_eq_v &&
            (s = cfg_int(tc, "num_global_key_value_heads", false, c->Hkv, 1, 1024, &ghkv, err)))
            return s;
    }
    for (int64_t i = 0; i < c->L; i++) {
        c->hd_l[i] = c->g4 && !c->sliding[i] && !json_is_object(plc) ? ghd : c->hd;
        c->hkv_l[i] = c->g4 && !c->sliding[i] && !json_is_object(plc) ? ghkv : c->Hkv;
        if (json_is_object(plc)) {
            char k[24];
            snprintf(k, sizeof k, "%lld", (long long)i);
            json_t *o = json_object_get(plc, k);
            if (json_is_object(o) &&
                ((s = cfg_int(o, "head_dim", false, c->hd, 1, 8192, &c->hd_l[i], err)) ||
                 (s = cfg_int(o, "num_key_value_heads", false, c->Hkv, 1, 1024, &c->hkv_l[i],
                              err))))
                return s;
        }
    }
    /* FFN widths from the tensors (E2B's double-wide MLP on KV-shared layers). */
    for (int64_t i = 0; i < c->L; i++) {
        char n[160];
        snprintf(n, sizeof n, "%slayers.%lld.mlp.gate_proj.weight", c->prefix, (long long)i);
        const struct lg_st_tensor *t = lg_st_find(st, n);
        if (!t || t->n_dims != 2)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "missing or malformed tensor %s", n);
        c->ff_l[i] = t->shape[0];
    }
    return LG_OK;
}

static uint32_t tensor_type(const char *gname, int n_dims, int64_t row, uint32_t want)
{
    size_t n = strlen(gname);
    bool is_weight = n >= 7 && !strcmp(gname + n - 7, ".weight");
    bool is_norm = n >= 12 && !strcmp(gname + n - 12, "_norm.weight");
    bool is_router = strstr(gname, "ffn_gate_inp.weight") != NULL;
    if (n_dims <= 1 || is_norm || is_router || !is_weight)
        return LG_QTYPE_F32;
    if (want == LG_QTYPE_Q8_0 && row % 32)
        return LG_QTYPE_F16;
    return want;
}

/* max_rows > 0 keeps only the first max_rows rows of a 2-D tensor (token_embd is cut to the
 * vocabulary, as the reference converter does for Gemma 3). */
static enum lg_status add_job(struct lg_gguf_writer *w, struct job *j, const char *gname,
                              const struct lg_st_tensor *t, float add, uint32_t want,
                              int64_t max_rows, struct lg_err *err)
{
    if (t->dtype == LG_ST_OTHER)
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "tensor %s: dtype not F32/F16/BF16", t->name);
    if (t->n_dims < 1 || t->n_elem < 1)
        return lg_err_set(err, LG_ERR_FORMAT, "tensor %s: empty", t->name);
    snprintf(j->name, sizeof j->name, "%s", gname);
    j->src = t;
    j->add = add;
    j->n_dims = (uint32_t)t->n_dims;
    for (int d = 0; d < 4; d++)
        j->ne[d] = d < t->n_dims ? (uint64_t)t->shape[t->n_dims - 1 - d] : 1;
    j->row = (int64_t)j->ne[0];
    j->n_elem = t->n_elem;
    if (max_rows > 0 && t->n_dims == 2 && (int64_t)j->ne[1] > max_rows) {
        j->ne[1] = (uint64_t)max_rows;
        j->n_elem = j->row * max_rows;
    }
    j->type = tensor_type(gname, t->n_dims, j->row, want);
    return lg_gguf_writer_add_tensor(w, j->name, j->type, j->n_dims, j->ne, NULL, fill, j) == LG_OK
               ? LG_OK
               : lg_err_set(err, LG_ERR_INTERNAL, "writer rejected %s", gname);
}

static bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* The seven tokens llama.cpp's Gemma 4 converter forces to user-defined (spec §3.4). */
static const char *const G4_VISIBLE[] = {"<|channel>", "<channel|>", "<|tool_call>",
                                         "<tool_call|>", "<|tool_response>", "<tool_response|>",
                                         "<|\"|>"};

static bool is_byte_token(const char *t)
{
    static const char hex[] = "0123456789ABCDEF";
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && strchr(hex, t[3]) && strchr(hex, t[4]) &&
           t[3] && t[4] && t[5] == '>';
}

/* Gemma 4 vocabulary from tokenizer.json (HF BPE) as llama.cpp writes it (spec §3.4):
 * tokenizer.ggml.model "gemma4", tokens by id, scores all -1000, token_type (control for HF
 * special added tokens, user-defined for the seven visible ones and other added tokens, byte
 * for <0xHH>, normal otherwise), merges "left right" in rank order, special ids, add_bos.
 * LG_ERR_NOT_FOUND when DIR has no tokenizer.json (the caller then writes no vocabulary). */
static enum lg_status write_vocab_gemma4(struct lg_gguf_writer *w, const char *dir,
                                         struct lg_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return LG_ERR_NOT_FOUND;
    fclose(probe);
    json_error_t je;
    json_t *tj = json_load_file(path, 0, &je);
    if (!tj)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: %s (line %d)", path, je.text, je.line);
    enum lg_status s = LG_OK;
    const char **toks = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    char **merges = NULL;
    size_t n_merges = 0;
    json_t *model = json_object_get(tj, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(tj, "added_tokens");
    json_t *jm = json_object_get(model, "merges");
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (!mt || strcmp(mt, "BPE") || !json_is_object(vocab) || (jm && !json_is_array(jm))) {
        s = lg_err_set(err, LG_ERR_UNSUPPORTED, "%s: not a BPE tokenizer with a vocab", path);
        goto done;
    }
    /* Number of ids: one past the largest id in vocab and added_tokens. */
    int64_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= (1 << 24)) {
            s = lg_err_set(err, LG_ERR_FORMAT, "%s: vocab[%.64s]: bad id", path, key);
            goto done;
        }
        if (id + 1 > n)
            n = id + 1;
    }
    size_t ia;
    json_array_foreach(added, ia, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (!json_is_string(json_object_get(v, "content")) || id < 0 || id >= (1 << 24)) {
            s = lg_err_set(err, LG_ERR_FORMAT, "%s: added_tokens[%zu]: bad entry", path, ia);
            goto done;
        }
        if (id + 1 > n)
            n = id + 1;
    }
    toks = calloc((size_t)n, sizeof *toks);
    types = calloc((size_t)n, sizeof *types);
    scores = calloc((size_t)n, sizeof *scores);
    if (!toks || !types || !scores) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        toks[id] = key;
        types[id] = is_byte_token(key) ? 6 : 1;
    }
    json_array_foreach(added, ia, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        toks[id] = c;
        types[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4;
        for (size_t i = 0; i < sizeof G4_VISIBLE / sizeof G4_VISIBLE[0]; i++)
            if (!strcmp(c, G4_VISIBLE[i]))
                types[id] = 4;
    }
    int64_t special[5] = {-1, -1, -1, -1, -1}; /* bos eos unk pad mask */
    const char *special_names[5] = {"<bos>", "<eos>", "<unk>", "<pad>", "<mask>"};
    for (int64_t i = 0; i < n; i++) {
        if (!toks[i]) {
            s = lg_err_set(err, LG_ERR_FORMAT, "%s: no token with id %lld", path, (long long)i);
            goto done;
        }
        scores[i] = -1000.0f;
        for (int k = 0; k < 5; k++)
            if (special[k] < 0 && !strcmp(toks[i], special_names[k]))
                special[k] = i;
    }
    n_merges = jm ? json_array_size(jm) : 0;
    merges = calloc(n_merges + 1, sizeof *merges);
    if (!merges) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(jm, i);
        if (json_is_string(m)) { /* older format: "left right" */
            merges[i] = strdup(json_string_value(m));
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0));
            const char *b = json_string_value(json_array_get(m, 1));
            size_t la = strlen(a), lb = strlen(b);
            merges[i] = malloc(la + lb + 2);
            if (merges[i]) {
                memcpy(merges[i], a, la);
                merges[i][la] = ' ';
                memcpy(merges[i] + la + 1, b, lb + 1);
            }
        } else {
            s = lg_err_set(err, LG_ERR_FORMAT, "%s: merges[%zu] is not a pair", path, i);
            goto done;
        }
        if (!merges[i]) {
            s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    s |= lg_gguf_writer_add_str(w, "tokenizer.ggml.model", "gemma4");
    s |= lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    s |= lg_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LG_GGUF_TYPE_FLOAT32, scores,
                                (uint64_t)n);
    s |= lg_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LG_GGUF_TYPE_INT32, types,
                                (uint64_t)n);
    s |= lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", (const char *const *)merges,
                                    (uint64_t)n_merges);
    const char *special_keys[5] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                   "tokenizer.ggml.unknown_token_id",
                                   "tokenizer.ggml.padding_token_id",
                                   "tokenizer.ggml.mask_token_id"};
    for (int k = 0; k < 5; k++)
        if (special[k] >= 0)
            s |= lg_gguf_writer_add_u32(w, special_keys[k], (uint32_t)special[k]);
    s |= lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false);
    s |= lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (s != LG_OK)
        s = lg_err_set(err, LG_ERR_NOMEM, "writer: out of memory");
done:
    if (merges)
        for (size_t i = 0; i < n_merges; i++)
            free(merges[i]);
    free(merges);
    free(toks);
    free(types);
    free(scores);
    json_decref(tj);
    return s;
}

/* tokenizer.chat_template from chat_template.jinja or tokenizer_config.json, when present. */
static enum lg_status write_chat_template(struct lg_gguf_writer *w, const char *dir,
                                          struct lg_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        char *buf = malloc(16 << 20);
        size_t n = buf ? fread(buf, 1, (16 << 20) - 1, f) : 0;
        fclose(f);
        if (!buf)
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        buf[n] = 0;
        enum lg_status s = lg_gguf_writer_add_str(w, "tokenizer.chat_template", buf);
        free(buf);
        return s;
    }
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *tc = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL); /* 1e30 max lengths */
    const char *t = json_string_value(json_object_get(tc, "chat_template"));
    enum lg_status s = t ? lg_gguf_writer_add_str(w, "tokenizer.chat_template", t) : LG_OK;
    json_decref(tc);
    return s;
}

static enum lg_status write_meta(struct lg_gguf_writer *w, const struct conv *c,
                                 const char *dir, uint32_t out_type)
{
    char k[128];
    const char *a = c->arch;
    enum lg_status s = LG_OK;
#define U32(suffix, v) (snprintf(k, sizeof k, "%s." suffix, a), lg_gguf_writer_add_u32(w, k, (uint32_t)(v)))
#define F32(suffix, v) (snprintf(k, sizeof k, "%s." suffix, a), lg_gguf_writer_add_f32(w, k, (float)(v)))
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    uint32_t ft = out_type == LG_QTYPE_F32 ? 0 : out_type == LG_QTYPE_F16 ? 1
                : out_type == LG_QTYPE_Q8_0 ? 7 : 32;
    s |= lg_gguf_writer_add_str(w, "general.architecture", a);
    s |= lg_gguf_writer_add_str(w, "general.type", "model");
    s |= lg_gguf_writer_add_str(w, "general.name", base);
    s |= lg_gguf_writer_add_u32(w, "general.file_type", ft);
    s |= lg_gguf_writer_add_u32(w, "general.quantization_version", 2);
    s |= U32("context_length", c->ctx);
    s |= U32("embedding_length", c->D);
    s |= U32("block_count", c->L);
    s |= U32("attention.head_count", c->H);
    s |= F32("attention.layer_norm_rms_epsilon", c->eps);
    s |= U32("attention.sliding_window", c->W);
    if (!c->g4) {
        s |= U32("feed_forward_length", c->ff_l[0]);
        s |= U32("attention.head_count_kv", c->Hkv);
        s |= U32("attention.key_length", c->hd);
        s |= U32("attention.value_length", c->hd);
        s |= F32("rope.freq_base", c->theta);
        s |= F32("rope.freq_base_swa", c->theta_swa); /* llama.cpp always writes it */
        if (c->qpas != (double)c->hd)
            s |= F32("attention.scale", 1.0 / sqrt(c->qpas));
    } else {
        int32_t ff[LG_MODEL_MAX_LAYERS], kv[LG_MODEL_MAX_LAYERS];
        bool sw[LG_MODEL_MAX_LAYERS], ff_same = true, kv_same = true;
        int64_t ghd = c->hd, shd = c->hd;
        for (int64_t i = 0; i < c->L; i++) {
            ff[i] = (int32_t)c->ff_l[i];
            kv[i] = (int32_t)c->hkv_l[i];
            sw[i] = c->sliding[i];
            ff_same &= ff[i] == ff[0];
            kv_same &= kv[i] == kv[0];
            if (c->sliding[i])
                shd = c->hd_l[i];
            else
                ghd = c->hd_l[i];
        }
        snprintf(k, sizeof k, "%s.feed_forward_length", a);
        s |= ff_same ? lg_gguf_writer_add_u32(w, k, (uint32_t)ff[0])
                     : lg_gguf_writer_add_arr(w, k, LG_GGUF_TYPE_INT32, ff, (uint64_t)c->L);
        snprintf(k, sizeof k, "%s.attention.head_count_kv", a);
        s |= kv_same ? lg_gguf_writer_add_u32(w, k, (uint32_t)kv[0])
                     : lg_gguf_writer_add_arr(w, k, LG_GGUF_TYPE_INT32, kv, (uint64_t)c->L);
        s |= U32("attention.key_length", ghd);
        s |= U32("attention.value_length", ghd);
        s |= U32("attention.key_length_swa", shd);
        s |= U32("attention.value_length_swa", shd);
        uint8_t swb[LG_MODEL_MAX_LAYERS];
        for (int64_t i = 0; i < c->L; i++)
            swb[i] = sw[i];
        snprintf(k, sizeof k, "%s.attention.sliding_window_pattern", a);
        s |= lg_gguf_writer_add_arr(w, k, LG_GGUF_TYPE_BOOL, swb, (uint64_t)c->L);
        s |= U32("attention.shared_kv_layers", c->shared);
        s |= U32("embedding_length_per_layer_input", c->P);
        s |= F32("rope.freq_base", c->theta);
        s |= F32("rope.freq_base_swa", c->theta_swa);
        s |= U32("rope.dimension_count", ghd);
        s |= U32("rope.dimension_count_swa", shd);
        if (c->moe) {
            s |= U32("expert_count", c->X);
            s |= U32("expert_used_count", c->K);
            s |= U32("expert_feed_forward_length", c->Fe);
        }
    }
    if (c->softcap > 0)
        s |= F32("final_logit_softcapping", c->softcap);
    if (c->rope_linear && c->rope_scale != 1.0) {
        snprintf(k, sizeof k, "%s.rope.scaling.type", a);
        s |= lg_gguf_writer_add_str(w, k, "linear");
        s |= F32("rope.scaling.factor", c->rope_scale);
    }
#undef U32
#undef F32
    return s ? LG_ERR_NOMEM : LG_OK;
}

enum lg_status lg_convert_hf(const char *dir, const char *out_path, uint32_t out_type,
                             struct lg_err *err)
{
    enum lg_status s;
    struct lg_st *st = NULL;
    json_t *root = NULL;
    struct lg_gguf_writer *w = NULL;
    struct job *jobs = NULL;
    float *rope_freqs = NULL;
    struct conv *c = calloc(1, sizeof *c);
    if (!c)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    if (out_type != LG_QTYPE_F32 && out_type != LG_QTYPE_F16 && out_type != LG_QTYPE_BF16 &&
        out_type != LG_QTYPE_Q8_0) {
        s = lg_err_set(err, LG_ERR_INVALID_ARG, "output type must be f32, f16, bf16 or q8_0");
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        s = lg_err_set(err, root ? LG_ERR_FORMAT : LG_ERR_IO, "%s: %s", path,
                       root ? "not a JSON object" : je.text);
        goto done;
    }
    if ((s = lg_st_open_dir(dir, &st, err)))
        goto done;
    if ((s = read_config(root, st, c, err)))
        goto done;

    w = lg_gguf_writer_create();
    jobs = calloc((size_t)st->n_tensors + 2, sizeof *jobs);
    if (!w || !jobs) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = write_meta(w, c, dir, out_type)))
        goto done;
    /* n_vocab > 0: the vocabulary written, to which token_embd is cut (Gemma 3). */
    int64_t n_vocab = 0;
    bool have_template = false;
    if (c->g4) {
        s = write_vocab_gemma4(w, dir, err);
    } else {
        s = lg_convert_spm_vocab(w, dir, &n_vocab, err);
        have_template = s == LG_OK; /* chat template written as SpecialVocab finds it */
    }
    if (s == LG_ERR_NOT_FOUND)
        s = LG_OK; /* no tokenizer file: a weights-only file */
    if (s != LG_OK)
        goto done;
    if (!have_template && (s = write_chat_template(w, dir, err)))
        goto done;

    int n_jobs = 0;
    const float g3_add = c->g4 ? 0.0f : 1.0f;
    const size_t pl = strlen(c->prefix);
    char pre_layers[64];
    snprintf(pre_layers, sizeof pre_layers, "%slayers.", c->prefix);
    for (int i = 0; i < st->n_tensors; i++) {
        const struct lg_st_tensor *t = &st->tensors[i];
        const char *n = t->name;
        char gname[128];
        float add = 0.0f;
        bool skip = false;
        for (size_t p = 0; p < sizeof SKIP_PREFIXES / sizeof SKIP_PREFIXES[0]; p++)
            skip |= starts_with(n, SKIP_PREFIXES[p]);
        if (skip || !strcmp(n, "lm_head.weight"))
            continue; /* other modalities; the tied output (checked below) */
        if (!starts_with(n, c->prefix))
            goto unknown;
        const char *rest = n + pl;
        if (!strcmp(rest, "embed_tokens.weight")) {
            snprintf(gname, sizeof gname, "token_embd.weight");
        } else if (!strcmp(rest, "norm.weight")) {
            snprintf(gname, sizeof gname, "output_norm.weight");
            add = g3_add;
        } else if (!strcmp(rest, "embed_tokens_per_layer.weight")) {
            snprintf(gname, sizeof gname, "per_layer_token_embd.weight");
        } else if (!strcmp(rest, "per_layer_model_projection.weight")) {
            snprintf(gname, sizeof gname, "per_layer_model_proj.weight");
        } else if (!strcmp(rest, "per_layer_projection_norm.weight")) {
            snprintf(gname, sizeof gname, "per_layer_proj_norm.weight");
        } else if (starts_with(n, pre_layers)) {
            char *end;
            long il = strtol(n + strlen(pre_layers), &end, 10);
            if (end == n + strlen(pre_layers) || *end != '.' || il < 0 || il >= c->L)
                goto unknown;
            const char *lr = end + 1;
            /* KV-shared layers never use their own K/V weights (spec §2.4). */
            if (il >= c->L - c->shared &&
                (starts_with(lr, "self_attn.k_proj") || starts_with(lr, "self_attn.v_proj") ||
                 starts_with(lr, "self_attn.k_norm") || starts_with(lr, "self_attn.v_norm")))
                continue;
            int m = 0;
            while (m < N_LAYER_MAP && strcmp(lr, LAYER_MAP[m][0]))
                m++;
            if (m == N_LAYER_MAP)
                goto unknown;
            snprintf(gname, sizeof gname, "blk.%ld.%s", il, LAYER_MAP[m][1]);
            size_t gl = strlen(gname);
            if (gl >= 11 && !strcmp(gname + gl - 11, "norm.weight"))
                add = g3_add;
        } else {
            goto unknown;
        }
        if ((s = add_job(w, &jobs[n_jobs++], gname, t, add, out_type,
                         !strcmp(gname, "token_embd.weight") ? n_vocab : 0, err)))
            goto done;
        continue;
    unknown:
        s = lg_err_set(err, LG_ERR_UNSUPPORTED, "unexpected tensor %s", n);
        goto done;
    }
    /* An untied lm_head (tie_word_embeddings: false) becomes output.weight. */
    const struct lg_st_tensor *lm = lg_st_find(st, "lm_head.weight");
    const json_t *tcfg = json_object_get(root, "text_config");
    if (lm && (json_is_false(json_object_get(root, "tie_word_embeddings")) ||
               json_is_false(json_object_get(tcfg, "tie_word_embeddings"))) &&
        (s = add_job(w, &jobs[n_jobs++], "output.weight", lm, 0.0f, out_type, 0, err)))
        goto done;
    if (c->g4 && c->proportional) {
        int64_t ghd = c->hd;
        for (int64_t i = 0; i < c->L; i++)
            if (!c->sliding[i])
                ghd = c->hd_l[i];
        int64_t half = ghd / 2, n_rot = (int64_t)floor(c->prf * (double)ghd / 2.0);
        rope_freqs = malloc((size_t)half * sizeof(float));
        if (!rope_freqs) {
            s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < half; i++)
            rope_freqs[i] = i < n_rot ? 1.0f : 1e30f;
        struct job *j = &jobs[n_jobs++];
        snprintf(j->name, sizeof j->name, "rope_freqs.weight");
        j->gen = rope_freqs;
        j->type = LG_QTYPE_F32;
        j->n_dims = 1;
        j->ne[0] = (uint64_t)half;
        j->ne[1] = j->ne[2] = j->ne[3] = 1;
        j->row = half;
        j->n_elem = half;
        if (lg_gguf_writer_add_tensor(w, j->name, j->type, 1, j->ne, NULL, fill, j) != LG_OK) {
            s = lg_err_set(err, LG_ERR_INTERNAL, "writer rejected rope_freqs");
            goto done;
        }
    }
    s = lg_gguf_writer_write(w, out_path, NULL, NULL, err);
done:
    lg_gguf_writer_destroy(w);
    free(jobs);
    free(rope_freqs);
    lg_st_close(st);
    json_decref(root);
    free(c);
    return s;
}
