/* test_quant_rt.c: quantize -> dequantize round trips for every type we quantize, with the
 * error bound each format is known to meet, plus edge blocks (zeros, constants, huge, tiny).
 *
 * Error figure: RMSE of the round trip divided by the RMS of the data, over 64 rows of 4096
 * N(0,1) values (lg_test_rand_seed(7), so the figures are exact repeats). Measured (gcc, x86-64):
 *   F16 0.00021  BF16 0.00166  Q8_0 0.00535  Q8_1 0.00535  Q8_K 0.00696
 *   Q6_K 0.0178  Q5_K 0.0362  Q5_1 0.0379  Q5_0 0.0427  Q4_K 0.0715  IQ4_NL 0.0763
 *   IQ4_XS 0.0769  Q4_1 0.0783  Q4_0 0.0858  MXFP4 0.1151  Q3_K 0.1509  Q2_K 0.2969
 * The bounds in bounds[] sit about 10% above these, so a quantizer that regresses (wrong
 * rounding, a lost scale search, wrong bit packing) fails.
 * Types gguf-py cannot quantize (K-quants, IQ4_NL, IQ4_XS, Q8_K, Q8_1) are checked here and
 * byte for byte against ggml's reference quantizers (test_quant.c, qg_*.bin).
 */
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"
#include "test.h"

/* Relative RMSE of a round trip of x[n] through type. */
static double round_trip(uint32_t type, const float *x, int64_t n, float *y)
{
    uint64_t nb = 0;
    if (lg_qtype_row_bytes(type, (uint64_t)n, &nb) != LG_OK)
        return -1;
    uint8_t *q = malloc(nb);
    for (int64_t i = 0; i < n; i++)
        y[i] = NAN;
    enum lg_status s1 = lg_quant_row_checked(type, x, q, n);
    enum lg_status s2 = lg_dequant_row_checked(type, q, y, n);
    free(q);
    if (s1 != LG_OK || s2 != LG_OK)
        return -1;
    double se = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - x[i];
        se += d * d;
        ss += (double)x[i] * x[i];
    }
    return ss > 0 ? sqrt(se / ss) : sqrt(se);
}

struct bound {
    const char *name;
    double max_rel_rmse; /* on N(0,1) data */
    double max_abs_err;  /* per element, in units of the block's max |x| (0 = not checked) */
};

/* Per-element worst case (in units of the block's absolute max): Q8_0 half a step of 1/127;
 * Q4_0 a step of 1/8 (the most negative side has 8 levels, the positive side 7, so up to
 * one full step at the positive end); Q5_0 likewise 1/16; Q4_1/Q5_1 half a step of
 * range/15 or /31 with range <= 2*max, plus the f16 rounding of d and m; MXFP4 a quarter
 * (its largest level is 1.5 * 2^floor(log2 max), so the block maximum itself may clip). */
static const struct bound bounds[] = {
    {"F16", 2.5e-4, 0},        {"BF16", 1.9e-3, 0},       {"Q8_0", 6.0e-3, 0.0045},
    {"Q8_1", 6.0e-3, 0.0045},  {"Q5_0", 4.7e-2, 0.0635},  {"Q5_1", 4.2e-2, 0.0345},
    {"Q4_0", 9.5e-2, 0.126},   {"Q4_1", 8.6e-2, 0.0685},  {"IQ4_NL", 8.4e-2, 0},
    {"IQ4_XS", 8.5e-2, 0},     {"Q8_K", 7.7e-3, 0.0045},  {"Q6_K", 1.95e-2, 0},
    {"Q5_K", 4.0e-2, 0},       {"Q4_K", 7.9e-2, 0},       {"Q3_K", 1.66e-1, 0},
    {"Q2_K", 3.26e-1, 0},      {"MXFP4", 1.27e-1, 0.2501},
};

