/* quant_mix.c: per-tensor type choice for file quantization (the llama.cpp mixes).
 *
 * Facts from llama.cpp's llama-quant.cpp (no importance matrix, non-"pure"), restated:
 *  - only tensors named *weight with 2-3 effective dims are quantized, minus norms, the MoE
 *    router, Gemma 3n's altup/laurel/per_layer_model_proj, position/token-type embeddings,
 *    Mamba/RWKV small tables and T5's relative bias;
 *  - the mix rules apply only when the ftype's base type is a block-quantized type;
 *  - output.weight, or token_embd.weight when there is no output.weight (tied), gets Q6_K
 *    (Q8_0 when its rows are not a multiple of the base type's block, or when the base is Q8_0);
 *  - attn_v, ffn_down, attn_output and attn_qkv get upgrades per ftype; "use_more_bits"
 *    picks the first and last eighth of the layers and every third one between;
 *  - then a type whose block does not divide the row length falls back to a compatible one.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "quant/quant.h"
#include "quant/quant_mix.h"

static const struct {
    const char *name;
    enum lg_ftype ftype;
    uint32_t base;
} g_ftypes[] = {
    {"F32", LG_FTYPE_ALL_F32, LG_QTYPE_F32},    {"F16", LG_FTYPE_F16, LG_QTYPE_F16},
    {"BF16", LG_FTYPE_BF16, LG_QTYPE_BF16},     {"Q4_0", LG_FTYPE_Q4_0, LG_QTYPE_Q4_0},
    {"Q4_1", LG_FTYPE_Q4_1, LG_QTYPE_Q4_1},     {"Q5_0", LG_FTYPE_Q5_0, LG_QTYPE_Q5_0},
    {"Q5_1", LG_FTYPE_Q5_1, LG_QTYPE_Q5_1},     {"Q8_0", LG_FTYPE_Q8_0, LG_QTYPE_Q8_0},
    {"Q2_K", LG_FTYPE_Q2_K, LG_QTYPE_Q2_K},     {"Q3_K_S", LG_FTYPE_Q3_K_S, LG_QTYPE_Q3_K},
    {"Q3_K_M", LG_FTYPE_Q3_K_M, LG_QTYPE_Q3_K}, {"Q3_K_L", LG_FTYPE_Q3_K_L, LG_QTYPE_Q3_K},
    {"Q4_K_S", LG_FTYPE_Q4_K_S, LG_QTYPE_Q4_K}, {"Q4_K_M", LG_FTYPE_Q4_K_M, LG_QTYPE_Q4_K},
    {"Q5_K_S", LG_FTYPE_Q5_K_S, LG_QTYPE_Q5_K}, {"Q5_K_M", LG_FTYPE_Q5_K_M, LG_QTYPE_Q5_K},
    {"Q6_K", LG_FTYPE_Q6_K, LG_QTYPE_Q6_K},     {"IQ4_NL", LG_FTYPE_IQ4_NL, LG_QTYPE_IQ4_NL},
    {"IQ4_XS", LG_FTYPE_IQ4_XS, LG_QTYPE_IQ4_XS},
    /* aliases (llama-quantize accepts these for the _M mixes) */
    {"Q3_K", LG_FTYPE_Q3_K_M, LG_QTYPE_Q3_K},   {"Q4_K", LG_FTYPE_Q4_K_M, LG_QTYPE_Q4_K},
    {"Q5_K", LG_FTYPE_Q5_K_M, LG_QTYPE_Q5_K},
};

bool lg_ftype_from_name(const char *name, enum lg_ftype *ftype, uint32_t *base_type)
{
    if (!name)
        return false;
    for (size_t i = 0; i < sizeof g_ftypes / sizeof g_ftypes[0]; i++) {
        if (strcasecmp(name, g_ftypes[i].name) == 0) {
            if (ftype)
                *ftype = g_ftypes[i].ftype;
            if (base_type)
                *base_type = g_ftypes[i].base;
            return true;
        }
    }
    return false;
}

const char *lg_ftype_name(enum lg_ftype ftype)
{
    for (size_t i = 0; i < sizeof g_ftypes / sizeof g_ftypes[0]; i++)
        if (g_ftypes[i].ftype == ftype)
            return g_ftypes[i].name; /* first entry = canonical name */
    return NULL;
}

