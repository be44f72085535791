/* vexp.h: e^x in vector registers, for the x86 ISA files (kern/ops_avx2.c's gelu and softcap,
 * kern/attn_avx2.c's and kern/attn_avx512.c's attention softmax, kern/ops_avx512.c's gelu).
 *
 * Cody-Waite reduction x = n ln2 + r (|r| <= ln2/2, ln2 split in two parts), the Cephes expf
 * polynomial in r by fused multiply-adds, times 2^n: about 2 ulp. Every step is one IEEE
 * rounding, the same as kern/ref.c's attn_exp does in scalar code, so the attention kernels
 * reproduce the reference bit for bit (for x in [LG_ATTN_EXP_MIN, 0]: 2^n is a normal power of
 * two and the product exact, whichever way it is formed).
 * Each function exists only where the including file's flags allow it (AVX2 + FMA; AVX-512 F).
 */
#ifndef LG_KERN_VEXP_H
#define LG_KERN_VEXP_H

#include <immintrin.h>

#if defined(__AVX2__) && defined(__FMA__)
/* e^x for 8 lanes, x clamped to [-87, 88] first (normal results only: 2^n with
 * -126 <= n <= 127, formed from its exponent bits). NaN becomes a number: callers that must
 * keep NaN restore it. */
static inline __m256 lg_exp8(__m256 x)
{
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

#if defined(__AVX512F__)
/* e^x for 16 lanes, x in [-87, 80] (the caller clamps); 2^n by vscalefps. */
static inline __m512 lg_exp16(__m512 x)
{
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
#endif

#endif
