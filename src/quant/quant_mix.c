/* quant_mix.c: per-tensor type choice for file quantization (the llama.cpp mixes).
 *
 * Facts from llama.cpp's src/llama-quant.cpp (no importance matrix, no overrides), restated
 * in our own words and code:
 *  - only tensors named *weight with >= 2 effective dims are quantized, minus norms, the MoE
 *    router, Gemma 3n's altup/laurel/per_layer_model_proj, position/token-type embeddings,
 *    Mamba/RWKV small tables, T5's relative bias and some multimodal tables;
 *  - the mix rules apply only when the ftype's base type is a block-quantized type (not for
 *    F32/F16/BF16), and not in "pure" mode;
 *  - a tensor's category is found by name in a fixed order (attn_qkv, attn_kv_b, attn_v,
 *    attn_k, attn_q, attn_output, ffn_up, ffn_gate, ffn_down); attn_qkv and attn_kv_b count as
 *    attn_v ("more sensitive to quantization") and share its counter;
 *  - "use_more_bits(i, n)": the first and last eighth of the layers and every third between;
 *    for attn_v, i and n count attn_v-like tensors; for ffn_down, i counts ffn_down tensors
 *    (the layer number from the name in MoE models) and n is block_count;
 *  - after the rules, a type whose block does not divide the row length falls back.
 * Invariant: lg_quant_mix_choose returns a type whose block size divides ne[0], or src_type.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quant/quant.h"
#include "quant/quant_mix.h"

static const struct {
    const char *name;
    enum lg_ftype ftype;
    uint32_t base;
} g_ftypes[] = {
    {"F32", LG_FTYPE_ALL_F32, LG_QTYPE_F32},
    {"F16", LG_FTYPE_F16, LG_QTYPE_F16},
    {"BF16", LG_FTYPE_BF16, LG_QTYPE_BF16},
    {"Q4_0", LG_FTYPE_Q4_0, LG_QTYPE_Q4_0},
    {"Q4_1", LG_FTYPE_Q4_1, LG_QTYPE_Q4_1},
    {"Q5_0", LG_FTYPE_Q5_0, LG_QTYPE_Q5_0},
    {"Q5_1", LG_FTYPE_Q5_1, LG_QTYPE_Q5_1},
    {"Q8_0", LG_FTYPE_Q8_0, LG_QTYPE_Q8_0},
    {"Q2_K", LG_FTYPE_Q2_K, LG_QTYPE_Q2_K},
    {"Q3_K_S", LG_FTYPE_Q3_K_S, LG_QTYPE_Q3_K},
    {"Q3_K_M", LG_FTYPE_Q3_K_M, LG_QTYPE_Q3_K},
    {"Q3_K_L", LG_FTYPE_Q3_K_L, LG_QTYPE_Q3_K},
    {"Q4_K_S", LG_FTYPE_Q4_K_S, LG_QTYPE_Q4_K},
    {"Q4_K_M", LG_FTYPE_Q4_K_M, LG_QTYPE_Q4_K},
    {"Q5_K_S", LG_FTYPE_Q5_K_S, LG_QTYPE_Q5_K},
    {"Q5_K_M", LG_FTYPE_Q5_K_M, LG_QTYPE_Q5_K},
    {"Q6_K", LG_FTYPE_Q6_K, LG_QTYPE_Q6_K},
    {"IQ4_NL", LG_FTYPE_IQ4_NL, LG_QTYPE_IQ4_NL},
    {"IQ4_XS", LG_FTYPE_IQ4_XS, LG_QTYPE_IQ4_XS},
    {"MXFP4_MOE", LG_FTYPE_MXFP4_MOE, LG_QTYPE_MXFP4},
    /* aliases (llama-quantize accepts these for the _M mixes); after the canonical names */
    {"Q3_K", LG_FTYPE_Q3_K_M, LG_QTYPE_Q3_K},
    {"Q4_K", LG_FTYPE_Q4_K_M, LG_QTYPE_Q4_K},
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

/* N of a name starting "blk.N" (as sscanf "blk.%d." reads it), else -1. */
static long layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || v < -1000000000L || v > 1000000000L)
        return -1;
    return v;
}