void lg_quant_mix_init(struct lg_quant_mix *m, enum lg_ftype ftype, uint32_t base_type, bool pure)
{
    memset(m, 0, sizeof *m);
    m->ftype = ftype;
    m->base_type = base_type;
    m->pure = pure;
    m->n_gqa = 1;
}

static bool contains(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

void lg_quant_mix_scan_names(struct lg_quant_mix *m, const char *const *names, uint64_t n)
{
    int32_t n_ffn_down = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *nm = names[i];
        if (contains(nm, "attn_v.weight") || contains(nm, "attn_qkv.weight") ||
            contains(nm, "attn_kv_b.weight"))
            m->n_attention_wv++;
        if (strcmp(nm, "output.weight") == 0)
            m->has_output = true;
        if (contains(nm, "ffn_down"))
            n_ffn_down++;
    }
    if (m->n_layer <= 0)
        m->n_layer = n_ffn_down;
}

bool lg_quant_mix_is_quantizable(const char *name, uint32_t n_dims_effective)
{
    static const char *const never[] = {
        "_norm.weight",   "ffn_gate_inp.weight",   "altup",           "laurel",
        "per_layer_model_proj", "ssm_conv1d.weight", "shortconv.conv.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
        "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
        "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
        "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    };
    if (!ends_with(name, "weight") || n_dims_effective < 2 || n_dims_effective > 3)
        return false;
    if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0)
        return false;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (contains(name, never[i]))
            return false;
    return true;
}

static bool use_more_bits(int32_t i_layer, int32_t n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 ||
           (i_layer - n_layer / 8) % 3 == 2;
}

static bool is_block_quantized(uint32_t type)
{
    const struct lg_qtype_info *q = lg_qtype_get(type);
    return q && q->block_size > 1;
}

