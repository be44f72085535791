/* quant_iq.c: reference (de)quantization of the non-linear 4-bit formats IQ4_NL, IQ4_XS and
 * MXFP4 (layouts in quant_blocks.h).
 *
 * IQ4_NL / IQ4_XS map each element to one of 16 fixed non-uniform levels (kvalues_iq4nl)
 * times a scale; the quantizer follows ggml's non-imatrix path (x^2 weights, 15 candidate
 * scales per 32-element block). MXFP4 is OCP microscaling FP4: E2M1 values and a shared
 * power-of-two exponent per 32 elements; its quantizer matches gguf-py (nearest level, the
 * lower index on ties).
 */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

const int8_t lg_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

const int8_t lg_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static const float k_group_eps = 1e-15f;

float lg_e8m0_to_f32_half(uint8_t e)
{
    /* 2^(e-128): e >= 2 is a normal float with biased exponent e-1; e = 0, 1 are the
     * subnormals 2^-128 and 2^-127. */
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest, ties to even (as quant_k.c); callers clamp or the input is bounded. */
static int nearest_int(float v)
{
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Index of the level in sorted val[16] nearest to x; ties go to the upper level. NaN maps
 * to some valid index. */
static int best_index_iq4(float x)
{
    const int8_t *val = lg_kvalues_iq4nl;
    if (!(x > val[0]))
        return 0;
    if (x >= val[15])
        return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < val[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* Best scale for one block of bs elements (weights x^2), levels into L; 0 for a zero block. */
static float iq4_block_scale(const float *xb, int bs, uint8_t *L)
{
    const int ntry = 7;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < bs; j++) {
        float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < k_group_eps)
        return 0.0f;
    const float v0 = lg_kvalues_iq4nl[0];
    float d = -max / v0;
    float id = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < bs; j++) {
        int l = best_index_iq4(id * xb[j]);
        L[j] = (uint8_t)l;
        float q = lg_kvalues_iq4nl[l];
        float w = xb[j] * xb[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; itry++) {
        id = (itry + v0) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < bs; j++) {
            float q = lg_kvalues_iq4nl[best_index_iq4(id * xb[j])];
            float w = xb[j] * xb[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

static void pack_nibbles32(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

/* ---- IQ4_NL -------------------------------------------------------------------------- */

void lg_quant_iq4_nl(const float *src, void *dst, int64_t n)
{
    uint8_t L[LG_QK];
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_iq4_nl b;
        float d = iq4_block_scale(x, LG_QK, L);
        b.d = lg_f32_to_f16(d);
        /* levels re-chosen for the final scale (the f32 one, as ggml) */
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < LG_QK; j++)
            L[j] = (uint8_t)best_index_iq4(id * x[j]);
        pack_nibbles32(L, b.qs);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_iq4_nl(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_iq4_nl b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK / 2; j++) {
            y[j] = d * (float)lg_kvalues_iq4nl[b.qs[j] & 0x0f];
            y[j + LG_QK / 2] = d * (float)lg_kvalues_iq4nl[b.qs[j] >> 4];
        }
    }
}

/* ---- IQ4_XS -------------------------------------------------------------------------- */

void lg_quant_iq4_xs(const float *src, void *dst, int64_t n)
{
    uint8_t L[LG_QK_K];
    float scales[LG_QK_K / 32];
    for (int64_t ibl = 0; ibl < n / LG_QK_K; ibl++) {
        const float *x = src + ibl * LG_QK_K;
        struct lg_block_iq4_xs b;
        memset(&b, 0, sizeof b);
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int ib = 0; ib < LG_QK_K / 32; ib++) {
            scales[ib] = iq4_block_scale(x + 32 * ib, 32, L + 32 * ib);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32;
        b.d = lg_f32_to_f16(d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t scales_h = 0;
        for (int ib = 0; ib < LG_QK_K / 32; ib++) {
            int l = nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * l;
            const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; j++)
                L[32 * ib + j] = (uint8_t)best_index_iq4(idl * x[32 * ib + j]);
            l += 32;
            b.scales_l[ib / 2] |= (uint8_t)((l & 0x0f) << (4 * (ib % 2)));
            scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
        b.scales_h = scales_h;
        for (int ib = 0; ib < LG_QK_K / 32; ib++)
            pack_nibbles32(L + 32 * ib, b.qs + 16 * ib);
        memcpy((uint8_t *)dst + ibl * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_iq4_xs(const void *src, float *dst, int64_t n)
{
    for (int64_t ibl = 0; ibl < n / LG_QK_K; ibl++) {
        struct lg_block_iq4_xs b;
        memcpy(&b, (const uint8_t *)src + ibl * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float *y = dst + ibl * LG_QK_K;
        for (int ib = 0; ib < LG_QK_K / 32; ib++) {
            int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                     (((b.scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = b.qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[32 * ib + j] = dl * (float)lg_kvalues_iq4nl[qs[j] & 0x0f];
                y[32 * ib + j + 16] = dl * (float)lg_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

/* ---- MXFP4 --------------------------------------------------------------------------- */

void lg_quant_mxfp4(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_mxfp4 b;
        float amax = 0.0f;
        for (int j = 0; j < LG_QK; j++)
            if (fabsf(x[j]) > amax)
                amax = fabsf(x[j]);
        /* the largest level is 6 = 1.5 * 2^2, so the block exponent is floor(log2 amax) - 2 */
        int e = 0;
        if (amax > 0.0f && isfinite(amax)) {
            e = (int)floorf(log2f(amax)) - 2 + 127;
            e = e < 0 ? 0 : e > 254 ? 254 : e;
        }
        b.e = (uint8_t)e;
        const float d = lg_e8m0_to_f32_half(b.e);
        uint8_t L[LG_QK];
        for (int j = 0; j < LG_QK; j++) {
            int best = 0;
            float best_err = INFINITY;
            for (int k = 0; k < 16; k++) {
                float err = fabsf(d * (float)lg_kvalues_mxfp4[k] - x[j]);
                if (err < best_err) {
                    best_err = err;
                    best = k;
                }
            }
            L[j] = (uint8_t)best;
        }
        pack_nibbles32(L, b.qs);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_mxfp4(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_mxfp4 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_e8m0_to_f32_half(b.e);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK / 2; j++) {
            y[j] = d * (float)lg_kvalues_mxfp4[b.qs[j] & 0x0f];
            y[j + LG_QK / 2] = d * (float)lg_kvalues_mxfp4[b.qs[j] >> 4];
        }
    }
}