enum category {
    CAT_OTHER,
    CAT_OUTPUT,
    CAT_TOKEN_EMBD,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_Q,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN
};

/* First match wins, in llama.cpp's order. */
static enum category category_of(const char *name)
{
    static const struct {
        const char *sub;
        enum category cat;
    } subs[] = {
        {"attn_qkv.weight", CAT_ATTN_QKV},   {"attn_kv_b.weight", CAT_ATTN_KV_B},
        {"attn_v.weight", CAT_ATTN_V},       {"attn_k.weight", CAT_ATTN_K},
        {"attn_q.weight", CAT_ATTN_Q},       {"attn_output.weight", CAT_ATTN_OUTPUT},
        {"ffn_up", CAT_FFN_UP},              {"ffn_gate", CAT_FFN_GATE},
        {"ffn_down", CAT_FFN_DOWN},
    };
    if (strcmp(name, "output.weight") == 0)
        return CAT_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0)
        return CAT_TOKEN_EMBD;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (contains(name, subs[i].sub))
            return subs[i].cat;
    return CAT_OTHER;
}

static bool is_attn_v_like(enum category c)
{
    return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

void lg_quant_mix_scan_names(struct lg_quant_mix *m, const char *const *names, uint64_t n)
{
    long max_layer = -1;
    for (uint64_t i = 0; i < n; i++) {
        enum category c = category_of(names[i]);
        if (is_attn_v_like(c))
            m->n_attention_wv++;
        if (c == CAT_OUTPUT)
            m->has_output = true;
        long l = layer_of(names[i]);
        if (l > max_layer && l < INT32_MAX)
            max_layer = l;
    }
    if (m->n_layer <= 0)
        m->n_layer = (int32_t)(max_layer + 1);
}

struct order_item {
    long layer;
    const char *name;
    uint64_t idx;
};

static int order_cmp(const void *pa, const void *pb)
{
    const struct order_item *a = pa, *b = pb;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    int c = strcmp(a->name, b->name);
    if (c != 0)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx; /* names are unique in a valid file */
}

bool lg_quant_mix_order(const char *const *names, uint64_t n, uint64_t *order)
{
    for (uint64_t i = 0; i < n; i++)
        order[i] = i;
    if (n < 2)
        return true;
    if (n > SIZE_MAX / sizeof(struct order_item))
        return false;
    struct order_item *it = malloc((size_t)n * sizeof *it);
    if (!it)
        return false;
    for (uint64_t i = 0; i < n; i++)
        it[i] = (struct order_item){layer_of(names[i]), names[i], i};
    qsort(it, (size_t)n, sizeof *it, order_cmp);
    for (uint64_t i = 0; i < n; i++)
        order[i] = it[i].idx;
    free(it);
    return true;
}

bool lg_quant_mix_is_quantizable(const char *name, uint32_t n_dims_effective)
{
    static const char *const never[] = {
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    };
    if (!ends_with(name, "weight") || n_dims_effective < 2)
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

static uint32_t rule_attn_v(struct lg_quant_mix *m, uint32_t t)
{
    const enum lg_ftype ft = m->ftype;
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
    /* 70B LLaMA: 8 heads share attn_v, so it is small; more bits cost little */
    if (m->is_70b && (t == LG_QTYPE_Q3_K || t == LG_QTYPE_Q4_K))
        t = LG_QTYPE_Q5_K;
    if (m->n_expert == 8)
        t = LG_QTYPE_Q8_0;
    m->i_attention_wv++;
    return t;
}

static uint32_t rule_ffn_down(struct lg_quant_mix *m, const char *name, uint32_t t)
{
    const enum lg_ftype ft = m->ftype;
    int32_t i_layer = m->i_ffn_down;
    const int32_t n_layer = m->n_layer;
    if (m->n_expert > 1) { /* experts are not consecutive: take the layer from the name */
        long l = layer_of(name);
        if (l >= 0 && l < n_layer)
            i_layer = (int32_t)l;
    }
    const bool more = use_more_bits(i_layer, n_layer);
    if (ft == LG_FTYPE_Q2_K)
        t = LG_QTYPE_Q3_K;
    else if (ft == LG_FTYPE_Q3_K_M)
        t = i_layer < n_layer / 16 ? LG_QTYPE_Q5_K
            : !m->is_falcon || more ? LG_QTYPE_Q4_K
                                    : LG_QTYPE_Q3_K;
    else if (ft == LG_FTYPE_Q3_K_L)
        t = m->is_falcon ? LG_QTYPE_Q4_K : LG_QTYPE_Q5_K;
    else if (ft == LG_FTYPE_Q4_K_M) {
        if (m->is_falcon)
            t = i_layer < n_layer / 16 ? LG_QTYPE_Q6_K : more ? LG_QTYPE_Q5_K : LG_QTYPE_Q4_K;
        else if (more)
            t = LG_QTYPE_Q6_K;
    } else if (i_layer < n_layer / 8 && (ft == LG_FTYPE_IQ4_NL || ft == LG_FTYPE_IQ4_XS))
        t = LG_QTYPE_Q5_K;
    else if (ft == LG_FTYPE_Q5_K_M && more)
        t = LG_QTYPE_Q6_K;
    else if (ft == LG_FTYPE_Q4_K_S && !m->is_falcon && i_layer < n_layer / 8)
        t = LG_QTYPE_Q5_K;
    m->i_ffn_down++;
    return t;
}

static uint32_t rule_attn_output(const struct lg_quant_mix *m, uint32_t t)
{
    const enum lg_ftype ft = m->ftype;
    if (m->is_falcon)
        return ft == LG_FTYPE_Q3_K_L ? LG_QTYPE_Q4_K : t;
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
    return t;
}

/* The rule-based choice before the compatibility fallback. */
static uint32_t mix_rules(struct lg_quant_mix *m, const char *name, uint32_t n_dims,
                          const uint64_t *ne)
{
    const enum category cat = category_of(name);
    uint32_t t = m->base_type;

    if (cat == CAT_OUTPUT || (!m->has_output && cat == CAT_TOKEN_EMBD)) {
        /* the output projection (or the tied embedding that serves as it) */
        if (m->ftype == LG_FTYPE_MXFP4_MOE || m->is_falcon ||
            ne[0] % lg_qtype_get(t)->block_size != 0)
            t = LG_QTYPE_Q8_0;
        else if (t != LG_QTYPE_Q8_0)
            t = LG_QTYPE_Q6_K;
        return t;
    }
    if (m->ftype == LG_FTYPE_MXFP4_MOE) /* expert stacks MXFP4, everything else Q8_0 */
        return n_dims >= 3 && ne[2] > 1 ? LG_QTYPE_MXFP4 : LG_QTYPE_Q8_0;
    switch (cat) {
    case CAT_ATTN_V:
    case CAT_ATTN_QKV:
    case CAT_ATTN_KV_B:
        return rule_attn_v(m, t);
    case CAT_ATTN_K:
        return m->n_expert == 8 ? LG_QTYPE_Q8_0 : t;
    case CAT_FFN_DOWN:
        return rule_ffn_down(m, name, t);
    case CAT_ATTN_OUTPUT:
        return rule_attn_output(m, t);
    default: /* untied token_embd: only the IQ1/IQ2/IQ3/TQ ftypes (not ours) change it */
        return t;
    }
}

/* A type whose block divides n_per_row, as llama.cpp falls back. */
static uint32_t compatible(struct lg_quant_mix *m, uint32_t t, uint64_t n_per_row)
{
    if (n_per_row % lg_qtype_get(t)->block_size == 0)
        return t;
    m->n_fallback++;
    switch (t) {
    case LG_QTYPE_IQ4_XS:
        t = LG_QTYPE_IQ4_NL;
        break;
    case LG_QTYPE_Q2_K:
    case LG_QTYPE_Q3_K:
        t = LG_QTYPE_Q4_0;
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
    default: /* llama.cpp gives up here; F16 keeps the tensor usable */
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
    if (!lg_quant_mix_is_quantizable(name, n_eff) || !lg_qtype_get(m->base_type))
        return src_type;
    uint32_t t = m->base_type;
    if (!is_block_quantized(t))
        return t;
    if (!m->pure)
        t = mix_rules(m, name, n_dims, ne);
    return compatible(m, t, ne[0]);
}
