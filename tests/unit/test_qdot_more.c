/* test_qdot_more.c: kern/qdot_more_avx2.c's dots (Q2_K, Q3_K, IQ4_XS, BF16, F32) equal
 * lg_vec_dot_ref's bit for bit (issue #10).
 *
 * 1. lg_qdot_avx2_more fills exactly its five slots, with functions other than the reference's.
 * 2. Thousands of random rows per type: weights quantized with quant/'s reference quantizers
 *    from floats drawn in several regimes (ordinary, scales from 1e-30 to 1e4, zeros, sparse,
 *    outliers, constants, small integers, a dynamic range of 2^76), plus rows of random bytes
 *    (every scale and quant bit pattern, infinite and NaN block scales included); activations
 *    through lg_act_quantize from the same regimes; 1..16 super-blocks, and for BF16 / F32
 *    lengths 1..4096 not tied to the vector width. The float results must have the same bits
 *    (NaN matches NaN: hardware F16C quiets signalling NaNs, the reference's conversion does
 *    not, so only the payload may differ).
 * 3. BF16 rows where the reference's sequential double sum rounds (so any other summation
 *    order gives another result), mixed chunk by chunk with rows it sums exactly, and rows
 *    built to sit one bit past the edge of exact summation (the BF16 dot's fast-path check
 *    must send them to its sequential path; a check one bit too generous fails here).
 * Rows sit at the smallest alignment qdot.h allows, so no load is accidentally aligned.
 * Skipped (with a message) when the CPU lacks AVX2 (lg_kern_select("avx2") is NULL). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "kern/qdot_more.h"
#include "quant/quant.h"
#include "test.h"

static int irand(int n) /* uniform in [0, n), as an int for signed offsets */
{
    return (int)lg_test_rand_below((uint32_t)n);
}

enum {
    MODE_NORMAL,  /* per-32 scales over two decades */
    MODE_EXTREME, /* per-16 scales 1e-30 .. 1e4 (f16 block scales stay finite) */
    MODE_SPARSE,  /* 80% zeros */
    MODE_ZERO,    /* all zero */
    MODE_OUTLIER, /* small values with a large one every 64 */
    MODE_CONST,   /* one value repeated */
    MODE_INT,     /* small integers (exact in every format) */
    MODE_WIDE,    /* magnitudes 2^-60 .. 2^16 element by element (f16 scales stay finite) */
    MODE_MIXED,   /* a regime above chosen per 64 elements */
    MODE_COUNT
};

static void fill_mode(float *x, int64_t n, int mode)
{
    float scale = 1.0f, c = lg_test_frand() * powf(10.0f, 4.0f * lg_test_frand());
    for (int64_t i = 0; i < n; i++) {
        switch (mode) {
        case MODE_NORMAL:
            if (i % 32 == 0)
                scale = powf(10.0f, 2.0f * lg_test_frand() - 1.0f);
            x[i] = lg_test_frand() * scale;
            break;
        case MODE_EXTREME:
            if (i % 16 == 0)
                scale = powf(10.0f, 17.0f * lg_test_frand() - 13.0f);
            x[i] = lg_test_frand() * scale;
            break;
        case MODE_SPARSE:
            x[i] = irand(5) == 0 ? lg_test_frand() : 0.0f;
            break;
        case MODE_ZERO:
            x[i] = 0.0f;
            break;
        case MODE_OUTLIER:
            x[i] = i % 64 == 17 ? 1e4f * lg_test_frand() : 1e-3f * lg_test_frand();
            break;
        case MODE_CONST:
            x[i] = c;
            break;
        case MODE_INT:
            x[i] = (float)(irand(17) - 8);
            break;
        case MODE_WIDE:
            x[i] = ldexpf(lg_test_frand(), irand(77) - 60);
            break;
        default:
            break;
        }
    }
    if (mode == MODE_MIXED)
        for (int64_t i = 0; i < n; i += 64)
            fill_mode(x + i, n - i < 64 ? n - i : 64, irand(MODE_MIXED));
}

static uint16_t rand_f16_scale(void)
{
    if (irand(64) == 0) /* any bit pattern: subnormal, inf, NaN */
        return (uint16_t)lg_test_rand_u64();
    return lg_f32_to_f16(lg_test_frand() * powf(10.0f, 3.0f * lg_test_frand()));
}

/* Most rows of random bf16 / f32 bits get the top exponent bit cleared (|x| < 2, subnormals
 * included): a single NaN, infinity or overflowing product makes the whole dot NaN, which
 * would say little. One row in 10 keeps every pattern. */