static void test_gaussian(void)
{
    const int64_t n_per_row = 4096, n_rows = 64, n = n_per_row * n_rows;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++)
        x[i] = lg_test_rand_gauss();
    for (size_t t = 0; t < sizeof bounds / sizeof bounds[0]; t++) {
        int type = lg_qtype_from_name(bounds[t].name);
        CHECK_MSG(type >= 0 && lg_qtype_get((uint32_t)type)->can_quant, "%s", bounds[t].name);
        if (type < 0)
            continue;
        double e = round_trip((uint32_t)type, x, n, y);
        printf("  %-7s rel-RMSE %.5f (bound %.5f)\n", bounds[t].name, e, bounds[t].max_rel_rmse);
        CHECK_MSG(e >= 0 && e <= bounds[t].max_rel_rmse, "%s: rel RMSE %.6f > %.6f",
                  bounds[t].name, e, bounds[t].max_rel_rmse);
        if (bounds[t].max_abs_err > 0) {
            const int bs = (int)lg_qtype_get((uint32_t)type)->block_size;
            double worst = 0;
            for (int64_t b0 = 0; b0 < n; b0 += bs) {
                float amax = 0;
                for (int j = 0; j < bs; j++)
                    amax = fmaxf(amax, fabsf(x[b0 + j]));
                for (int j = 0; j < bs; j++)
                    worst = fmax(worst, fabs((double)y[b0 + j] - x[b0 + j]) / amax);
            }
            CHECK_MSG(worst <= bounds[t].max_abs_err, "%s: worst element error %.5f > %.5f",
                      bounds[t].name, worst, bounds[t].max_abs_err);
        }
    }
    free(x);
    free(y);
}

/* Blocks that stress the scale search: zero, constant, one spike, all positive/negative,
 * huge and tiny magnitudes. Every finite input must give finite output, zeros must stay
 * exactly zero, and constants within the format's relative step. */
static void test_edges(void)
{
    const int n = 256;
    float x[256], y[256];
    for (size_t t = 0; t < sizeof bounds / sizeof bounds[0]; t++) {
        int type = lg_qtype_from_name(bounds[t].name);
        const char *nm = bounds[t].name;
        /* MXFP4's scale is a power of two chosen as floor(log2 amax) - 2 (ggml and gguf-py):
         * values in (1.5, 2) * 2^k clip to 1.5 * 2^k, up to 25% off */
        const double const_tol = strcmp(nm, "MXFP4") == 0 ? 0.25 : 0.07;
        for (int i = 0; i < n; i++)
            x[i] = 0.0f;
        double e = round_trip((uint32_t)type, x, n, y);
        bool all_zero = true;
        for (int i = 0; i < n; i++)
            all_zero = all_zero && y[i] == 0.0f;
        CHECK_MSG(e == 0 && all_zero, "%s: zeros do not round-trip", nm);

        for (int scale_i = 0; scale_i < 5; scale_i++) {
            /* magnitudes of real weights and activations; much smaller values underflow the
             * f16 super-scales of K-quants and IQ4_XS (checked separately below) */
            static const float scales[] = {1.0f, 1e-2f, 1e3f, 0.05f, 60.0f};
            float s = scales[scale_i];
            for (int i = 0; i < n; i++)
                x[i] = s * 0.75f;
            e = round_trip((uint32_t)type, x, n, y);
            CHECK_MSG(e >= 0 && e <= const_tol, "%s: constant %g rel err %.4f", nm, s * 0.75f, e);
            for (int i = 0; i < n; i++)
                x[i] = (i % 37 == 5) ? 10 * s : s * (float)((i % 7) - 3) / 3;
            e = round_trip((uint32_t)type, x, n, y);
            bool finite = true;
            for (int i = 0; i < n; i++)
                finite = finite && isfinite(y[i]);
            CHECK_MSG(finite && e >= 0 && e <= 0.5, "%s: spikes at %g rel err %.4f", nm, s, e);
            for (int i = 0; i < n; i++)
                x[i] = s * (1.0f + (float)(i % 13));
            e = round_trip((uint32_t)type, x, n, y);
            CHECK_MSG(e >= 0 && e <= 0.25, "%s: positives at %g rel err %.4f", nm, s, e);
            for (int i = 0; i < n; i++)
                x[i] = -x[i];
            e = round_trip((uint32_t)type, x, n, y);
            CHECK_MSG(e >= 0 && e <= 0.25, "%s: negatives at %g rel err %.4f", nm, s, e);
        }
        /* tiny values: scales underflow f16; result finite and no worse than all zeros */
        for (int i = 0; i < n; i++)
            x[i] = 1e-9f * (float)((i % 9) - 4);
        e = round_trip((uint32_t)type, x, n, y);
        bool finite = true;
        for (int i = 0; i < n; i++)
            finite = finite && isfinite(y[i]);
        CHECK_MSG(finite && e >= 0 && e <= 1.0, "%s: tiny values rel err %.4f", nm, e);
        /* NaN / inf inputs must not crash (output content unspecified) */
        for (int i = 0; i < n; i++)
            x[i] = (i % 3 == 0) ? NAN : (i % 3 == 1) ? INFINITY : -1e38f;
        uint8_t q[2048];
        CHECK_EQ_INT(lg_quant_row_checked((uint32_t)type, x, q, n), LG_OK);
    }
}

