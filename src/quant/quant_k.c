/* quant_k.c: reference (de)quantization of the K-quant super-block formats Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K and Q8_K (256 elements per block; layouts in quant_blocks.h).
 *
 * The quantizers reproduce ggml's reference (non-imatrix) algorithms, i.e. what
 * `llama-quantize` writes when given no importance matrix:
 *  - Q2_K: per 16-element sub-block an affine fit (scale, min) searched over 16 candidate
 *    inverse scales minimising the |x|-weighted absolute error; scales and mins then stored
 *    as 4-bit multiples of two f16 super-scales.
 *  - Q3_K: per sub-block a symmetric 3-bit fit refined by coordinate descent (x^2 weights);
 *    6-bit signed sub-scales of one f16 super-scale.
 *  - Q4_K / Q5_K: per 32-element sub-block an affine fit searched over 21 / 16 candidates,
 *    weights (rms + |x|), squared error; 6-bit scales and mins.
 *  - Q6_K: per 16-element sub-block a symmetric 6-bit fit searched over 19 candidates (x^2
 *    weights); int8 sub-scales.
 *  - Q8_K: int8 with one f32 scale, plus 16-element sums for the dot-product kernels.
 * Arithmetic is f32 in ggml's order; ISO C mode keeps GCC from contracting into FMAs.
 * Quants are always re-derived from the f16-rounded scales actually stored, so dequantized
 * values are the best the stored scales allow.
 */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

enum { K_SUB16 = LG_QK_K / 16, K_SUB32 = LG_QK_K / 32 };

/* Smallest sub-block magnitude treated as non-zero (ggml's GROUP_MAX_EPS). */
static const float k_group_eps = 1e-15f;

/* Round to nearest, ties to even, for |v| < 2^22 (adds 1.5 * 2^23 so the integer lands in
 * the mantissa). Larger, inf or NaN inputs give some value in [-2^22, 2^22), which every
 * caller clamps: garbage in, clamped garbage out, never UB. */
static int nearest_int(float v)
{
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

static int imax(int a, int b)
{
    return a > b ? a : b;
}

/* ---- shared fitting helpers ---------------------------------------------------------- */

/* Symmetric fit of x[n] to integers in [-nmax, nmax-1], weights x^2 (ggml make_qx_quants,
 * rmse_type 1). L gets level + nmax. Returns the scale (negative when the largest-magnitude
 * value is positive: that value maps to -nmax). */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < k_group_eps) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric 3-bit-style fit with coordinate descent (ggml make_q3_quants, do_rmse). L gets
 * level + nmax. */
static float fit_symmetric_descent(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < k_group_eps) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Affine fit x ~ scale * L - min_out with L in [0, nmax] (ggml make_qkx2_quants): start from
 * the [min, max] range, then try nstep+1 inverse scales (rmin + rdelta*is + nmax)/(max-min),
 * each followed by a weighted least-squares (scale, min) solve; keep the lowest weighted
 * error (absolute when use_mad, else squared). The min is clamped to <= 0 (so a block of
 * positives keeps 0 reachable). *the_min gets -min (>= 0). */
static float fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                        float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                        bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f)
        min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* 6-bit scale/min pair k of the 12-byte Q4_K/Q5_K scale array. */
static void get_scale_min_k4(int k, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (k < 4) {
        *sc = q[k] & 63;
        *m = q[k + 4] & 63;
    } else {
        *sc = (uint8_t)((q[k + 4] & 0x0f) | ((q[k - 4] >> 6) << 4));
        *m = (uint8_t)((q[k + 4] >> 4) | ((q[k] >> 6) << 4));
    }
}

