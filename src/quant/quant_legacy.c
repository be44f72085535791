/* quant_legacy.c: reference (de)quantization of the 32-element block formats Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q8_1.
 *
 * The quantizers follow ggml's reference ("_ref") quantizers step for step in f32 so the bytes
 * agree: symmetric types scale by the signed value of largest magnitude (the first one on a
 * tie) so that it maps to the most negative level; asymmetric types map [min, max] onto the
 * levels; Q8 rounds half away from zero. gguf-py's quantizers do the same; the golden test
 * compares bytes. This file is built with ISO C (-std=c11), where GCC does not contract a*b+c
 * into an FMA, which would change rounding.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

/* Value of largest magnitude, keeping its sign; the first one when several tie. Starts from
 * +0.0 as ggml does, so an all-zero block gives +0.0 (and a scale of -0.0). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* (int) of a float that may be out of int range or NaN: those map to 0 (then clamped). */
static int trunc_to_int(float v)
{
    if (!(v > -1e9f && v < 1e9f))
        return 0;
    return (int)v;
}

/* ---- Q4_0 ---------------------------------------------------------------------------------- */

void lg_quant_q4_0(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_q4_0 b;
        const float d = signed_absmax(x, LG_QK) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = lg_f32_to_f16(d);
        for (int j = 0; j < LG_QK / 2; j++) {
            int q0 = clampi(trunc_to_int(x[j] * id + 8.5f), 0, 15);
            int q1 = clampi(trunc_to_int(x[j + LG_QK / 2] * id + 8.5f), 0, 15);
            b.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q4_0(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q4_0 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK / 2; j++) {
            y[j] = d * (float)((b.qs[j] & 0x0f) - 8);
            y[j + LG_QK / 2] = d * (float)((b.qs[j] >> 4) - 8);
        }
    }
}

/* ---- Q4_1 ---------------------------------------------------------------------------------- */

/* Running min/max from +-FLT_MAX as ggml does (for signed zeros the first one wins). */
static void minmax(const float *x, int n, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

void lg_quant_q4_1(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_q4_1 b;
        float mn, mx;
        minmax(x, LG_QK, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = lg_f32_to_f16(d);
        b.m = lg_f32_to_f16(mn);
        for (int j = 0; j < LG_QK / 2; j++) {
            int q0 = clampi(trunc_to_int((x[j] - mn) * id + 0.5f), 0, 15);
            int q1 = clampi(trunc_to_int((x[j + LG_QK / 2] - mn) * id + 0.5f), 0, 15);
            b.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q4_1(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q4_1 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d), m = lg_f16_to_f32(b.m);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK / 2; j++) {
            y[j] = d * (float)(b.qs[j] & 0x0f) + m;
            y[j + LG_QK / 2] = d * (float)(b.qs[j] >> 4) + m;
        }
    }
}

/* ---- Q5_0 ---------------------------------------------------------------------------------- */

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void lg_quant_q5_0(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_q5_0 b;
        const float d = signed_absmax(x, LG_QK) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b.d = lg_f32_to_f16(d);
        for (int j = 0; j < LG_QK / 2; j++) {
            int q0 = clampi(trunc_to_int(x[j] * id + 16.5f), 0, 31);
            int q1 = clampi(trunc_to_int(x[j + LG_QK / 2] * id + 16.5f), 0, 31);
            b.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + LG_QK / 2);
        }
        store_u32(b.qh, qh);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q5_0(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q5_0 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        const uint32_t qh = load_u32(b.qh);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK / 2; j++) {
            int q0 = (b.qs[j] & 0x0f) | (int)((qh >> j) & 1u) << 4;
            int q1 = (b.qs[j] >> 4) | (int)((qh >> (j + LG_QK / 2)) & 1u) << 4;
            y[j] = d * (float)(q0 - 16);
            y[j + LG_QK / 2] = d * (float)(q1 - 16);
        }
    }
}

/* ---- Q5_1 ---------------------------------------------------------------------------------- */

void lg_quant_q5_1(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_q5_1 b;
        float mn, mx;
        minmax(x, LG_QK, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b.d = lg_f32_to_f16(d);
        b.m = lg_f32_to_f16(mn);
        for (int j = 0; j < LG_QK / 2; j++) {
            int q0 = clampi(trunc_to_int((x[j] - mn) * id + 0.5f), 0, 31);
            int q1 = clampi(trunc_to_int((x[j + LG_QK / 2] - mn) * id + 0.5f), 0, 31);
            b.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + LG_QK / 2);
        }
        store_u32(b.qh, qh);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q5_1(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q5_1 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d), m = lg_f16_to_f32(b.m);
        const uint32_t qh = load_u32(b.qh);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK / 2; j++) {
            int q0 = (b.qs[j] & 0x0f) | (int)((qh >> j) & 1u) << 4;
            int q1 = (b.qs[j] >> 4) | (int)((qh >> (j + LG_QK / 2)) & 1u) << 4;
            y[j] = d * (float)q0 + m;
            y[j + LG_QK / 2] = d * (float)q1 + m;
        }
    }
}

/* ---- Q8_0 / Q8_1 --------------------------------------------------------------------------- */

/* roundf with a guard: out-of-range/NaN give 0, then the int8 range is enforced. */
static int8_t round_i8(float v)
{
    if (!(v > -1e9f && v < 1e9f))
        return 0;
    return (int8_t)clampi((int)roundf(v), -128, 127);
}

static float absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        if (a > amax)
            amax = a;
    }
    return amax;
}

void lg_quant_q8_0(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_q8_0 b;
        const float d = absmax(x, LG_QK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = lg_f32_to_f16(d);
        for (int j = 0; j < LG_QK; j++)
            b.qs[j] = round_i8(x[j] * id);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q8_0(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q8_0 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK; j++)
            y[j] = (float)b.qs[j] * d;
    }
}

void lg_quant_q8_1(const float *src, void *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        const float *x = src + ib * LG_QK;
        struct lg_block_q8_1 b;
        const float d = absmax(x, LG_QK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < LG_QK; j++) {
            b.qs[j] = round_i8(x[j] * id);
            sum += b.qs[j];
        }
        b.d = lg_f32_to_f16(d);
        b.s = lg_f32_to_f16((float)sum * d);
        memcpy((uint8_t *)dst + ib * sizeof b, &b, sizeof b);
    }
}

void lg_dequant_q8_1(const void *src, float *dst, int64_t n)
{
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q8_1 b;
        memcpy(&b, (const uint8_t *)src + ib * sizeof b, sizeof b);
        const float d = lg_f16_to_f32(b.d);
        float *y = dst + ib * LG_QK;
        for (int j = 0; j < LG_QK; j++)
            y[j] = (float)b.qs[j] * d;
    }
}