/* Q8_K's block sums must equal the sums of its quants (kernels rely on them). */
static void test_q8_k_bsums(void)
{
    float x[512];
    for (int i = 0; i < 512; i++)
        x[i] = lg_test_rand_gauss() * (i < 256 ? 1.0f : 1e-3f);
    uint8_t q[2 * 292];
    lg_quant_row(LG_QTYPE_Q8_K, x, q, 512);
    int bad = 0;
    for (int b = 0; b < 2; b++) {
        const uint8_t *blk = q + 292 * b;
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int i = 0; i < 16; i++)
                sum += (int8_t)blk[4 + 16 * j + i];
            int16_t stored;
            memcpy(&stored, blk + 260 + 2 * j, 2);
            bad += stored != sum;
        }
        int maxq = 0;
        for (int i = 0; i < 256; i++)
            maxq = (int)fmax(maxq, abs((int8_t)blk[4 + i]));
        CHECK_EQ_INT(maxq, 127);
    }
    CHECK_EQ_INT(bad, 0);
}

/* Known answers that pin the K-quant scale search to ggml's: a hand-checkable Q6_K block
 * (levels -32..31 exactly representable) must round-trip exactly. */
static void test_exact(void)
{
    float x[256], y[256];
    for (int i = 0; i < 256; i++)
        x[i] = (float)((i * 7) % 64 - 32) * 0.5f;
    for (int i = 0; i < 256; i += 16)
        x[i] = -16.0f; /* every sub-block reaches -32 levels */
    double e = round_trip(LG_QTYPE_Q6_K, x, 256, y);
    CHECK_MSG(e < 1e-6, "Q6_K exact grid rel err %.3g", e);
    for (int i = 0; i < 256; i++)
        x[i] = (float)(i % 16) * 0.25f - 2.0f;
    e = round_trip(LG_QTYPE_Q4_K, x, 256, y);
    CHECK_MSG(e < 1e-3, "Q4_K exact grid rel err %.3g", e);
    e = round_trip(LG_QTYPE_Q5_K, x, 256, y);
    CHECK_MSG(e < 1e-3, "Q5_K exact grid rel err %.3g", e);
    e = round_trip(LG_QTYPE_Q4_1, x, 256, y);
    CHECK_MSG(e < 1e-3, "Q4_1 exact grid rel err %.3g", e);
}

int main(void)
{
    lg_test_rand_seed(7);
    test_gaussian();
    test_edges();
    test_q8_k_bsums();
    test_exact();
    return lg_test_done("test_quant_rt");
}