/* Stores 6-bit ls/lm for sub-block k into the 12-byte array (which starts zeroed). */
static void put_scale_min_k4(int k, uint8_t *q, uint8_t ls, uint8_t lm)
{
    if (k < 4) {
        q[k] = ls;
        q[k + 4] = lm;
    } else {
        q[k + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
        q[k - 4] |= (uint8_t)((ls >> 4) << 6);
        q[k] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* 6-bit signed scale k (biased by 32) of the Q3_K scale array. */
static int q3k_scale(const uint8_t *s, int k)
{
    int lo = k < 8 ? (s[k] & 0x0f) : (s[k - 8] >> 4);
    int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Packs 2-bit levels L[256] as element 128h + 32j + l -> bits 2j of qs[32h + l]. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < LG_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

/* ---- Q2_K ---------------------------------------------------------------------------- */

void lg_quant_q2_k(const float *src, void *dst, int64_t n)
{
    uint8_t L[LG_QK_K], Laux[16];
    float weights[16], mins[K_SUB16], scales[K_SUB16];
    const float q4scale = 15.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const float *x = src + ib * LG_QK_K;
        struct lg_block_q2_k b;
        memset(&b, 0, sizeof b);
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < K_SUB16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_affine(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                   -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < K_SUB16; j++)
                b.scales[j] = (uint8_t)imax(0, imin(15, nearest_int(iscale * scales[j])));
            b.d = lg_f32_to_f16(max_scale / q4scale);
        } else {
            b.d = lg_f32_to_f16(0.0f);
        }
        if (max_min > 0.0f) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < K_SUB16; j++)
                b.scales[j] |= (uint8_t)(imax(0, imin(15, nearest_int(iscale * mins[j]))) << 4);
            b.dmin = lg_f32_to_f16(max_min / q4scale);
        } else {
            b.dmin = lg_f32_to_f16(0.0f);
        }
        const float dd = lg_f16_to_f32(b.d), dmin = lg_f16_to_f32(b.dmin);
        for (int j = 0; j < K_SUB16; j++) {
            const float d = dd * (b.scales[j] & 0x0f);
            if (d == 0.0f)
                continue;
            const float dm = dmin * (b.scales[j] >> 4);
            for (int i = 0; i < 16; i++) {
                int l = nearest_int((x[16 * j + i] + dm) / d);
                L[16 * j + i] = (uint8_t)imax(0, imin(3, l));
            }
        }
        pack_2bit(L, b.qs);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q2_k(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q2_k b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d), dmin = lg_f16_to_f32(b.dmin);
        float *y = dst + ib * LG_QK_K;
        for (int e = 0; e < LG_QK_K; e++) {
            int h = e / 128, j = (e % 128) / 32, l = e % 32;
            uint8_t sc = b.scales[e / 16];
            float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
            y[e] = dl * (float)((b.qs[32 * h + l] >> (2 * j)) & 3) - ml;
        }
    }
}

/* ---- Q3_K ---------------------------------------------------------------------------- */

void lg_quant_q3_k(const float *src, void *dst, int64_t n)
{
    int8_t L[LG_QK_K];
    float scales[K_SUB16];
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const float *x = src + ib * LG_QK_K;
        struct lg_block_q3_k b;
        memset(&b, 0, sizeof b);
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < K_SUB16; j++) {
            scales[j] = fit_symmetric_descent(16, 4, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        if (max_scale != 0.0f) {
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < K_SUB16; j++) {
                int l = imax(-32, imin(31, nearest_int(iscale * scales[j]))) + 32;
                if (j < 8)
                    b.scales[j] = (uint8_t)(l & 0x0f);
                else
                    b.scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                b.scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            b.d = lg_f32_to_f16(1.0f / iscale);
        } else {
            b.d = lg_f32_to_f16(0.0f);
        }
        const float dd = lg_f16_to_f32(b.d);
        for (int j = 0; j < K_SUB16; j++) {
            const float d = dd * (float)q3k_scale(b.scales, j);
            if (d == 0.0f)
                continue; /* keeps the levels from the fit */
            for (int i = 0; i < 16; i++) {
                int l = imax(-4, imin(3, nearest_int(x[16 * j + i] / d)));
                L[16 * j + i] = (int8_t)(l + 4);
            }
        }
        /* bit 2 of element e goes to bit e/32 of hmask[e%32]; the low 2 bits are packed */
        uint8_t low[LG_QK_K];
        for (int e = 0; e < LG_QK_K; e++) {
            int l = L[e];
            if (l > 3) {
                b.hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                l -= 4;
            }
            low[e] = (uint8_t)l;
        }
        pack_2bit(low, b.qs);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q3_k(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q3_k b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float dl[K_SUB16];
        for (int k = 0; k < K_SUB16; k++)
            dl[k] = d * (float)q3k_scale(b.scales, k);
        float *y = dst + ib * LG_QK_K;
        for (int e = 0; e < LG_QK_K; e++) {
            int h = e / 128, j = (e % 128) / 32, l = e % 32;
            int q = (b.qs[32 * h + l] >> (2 * j)) & 3;
            if (!((b.hmask[l] >> (e / 32)) & 1))
                q -= 4;
            y[e] = dl[e / 16] * (float)q;
        }
    }
}

/* ---- Q4_K / Q5_K --------------------------------------------------------------------- */

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): sub-block fits, 6-bit scales and mins into
 * sc12, f16 super-scales, then levels L[256] re-derived from the stored scales. */
