/* kv_avx2.c: the F16C row conversion of lg_kv_store (built with -mavx2 -mfma -mf16c; kv.c calls
 * it only when lg_kv_f16c_ok() and the kernel table is not "ref").
 *
 * vcvtps2ph with an immediate rounding mode of round-to-nearest-even ignores MXCSR.RC, and this
 * engine never sets MXCSR.FTZ/DAZ, so every finite input rounds exactly as lg_f32_to_f16 does
 * (overflow to infinity at >= 65520, subnormal halves, ties to even). A NaN comes out quiet
 * with the top 10 payload bits kept and its sign (sign | 0x7e00 | payload >> 13), which is what
 * lg_f32_to_f16 defines for NaN. test_kv_types compares both on every input class (and on all
 * 2^32 bit patterns with LG_TEST_EXHAUSTIVE=1). */
#include <immintrin.h>
#include <string.h>

#include "kv/kv.h"
#include "quant/quant.h"

void lg_kv_f16_row_avx2(const float *x, void *dst, int64_t n)
{
    uint8_t *out = dst;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        __m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(x + i + 8), _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_si256((__m256i *)(void *)(out + 2 * i), _mm256_set_m128i(b, a));
    }
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) {
        uint16_t h = lg_f32_to_f16(x[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}