static void no_specials(uint8_t *p, uint32_t t, int64_t n)
{
    if (irand(10) == 0)
        return;
    for (int64_t i = 0; i < n; i++) {
        if (t == LG_QTYPE_BF16) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            h &= 0xbfffu;
            memcpy(p + 2 * i, &h, 2);
        } else {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            u &= 0xbfffffffu;
            memcpy(p + 4 * i, &u, 4);
        }
    }
}

/* A weight row of type t: quantized from a float regime, or (mode == MODE_COUNT) random
 * bytes with random (mostly finite) f16 scales. */
static void make_weights(uint32_t t, float *f, uint8_t *w, size_t wb, int64_t n, int mode)
{
    if (mode < MODE_COUNT) {
        fill_mode(f, n, mode);
        if (t == LG_QTYPE_F32)
            memcpy(w, f, (size_t)n * sizeof(float));
        else
            lg_quant_row((enum lg_qtype)t, f, w, n);
        return;
    }
    for (size_t i = 0; i < wb; i++)
        w[i] = (uint8_t)lg_test_rand_u64();
    if (t == LG_QTYPE_BF16 || t == LG_QTYPE_F32)
        no_specials(w, t, n);
    size_t bs = (size_t)lg_qtype_get(t)->type_size;
    for (size_t off = 0; off + bs <= wb && t != LG_QTYPE_BF16 && t != LG_QTYPE_F32; off += bs) {
        uint16_t d = rand_f16_scale(), dmin = rand_f16_scale();
        switch (t) {
        case LG_QTYPE_Q2_K: /* d at 80, dmin at 82 */
            memcpy(w + off + 80, &d, 2);
            memcpy(w + off + 82, &dmin, 2);
            break;
        case LG_QTYPE_Q3_K: /* d at 108 */
            memcpy(w + off + 108, &d, 2);
            break;
        case LG_QTYPE_IQ4_XS: /* d at 0 */
            memcpy(w + off, &d, 2);
            break;
        default:
            break;
        }
    }
}

static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b));
}

static const uint32_t types[] = {LG_QTYPE_Q2_K, LG_QTYPE_Q3_K, LG_QTYPE_IQ4_XS, LG_QTYPE_BF16,
                                 LG_QTYPE_F32};
enum { N_TYPES = sizeof types / sizeof types[0], MAX_N = 16 * 256 };

static void test_fill(void)
{
    lg_vec_dot_fn dot[LG_QTYPE_COUNT];
    for (int t = 0; t < LG_QTYPE_COUNT; t++)
        dot[t] = lg_vec_dot_ref[LG_QTYPE_Q4_0];
    lg_qdot_avx2_more(dot);
    int others = 0;
    for (int t = 0; t < LG_QTYPE_COUNT; t++) {
        int mine = 0;
        for (int i = 0; i < N_TYPES; i++)
            mine |= (uint32_t)t == types[i];
        if (mine)
            CHECK_MSG(dot[t] && dot[t] != lg_vec_dot_ref[t] &&
                          dot[t] != lg_vec_dot_ref[LG_QTYPE_Q4_0],
                      "slot %s not filled with its own function", lg_qtype_get((uint32_t)t)->name);
        else
            others += dot[t] != lg_vec_dot_ref[LG_QTYPE_Q4_0];
    }
    CHECK_MSG(others == 0, "%d other slots changed", others);
}

/* Row lengths: super-block counts 1..16 for the block types; for BF16 / F32 short lengths,
 * lengths around multiples of the 8- and 64-element steps, and a full 4096. */
static int64_t pick_len(uint32_t t, int i)
{
    if (t != LG_QTYPE_BF16 && t != LG_QTYPE_F32)
        return 256 * (int64_t)(1 + i % 16);
    switch (i % 4) {
    case 0:
        return 1 + irand(200);
    case 1:
        return 64 * (int64_t)(1 + irand(63)) + irand(3) - 1; /* <= MAX_N */
    case 2:
        return MAX_N;
    default:
        return 1 + irand(MAX_N);
    }
}