static void quant_k_affine(const float *x, int nmax, float rmin, float rdelta, int nstep,
                           uint8_t *sc12, uint16_t *d_out, uint16_t *dmin_out, uint8_t *L)
{
    uint8_t Laux[32];
    float weights[32], mins[K_SUB32], scales[K_SUB32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < K_SUB32; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_affine(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                               rdelta, nstep, false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    memset(sc12, 0, LG_K_SCALE_BYTES);
    for (int j = 0; j < K_SUB32; j++) {
        /* ggml stores nearest_int into a uint8_t, then clamps to 63 */
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        put_scale_min_k4(j, sc12, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    *d_out = lg_f32_to_f16(max_scale / 63.0f);
    *dmin_out = lg_f32_to_f16(max_min / 63.0f);
    const float dd = lg_f16_to_f32(*d_out), dmin = lg_f16_to_f32(*dmin_out);
    for (int j = 0; j < K_SUB32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, sc12, &sc, &m);
        const float d = dd * sc;
        if (d == 0.0f)
            continue;
        const float dm = dmin * m;
        for (int i = 0; i < 32; i++) {
            int l = nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

void lg_quant_q4_k(const float *src, void *dst, int64_t n)
{
    uint8_t L[LG_QK_K];
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q4_k b;
        quant_k_affine(src + ib * LG_QK_K, 15, -1.0f, 0.1f, 20, b.scales, &b.d, &b.dmin, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b.qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q4_k(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q4_k b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d), dmin = lg_f16_to_f32(b.dmin);
        float *y = dst + ib * LG_QK_K;
        for (int k = 0; k < K_SUB32; k++) {
            uint8_t sc, m;
            get_scale_min_k4(k, b.scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = b.qs + 32 * (k / 2);
            const int shift = 4 * (k % 2);
            for (int l = 0; l < 32; l++)
                y[32 * k + l] = d1 * (float)((q[l] >> shift) & 0x0f) - m1;
        }
    }
}

void lg_quant_q5_k(const float *src, void *dst, int64_t n)
{
    uint8_t L[LG_QK_K];
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q5_k b;
        quant_k_affine(src + ib * LG_QK_K, 31, -0.5f, 0.1f, 15, b.scales, &b.d, &b.dmin, L);
        memset(b.qh, 0, sizeof b.qh);
        for (int e = 0; e < LG_QK_K; e++) {
            if (L[e] > 15)
                b.qh[e % 32] |= (uint8_t)(1u << (e / 32));
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b.qs[32 * c + l] =
                    (uint8_t)((L[64 * c + l] & 0x0f) | ((L[64 * c + 32 + l] & 0x0f) << 4));
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q5_k(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q5_k b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d), dmin = lg_f16_to_f32(b.dmin);
        float *y = dst + ib * LG_QK_K;
        for (int k = 0; k < K_SUB32; k++) {
            uint8_t sc, m;
            get_scale_min_k4(k, b.scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = b.qs + 32 * (k / 2);
            const int shift = 4 * (k % 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0x0f) | (((b.qh[l] >> k) & 1) << 4);
                y[32 * k + l] = d1 * (float)v - m1;
            }
        }
    }
}

/* ---- Q6_K ---------------------------------------------------------------------------- */

void lg_quant_q6_k(const float *src, void *dst, int64_t n)
{
    int8_t L[LG_QK_K];
    float scales[K_SUB16];
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const float *x = src + ib * LG_QK_K;
        struct lg_block_q6_k b;
        memset(&b, 0, sizeof b);
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int j = 0; j < K_SUB16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > max_abs_scale) {
                max_abs_scale = a;
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < k_group_eps) { /* all-zero block: all bytes 0 */
            memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
            continue;
        }
        float iscale = -128.0f / max_scale;
        b.d = lg_f32_to_f16(1.0f / iscale);
        for (int j = 0; j < K_SUB16; j++)
            b.scales[j] = (int8_t)imax(-128, imin(127, nearest_int(iscale * scales[j])));
        const float dd = lg_f16_to_f32(b.d);
        for (int j = 0; j < K_SUB16; j++) {
            const float d = dd * b.scales[j];
            if (d == 0.0f)
                continue; /* keeps the levels from the fit */
            for (int i = 0; i < 16; i++) {
                int l = imax(-32, imin(31, nearest_int(x[16 * j + i] / d)));
                L[16 * j + i] = (int8_t)(l + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                b.ql[64 * h + l] = (uint8_t)((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
                b.ql[64 * h + 32 + l] = (uint8_t)((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
                b.qh[32 * h + l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                             ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q6_k(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q6_k b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float *y = dst + ib * LG_QK_K;
        for (int e = 0; e < LG_QK_K; e++) {
            int h = e / 128, r = e % 128;
            int lo = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
            int hi = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            y[e] = d * (float)b.scales[e / 16] * (float)((lo | hi << 4) - 32);
        }
    }
}

/* ---- Q8_K ---------------------------------------------------------------------------- */

void lg_quant_q8_k(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const float *x = src + ib * LG_QK_K;
        struct lg_block_q8_k b;
        memset(&b, 0, sizeof b);
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < LG_QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax != 0.0f) {
            /* -127 (not -128): keeps every q in [-127, 127], which the SIMD dot products need */
            const float iscale = -127.0f / max;
            for (int j = 0; j < LG_QK_K; j++)
                b.qs[j] = (int8_t)imax(-128, imin(127, nearest_int(iscale * x[j])));
            for (int j = 0; j < LG_QK_K / 16; j++) {
                int sum = 0;
                for (int i = 0; i < 16; i++)
                    sum += b.qs[16 * j + i];
                b.bsums[j] = (int16_t)sum;
            }
            b.d = 1.0f / iscale;
        }
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q8_k(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        struct lg_block_q8_k b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        float *y = dst + ib * LG_QK_K;
        for (int j = 0; j < LG_QK_K; j++)
            y[j] = b.d * (float)b.qs[j];
    }
}