/* The rule-based choice before the compatibility fallback. */
static uint32_t mix_rules(struct lg_quant_mix *m, const char *name, const uint64_t *ne)
{
    const enum lg_ftype ft = m->ftype;
    uint32_t t = m->base_type;
    const uint32_t bs = lg_qtype_get(t)->block_size;

    if (strcmp(name, "output.weight") == 0 ||
        (!m->has_output && strcmp(name, "token_embd.weight") == 0)) {
        if (ne[0] % bs != 0)
            t = LG_QTYPE_Q8_0;
        else if (t != LG_QTYPE_Q8_0)
            t = LG_QTYPE_Q6_K;
    } else if (strcmp(name, "token_embd.weight") == 0 ||
               strcmp(name, "per_layer_token_embd.weight") == 0) {
        /* only the IQ1/IQ2/IQ3/TQ ftypes (not produced here) change these */
    } else if (contains(name, "attn_v.weight")) {
        const int32_t i = m->i_attention_wv, n = m->n_attention_wv;
        if (ft == LG_FTYPE_Q2_K)
            t = m->n_gqa >= 4 ? LG_QTYPE_Q4_K : LG_QTYPE_Q3_K;
        else if (ft == LG_FTYPE_Q3_K_M)
            t = i < 2 ? LG_QTYPE_Q5_K : LG_QTYPE_Q4_K;
        else if (ft == LG_FTYPE_Q3_K_L)
            t = LG_QTYPE_Q5_K;
        else if ((ft == LG_FTYPE_IQ4_NL || ft == LG_FTYPE_IQ4_XS) && m->n_gqa >= 4)
            t = LG_QTYPE_Q5_K;
        else if ((ft == LG_FTYPE_Q4_K_M || ft == LG_FTYPE_Q5_K_M) && use_more_bits(i, n))
            t = LG_QTYPE_Q6_K;
        else if (ft == LG_FTYPE_Q4_K_S && i < 4)
            t = LG_QTYPE_Q5_K;
        if (m->n_expert == 8)
            t = LG_QTYPE_Q8_0;
        m->i_attention_wv++;
    } else if (contains(name, "attn_k.weight")) {
        if (m->n_expert == 8)
            t = LG_QTYPE_Q8_0;
    } else if (contains(name, "ffn_down")) {
        int32_t i_layer = m->i_ffn_down, n_layer = m->n_layer;
        if (m->n_expert > 1) { /* experts are not consecutive: take the layer from the name */
            int l = -1;
            if (sscanf(name, "blk.%d.", &l) == 1 && l >= 0)
                i_layer = l;
        }
        if (ft == LG_FTYPE_Q2_K)
            t = LG_QTYPE_Q3_K;
        else if (ft == LG_FTYPE_Q3_K_M)
            t = i_layer < n_layer / 16 ? LG_QTYPE_Q5_K : LG_QTYPE_Q4_K;
        else if (ft == LG_FTYPE_Q3_K_L)
            t = LG_QTYPE_Q5_K;
        else if (ft == LG_FTYPE_Q4_K_M) {
            if (use_more_bits(i_layer, n_layer))
                t = LG_QTYPE_Q6_K;
        } else if (i_layer < n_layer / 8 && (ft == LG_FTYPE_IQ4_NL || ft == LG_FTYPE_IQ4_XS))
            t = LG_QTYPE_Q5_K;
        else if (ft == LG_FTYPE_Q5_K_M && use_more_bits(i_layer, n_layer))
            t = LG_QTYPE_Q6_K;
        else if (ft == LG_FTYPE_Q4_K_S && i_layer < n_layer / 8)
            t = LG_QTYPE_Q5_K;
        m->i_ffn_down++;
    } else if (contains(name, "attn_output.weight")) {
        if (m->n_expert == 8) {
            if (ft == LG_FTYPE_Q2_K || ft == LG_FTYPE_Q3_K_S || ft == LG_FTYPE_Q3_K_M ||
                ft == LG_FTYPE_IQ4_NL || ft == LG_FTYPE_Q4_K_S || ft == LG_FTYPE_Q4_K_M ||
                ft == LG_FTYPE_IQ4_XS)
                t = LG_QTYPE_Q5_K;
        } else if (ft == LG_FTYPE_Q2_K) {
            t = LG_QTYPE_Q3_K;
        } else if (ft == LG_FTYPE_Q3_K_M) {
            t = LG_QTYPE_Q4_K;
        } else if (ft == LG_FTYPE_Q3_K_L) {
            t = LG_QTYPE_Q5_K;
        }
    } else if (contains(name, "attn_qkv.weight")) {
        if (ft == LG_FTYPE_Q3_K_M || ft == LG_FTYPE_Q3_K_L)
            t = LG_QTYPE_Q4_K;
        else if (ft == LG_FTYPE_Q4_K_M)
            t = LG_QTYPE_Q5_K;
        else if (ft == LG_FTYPE_Q5_K_M)
            t = LG_QTYPE_Q6_K;
    }
    return t;
}

/* A type whose block divides n_per_row, as llama.cpp falls back. */
static uint32_t compatible(struct lg_quant_mix *m, uint32_t t, uint64_t n_per_row)
{
    if (n_per_row % lg_qtype_get(t)->block_size == 0)
        return t;
    m->n_fallback++;
    switch (t) {
    case LG_QTYPE_Q2_K:
    case LG_QTYPE_Q3_K:
    case LG_QTYPE_IQ4_XS:
        t = LG_QTYPE_IQ4_NL;
        break;
    case LG_QTYPE_Q4_K:
        t = LG_QTYPE_Q5_0;
        break;
    case LG_QTYPE_Q5_K:
        t = LG_QTYPE_Q5_1;
        break;
    case LG_QTYPE_Q6_K:
        t = LG_QTYPE_Q8_0;
        break;
    default:
        t = LG_QTYPE_F16;
        break;
    }
    if (n_per_row % lg_qtype_get(t)->block_size != 0)
        t = LG_QTYPE_F16;
    return t;
}

uint32_t lg_quant_mix_choose(struct lg_quant_mix *m, const char *name, uint32_t n_dims,
                             const uint64_t *ne, uint32_t src_type)
{
    uint32_t n_eff = 1;
    for (uint32_t d = 0; d < n_dims && d < 4; d++)
        if (ne[d] > 1)
            n_eff = d + 1;
    if (!lg_quant_mix_is_quantizable(name, n_eff))
        return src_type;
    uint32_t t = m->base_type;
    if (!m->pure && is_block_quantized(t))
        t = mix_rules(m, name, ne);
    return compatible(m, t, ne[0]);
}
