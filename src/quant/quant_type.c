/* quant_type.c: the GGML type table (names, block and byte sizes), row-size arithmetic,
 * f16/bf16 scalar conversions, and the row dispatchers lg_dequant_row / lg_quant_row.
 *
 * Invariant: every id in the table has block_size >= 1 and type_size >= 1, and an entry
 * has can_dequant / can_quant exactly when its function pointer is set. Holes (ids GGML
 * retired: 4, 5, 31..33, 36..38) have no entry. Pure functions: any thread.
 */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_blocks.h"

struct lg_qtype_entry {
    struct lg_qtype_info info;
    lg_dequant_fn dequant;
    lg_quant_fn quant;
};

static void dequant_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void quant_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = lg_f16_to_f32(h);
    }
}

static void quant_f16(const float *src, void *dst, int64_t n)
{
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = lg_f32_to_f16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = lg_bf16_to_f32(h);
    }
}

static void quant_bf16(const float *src, void *dst, int64_t n)
{
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = lg_f32_to_bf16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* T: a type we (de)quantize; N: one we only know the size of. */
#define T(id, nm, bs, ts, dq, q) [id] = {{nm, bs, ts, true, true}, dq, q}
#define N(id, nm, bs, ts) [id] = {{nm, bs, ts, false, false}, NULL, NULL}

static const struct lg_qtype_entry g_types[LG_QTYPE_COUNT] = {
    T(LG_QTYPE_F32, "F32", 1, 4, dequant_f32, quant_f32),
    T(LG_QTYPE_F16, "F16", 1, 2, dequant_f16, quant_f16),
    T(LG_QTYPE_Q4_0, "Q4_0", 32, 18, lg_dequant_q4_0, lg_quant_q4_0),
    T(LG_QTYPE_Q4_1, "Q4_1", 32, 20, lg_dequant_q4_1, lg_quant_q4_1),
    T(LG_QTYPE_Q5_0, "Q5_0", 32, 22, lg_dequant_q5_0, lg_quant_q5_0),
    T(LG_QTYPE_Q5_1, "Q5_1", 32, 24, lg_dequant_q5_1, lg_quant_q5_1),
    T(LG_QTYPE_Q8_0, "Q8_0", 32, 34, lg_dequant_q8_0, lg_quant_q8_0),
    T(LG_QTYPE_Q8_1, "Q8_1", 32, 36, lg_dequant_q8_1, lg_quant_q8_1),
    T(LG_QTYPE_Q2_K, "Q2_K", 256, 84, lg_dequant_q2_k, lg_quant_q2_k),
    T(LG_QTYPE_Q3_K, "Q3_K", 256, 110, lg_dequant_q3_k, lg_quant_q3_k),
    T(LG_QTYPE_Q4_K, "Q4_K", 256, 144, lg_dequant_q4_k, lg_quant_q4_k),
    T(LG_QTYPE_Q5_K, "Q5_K", 256, 176, lg_dequant_q5_k, lg_quant_q5_k),
    T(LG_QTYPE_Q6_K, "Q6_K", 256, 210, lg_dequant_q6_k, lg_quant_q6_k),
    T(LG_QTYPE_Q8_K, "Q8_K", 256, 292, lg_dequant_q8_k, lg_quant_q8_k),
    N(LG_QTYPE_IQ2_XXS, "IQ2_XXS", 256, 66),
    N(LG_QTYPE_IQ2_XS, "IQ2_XS", 256, 74),
    N(LG_QTYPE_IQ3_XXS, "IQ3_XXS", 256, 98),
    N(LG_QTYPE_IQ1_S, "IQ1_S", 256, 50),
    T(LG_QTYPE_IQ4_NL, "IQ4_NL", 32, 18, lg_dequant_iq4_nl, lg_quant_iq4_nl),
    N(LG_QTYPE_IQ3_S, "IQ3_S", 256, 110),
    N(LG_QTYPE_IQ2_S, "IQ2_S", 256, 82),
    T(LG_QTYPE_IQ4_XS, "IQ4_XS", 256, 136, lg_dequant_iq4_xs, lg_quant_iq4_xs),
    N(LG_QTYPE_I8, "I8", 1, 1),
    N(LG_QTYPE_I16, "I16", 1, 2),
    N(LG_QTYPE_I32, "I32", 1, 4),
    N(LG_QTYPE_I64, "I64", 1, 8),
    N(LG_QTYPE_F64, "F64", 1, 8),
    N(LG_QTYPE_IQ1_M, "IQ1_M", 256, 56),
    T(LG_QTYPE_BF16, "BF16", 1, 2, dequant_bf16, quant_bf16),
    N(LG_QTYPE_TQ1_0, "TQ1_0", 256, 54),
    N(LG_QTYPE_TQ2_0, "TQ2_0", 256, 66),
    T(LG_QTYPE_MXFP4, "MXFP4", 32, 17, lg_dequant_mxfp4, lg_quant_mxfp4),
    N(LG_QTYPE_NVFP4, "NVFP4", 64, 36),
    N(LG_QTYPE_Q1_0, "Q1_0", 128, 18),
};

#undef T
#undef N

static const struct lg_qtype_entry *entry(uint32_t type)
{
    if (type >= LG_QTYPE_COUNT || g_types[type].info.name == NULL)
        return NULL;
    return &g_types[type];
}

const struct lg_qtype_info *lg_qtype_get(uint32_t type)
{
    const struct lg_qtype_entry *e = entry(type);
    return e ? &e->info : NULL;
}

int lg_qtype_from_name(const char *name)
{
    if (name == NULL)
        return -1;
    for (int t = 0; t < LG_QTYPE_COUNT; t++) {
        const char *a = g_types[t].info.name, *b = name;
        if (a == NULL)
            continue;
        while (*a && *b && toupper((unsigned char)*a) == toupper((unsigned char)*b)) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0')
            return t;
    }
    return -1;
}

enum lg_status lg_qtype_row_bytes(uint32_t type, uint64_t n, uint64_t *out)
{
    const struct lg_qtype_entry *e = entry(type);
    if (e == NULL)
        return LG_ERR_UNSUPPORTED;
    if (n % e->info.block_size != 0)
        return LG_ERR_FORMAT;
    uint64_t n_blocks = n / e->info.block_size;
    if (n_blocks > UINT64_MAX / e->info.type_size)
        return LG_ERR_RANGE;
    if (out)
        *out = n_blocks * e->info.type_size;
    return LG_OK;
}

enum lg_status lg_dequant_row_checked(uint32_t type, const void *src, float *dst, int64_t n)
{
    const struct lg_qtype_entry *e = entry(type);
    if (e == NULL || e->dequant == NULL)
        return LG_ERR_UNSUPPORTED;
    if (n < 0 || n % e->info.block_size != 0)
        return LG_ERR_FORMAT;
    if (n > 0)
        e->dequant(src, dst, n);
    return LG_OK;
}

enum lg_status lg_quant_row_checked(uint32_t type, const float *src, void *dst, int64_t n)
{
    const struct lg_qtype_entry *e = entry(type);
    if (e == NULL || e->quant == NULL)
        return LG_ERR_UNSUPPORTED;
    if (n < 0 || n % e->info.block_size != 0)
        return LG_ERR_FORMAT;
    if (n > 0)
        e->quant(src, dst, n);
    return LG_OK;
}

void lg_dequant_row(enum lg_qtype type, const void *src, float *dst, int64_t n)
{
    if (lg_dequant_row_checked((uint32_t)type, src, dst, n) != LG_OK) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
    }
}

void lg_quant_row(enum lg_qtype type, const float *src, void *dst, int64_t n)
{
    (void)lg_quant_row_checked((uint32_t)type, src, dst, n);
}

/* ---- scalar conversions ------------------------------------------------------------------ */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float lg_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf, NaN (payload kept) */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { /* zero and subnormals: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t lg_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quieted, top payload bits kept (as F16C hardware) */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity (inf included) */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal half: round the 13 dropped bits to nearest even */
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds (ties to even) to zero */
        return sign;
    /* subnormal half: value in units of 2^-24 is mant * 2^(exp - 126), exp in 102..112 */
    uint32_t exp = ax >> 23;
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp; /* 14..24 */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);
}

float lg_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t lg_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: force quiet, keep sign and top payload */
        return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