static void test_random(const lg_vec_dot_fn *dot, uint32_t t, int n_cases)
{
    const char *name = lg_qtype_get(t)->name;
    /* smallest alignments qdot.h allows: 2 bytes for f16-scaled blocks and BF16, 4 for Q8_K
     * and F32 (malloc gives 16; the offsets move every row off it) */
    size_t walign = t == LG_QTYPE_F32 ? 4 : 2, aalign = t == LG_QTYPE_BF16 ? 2 : 4;
    uint64_t wb_max;
    lg_qtype_row_bytes(t, MAX_N, &wb_max);
    size_t ab_max = lg_act_row_bytes(t, MAX_N);
    uint8_t *wbuf = malloc((size_t)wb_max + 64), *abuf = malloc(ab_max + 64);
    float *f = malloc(MAX_N * sizeof(float));
    int bad = 0, nan_cases = 0;
    for (int ic = 0; ic < n_cases; ic++) {
        int64_t n = pick_len(t, ic);
        uint64_t wb;
        lg_qtype_row_bytes(t, (uint64_t)n, &wb);
        uint8_t *w = wbuf + walign, *a = abuf + aalign;
        int wmode = ic / 16 % (MODE_COUNT + 1), amode = irand(MODE_COUNT);
        make_weights(t, f, w, (size_t)wb, n, wmode);
        if (t == LG_QTYPE_BF16 && irand(8) == 0) { /* any bf16 pattern: NaN, inf, subnormal */
            for (int64_t i = 0; i < n; i++) {
                uint16_t h = (uint16_t)lg_test_rand_u64();
                memcpy(a + 2 * i, &h, 2);
            }
            no_specials(a, t, n);
        } else {
            fill_mode(f, n, amode);
            lg_act_quantize(t, f, a, n);
        }
        float want = lg_vec_dot_ref[t](w, a, n);
        float got = dot[t](w, a, n);
        nan_cases += isnan(want);
        if (!same_float(got, want) && bad++ < 5) {
            uint32_t gb, wbits;
            memcpy(&gb, &got, 4);
            memcpy(&wbits, &want, 4);
            fprintf(stderr, "%s n=%lld wmode=%d amode=%d: %.9g (0x%08x) vs ref %.9g (0x%08x)\n",
                    name, (long long)n, wmode, amode, (double)got, gb, (double)want, wbits);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d dots differ from the reference", name, bad, n_cases);
    printf("test_qdot_more: %s: %d cases, %d wrong, %d NaN results\n", name, n_cases, bad,
           nan_cases);
    free(wbuf);
    free(abuf);
    free(f);
}

/* BF16 rows whose order of summation matters: the reference adds 2^60 + 1 - 2^60 in double
 * and gets 0, not 1 (checked, so the test notices if the reference changes), and sums of
 * small integers are exact. Chunks of each kind in random order. */
static void test_bf16_order(const lg_vec_dot_fn *dot)
{
    const uint16_t one = 0x3f80, big = 0x5d80 /* 2^60 */, nbig = 0xdd80;
    uint16_t *x = malloc(MAX_N * 2 + 4), *y = malloc(MAX_N * 2 + 4);
    for (int i = 0; i < 3; i++) {
        x[i] = one;
    }
    y[0] = big;
    y[1] = one;
    y[2] = nbig;
    CHECK(lg_vec_dot_ref[LG_QTYPE_BF16](x, y, 3) == 0.0f);
    int bad = 0;
    for (int ic = 0; ic < 400; ic++) {
        int64_t n = 64 * (1 + irand(64)) - irand(2) * irand(64);
        for (int64_t c = 0; c < n; c += 64) {
            int kind = irand(3);
            for (int64_t i = c; i < n && i < c + 64; i++) {
                x[i] = lg_f32_to_bf16((float)(irand(9) - 4));
                if (kind == 0)
                    y[i] = lg_f32_to_bf16((float)(irand(255) - 127));
                else if (kind == 1)
                    y[i] = (i - c) % 3 == 0 ? big : (i - c) % 3 == 1 ? one : nbig;
                else
                    y[i] = lg_f32_to_bf16(ldexpf(lg_test_frand(), irand(40) - 20));
            }
        }
        float want = lg_vec_dot_ref[LG_QTYPE_BF16](x, y, n);
        float got = dot[LG_QTYPE_BF16](x, y, n);
        if (!same_float(got, want) && bad++ < 5)
            fprintf(stderr, "bf16 order n=%lld: %.9g vs ref %.9g\n", (long long)n, (double)got,
                    (double)want);
    }
    CHECK_MSG(bad == 0, "bf16 order: %d of 400 dots differ", bad);
    printf("test_qdot_more: BF16 order: 400 cases, %d wrong\n", bad);
    free(x);
    free(y);
}

/* x[i] * y[i] = v exactly (v = odd * 2^e with odd < 2^16 a product of two 8-bit odds, or a
 * power of two), as bf16 factors. */
static void bf16_product(uint16_t *x, uint16_t *y, int64_t i, float fx, float fy)
{
    x[i] = lg_f32_to_bf16(fx);
    y[i] = lg_f32_to_bf16(fy);
}

/* BF16 rows at the edge of exact double summation, in three parts of L = 64, 128 or 256
 * elements (the BF16 dot checks exactness per chunk of a power of two <= 256 elements, so one
 * L lines the parts up with its chunks; values at the start of each part), all times 2^e:
 *   A: s = 2^53 - 2^20 + o 2^g (o odd, a 16-bit product of two 8-bit odds),
 *   B: m products o' 2^f (o' likewise, f in 0..3, g = 0 unless f = 0), which carry s past
 *      2^53 where the reference's sum rounds (its ulp is 2), and
 *   C: -2^52 twice, which leaves a small sum in which that rounding shows.
 * The finest quantum is s's (f > 0), the products' (g > 0) or both's. An exactness check one
 * bit too generous (in the bound, or in either quantum), or one that ignored the size of the
 * running sum s, takes chunk B as exact and gets another float. */
static void test_bf16_edge(const lg_vec_dot_fn *dot)
{
    enum { N_MAX = 3 * 256 };
    uint16_t x[N_MAX], y[N_MAX];
    /* odd factors >= 183: every product of two has exactly 16 significant bits, so the
     * products' quantum is as fine as their exponent allows (the check's bound is tight) */
    const float odd[] = {255, 253, 251, 249, 247, 241, 201, 183};
    int bad = 0, differs = 0;
    for (int ic = 0; ic < 300; ic++) {
        int e = irand(81) - 40, f = irand(4), g = f ? 0 : irand(4), m = 1 + irand(64);
        int L = 64 << (ic % 3), N = 3 * L;
        float u = ldexpf(1.0f, e);
        for (int i = 0; i < N; i++)
            bf16_product(x, y, i, 0.0f, 0.0f);
        for (int j = 20; j <= 52; j++) /* 2^20 + ... + 2^52 = 2^53 - 2^20 */
            bf16_product(x, y, j - 20, ldexpf(1.0f, j / 2), ldexpf(u, j - j / 2));
        bf16_product(x, y, 40, odd[irand(8)], ldexpf(odd[irand(8)] * u, g));
        for (int i = 0; i < m; i++)
            bf16_product(x, y, L + i, odd[irand(8)], ldexpf(odd[irand(8)] * u, f));
        bf16_product(x, y, 2 * L + irand(32), -ldexpf(1.0f, 26), ldexpf(u, 26));
        bf16_product(x, y, 2 * L + 32 + irand(32), -ldexpf(1.0f, 26), ldexpf(u, 26));
        float want = lg_vec_dot_ref[LG_QTYPE_BF16](x, y, N);
        float got = dot[LG_QTYPE_BF16](x, y, N);
        int64_t exact = 0; /* the exact sum / 2^e (every product is an integer times 2^e) */
        for (int i = 0; i < N; i++)
            exact += (int64_t)((double)lg_bf16_to_f32(x[i]) * lg_bf16_to_f32(y[i]) / (double)u);
        differs += (float)((double)exact * (double)u) != want;
        if (!same_float(got, want) && bad++ < 5)
            fprintf(stderr, "bf16 edge L=%d e=%d f=%d m=%d: %.9g vs ref %.9g\n", L, e, f, m,
                    (double)got, (double)want);
    }
    CHECK_MSG(bad == 0, "bf16 edge: %d of 300 dots differ", bad);
    /* most of these rows must really round in the reference, or they test nothing */
    CHECK_MSG(differs > 150, "only %d of 300 edge rows round", differs);
    printf("test_qdot_more: BF16 edge: 300 cases, %d wrong, %d where the reference rounds\n", bad,
           differs);
}

int main(void)
{
    lg_test_rand_seed(5);
    /* the kernel module's own cpuid gate for its AVX2 table (AVX2 + FMA; every such CPU has
     * F16C) */
    if (!lg_kern_select("avx2")) {
        printf("test_qdot_more: no AVX2 on this CPU, skipped\n");
        return lg_test_done("test_qdot_more");
    }
    lg_vec_dot_fn dot[LG_QTYPE_COUNT];
    memset(dot, 0, sizeof dot);
    lg_qdot_avx2_more(dot);
    test_fill();
    for (int i = 0; i < N_TYPES; i++)
        test_random(dot, types[i], 3000);
    test_bf16_order(dot);
    test_bf16_edge(dot);
    return lg_test_done("test_qdot_more");
}
