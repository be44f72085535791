/* gemm_avx2.c: register-tiled quantized matrix products for several tokens (AVX2), on weights
 * in GGUF rows. (Matrices repacked at load into the R8 layout, kern/repack.c, need no packing
 * per call: kern/repack_avx2.c multiplies them; the arithmetic is the same.)
 *
 * y[t][r] = dot(W row r, activation row t) for rows [r0, r1) and n_tok tokens, with the same
 * activation formats as the vec_dot functions (Q8_0 for Q4_0 / Q5_0 / Q8_0, Q8_K for Q4_K /
 * Q6_K).
 *
 * Layout. Eight weight rows at a time are decoded ("packed") into a stack buffer in which every
 * 32-element group of the eight rows is 8 vectors W_k (k = 0..7), vector k holding elements
 * 4k..4k+3 of row j in its 32-bit lane j. One 32-bit broadcast of four activation bytes then
 * multiplies all eight rows at once (_mm256_maddubs_epi16), so the eight dot products build up
 * in the eight lanes and need no horizontal reduction; each packed vector is used for up to 4
 * tokens while it is in a register (tile: 8 rows x 4 tokens, 12 accumulators).
 * Cache blocking: the columns are cut into chunks of KC elements; a chunk of eight packed rows
 * (<= 20 KiB) stays in L1 while every token passes over it, and the tokens' activation chunk
 * (<= 64 x 2.3 KiB) stays in L2 while all row tiles pass. Partial sums go through y between
 * chunks. No allocation: buffers are on the stack (about 53 KiB).
 *
 * Arithmetic: block totals are exact int32 (the same integers as the scalar reference) and are
 * scaled and summed in float block after block in the reference's order and rounding
 * (no FMA), so every output equals lg_vec_dot_ref's bit for bit (tests/unit/test_gemm.c).
 * Unsigned weights (Q4_0 0..15, Q5_0 0..31, Q4_K 0..15, Q6_K 0..63) go straight into maddubs;
 * their offsets are corrected with activation sums (Q4_0 / Q5_0: 8 or 16 * sum(y) per block,
 * from a per-chunk prepass; Q6_K: 32 * sum(sc * bsums)). Q8_0 weights are signed: |W| times
 * sign(y, W). i16 ranges: Q4 lanes sum 16 products <= 15 * 127 (30480); Q5_0 and Q6_K lanes
 * 8 and 4 products <= 31 * 127 and 63 * 127; Q8_0 products are widened after every maddubs.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

enum {
    TR = 8,         /* rows per tile */
    TT = 4,         /* tokens per tile */
    KC_BYTES = 16384, /* packed int8 weight bytes per chunk of 8 rows (KC = KC_BYTES / 8) */
    MAXB32 = KC_BYTES / TR / 32, /* 32-element groups per chunk (64) */
    MAXTOK = 64,    /* tokens per pass over a chunk (prepass buffers) */
};

/* ---- helpers ----------------------------------------------------------------------------- */

static inline __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Keeps v in a register as computed: stops GCC from reassociating the i16 sums into a tree
 * of temporaries that spill (the sums are exact either way). */
#define PIN(v) __asm__("" : "+x"(v))

static inline float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* Transposes the 8 x 8 dwords of r0..r7 (row j in lane j of output k = dword k of input j)
 * and stores output k at dst[k]. */
static inline void store_t8(__m256i *dst, __m256i r0, __m256i r1, __m256i r2, __m256i r3,
                            __m256i r4, __m256i r5, __m256i r6, __m256i r7)
{
    __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);
    __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);
    __m256i t4 = _mm256_unpacklo_epi32(r4, r5), t5 = _mm256_unpackhi_epi32(r4, r5);
    __m256i t6 = _mm256_unpacklo_epi32(r6, r7), t7 = _mm256_unpackhi_epi32(r6, r7);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    _mm256_store_si256(dst + 0, _mm256_permute2x128_si256(u0, u4, 0x20));
    _mm256_store_si256(dst + 4, _mm256_permute2x128_si256(u0, u4, 0x31));
    _mm256_store_si256(dst + 1, _mm256_permute2x128_si256(u1, u5, 0x20));
    _mm256_store_si256(dst + 5, _mm256_permute2x128_si256(u1, u5, 0x31));
    _mm256_store_si256(dst + 2, _mm256_permute2x128_si256(u2, u6, 0x20));
    _mm256_store_si256(dst + 6, _mm256_permute2x128_si256(u2, u6, 0x31));
    _mm256_store_si256(dst + 3, _mm256_permute2x128_si256(u3, u7, 0x20));
    _mm256_store_si256(dst + 7, _mm256_permute2x128_si256(u3, u7, 0x31));
}

/* Applies DEC(p) to the eight row pointers p[0..7] and stores the transposed result. */
#define PACK8(dst, DEC, p)                                                                     \
    store_t8((dst), DEC((p)[0]), DEC((p)[1]), DEC((p)[2]), DEC((p)[3]), DEC((p)[4]),           \
             DEC((p)[5]), DEC((p)[6]), DEC((p)[7]))

static inline __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 32 nibbles of a Q4_0-style block: bytes 0..15 low nibbles, 16..31 high nibbles. */
static inline __m256i nibbles32(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)qs);
    __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

/* Byte j = 0xFF when bit j of the little-endian u32 at p is set. */
static inline __m256i bits32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                              0x0303030303030303LL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), spread);
    b = _mm256_or_si256(b, _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeULL));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* The 32 five-bit quants (0..31) of a Q5_0 block. */
static inline __m256i q5_32(const struct lg_block_q5_0 *x)
{
    return _mm256_or_si256(nibbles32(x->qs),
                           _mm256_and_si256(bits32(x->qh), _mm256_set1_epi8(16)));
}

/* Eight 16-bit values v[j] as i16 pairs (v, v) in lane j: a maddubs result times this gives
 * v[j] * (sum of the lane's two products). */
static inline __m256i pair16(const int16_t v[8])
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)v);
    __m256i w = _mm256_cvtepu16_epi32(x);
    return _mm256_or_si256(w, _mm256_slli_epi32(w, 16));
}

/* Eight floats from eight f16. */
static inline __m256 f16x8(const uint16_t h[8])
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
}

/* Lane-masked load / store of the first nr floats (nr < 8) or all eight. */
static inline __m256i lane_mask(int nr)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 load_y(const float *p, int nr)
{
    return nr == TR ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(nr));
}

static inline void store_y(float *p, __m256 v, int nr)
{
    if (nr == TR)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, lane_mask(nr), v);
}

/* ---- packing: eight rows (row j = base + min(j, nr - 1) rows) of blocks [b0, b0 + nb) ---- */

struct pk32 { /* one 32-element block of eight rows, Q4_0 / Q8_0 */
    __m256i w[8];
    __m256 d;
};

struct pk32s { /* Q8_0: |w| and w (for the sign) */
    __m256i a[8], w[8];
    __m256 d;
};

struct pkq4k { /* one 256-element super-block of eight rows */
    __m256i w[64];
    __m256i sc[8];  /* sub-block scale as an i16 pair per row */
    __m256i mn[4];  /* mins of sub-blocks 2m, 2m + 1 as i16 pair per row */
    __m256 d, dmin;
};

struct pkq6k {
    __m256i w[64];
    __m256i sc[16]; /* sub-block (16 elements) scale as an i16 pair per row */
    __m256i scp[8]; /* scales 2m, 2m + 1 as an i16 pair per row (offset correction) */
    __m256 d;
};

static inline const uint8_t *row_of(const uint8_t *base, size_t rb, int j, int nr)
{
    return base + (size_t)(j < nr ? j : nr - 1) * rb;
}

/* Pointers to block b0 of the eight rows. */
static inline void rows8(const uint8_t *base, size_t rb, int nr, int64_t b0, size_t bs,
                         const uint8_t *p[8])
{
    for (int j = 0; j < 8; j++)
        p[j] = row_of(base, rb, j, nr) + (size_t)b0 * bs;
}

/* f16 at byte offset o of the eight blocks p[j] + off, as eight floats */
static inline __m256 scales8(const uint8_t *const p[8], size_t off)
{
    uint16_t h[8];
    for (int j = 0; j < 8; j++)
        memcpy(&h[j], p[j] + off, 2);
    return f16x8(h);
}

static void pack_q4_0(const uint8_t *base, size_t rb, int nr, int64_t b0, int64_t nb,
                      struct pk32 *dst)
{
    const size_t bs = sizeof(struct lg_block_q4_0);
    const uint8_t *p[8];
    rows8(base, rb, nr, b0, bs, p);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q[8];
        for (int j = 0; j < 8; j++)
            q[j] = p[j] + (size_t)b * bs;
#define DEC_Q4_0(x) nibbles32((x) + offsetof(struct lg_block_q4_0, qs))
        PACK8(dst[b].w, DEC_Q4_0, q);
#undef DEC_Q4_0
        dst[b].d = scales8(q, offsetof(struct lg_block_q4_0, d));
    }
}

static void pack_q5_0(const uint8_t *base, size_t rb, int nr, int64_t b0, int64_t nb,
                      struct pk32 *dst)
{
    const size_t bs = sizeof(struct lg_block_q5_0);
    const uint8_t *p[8];
    rows8(base, rb, nr, b0, bs, p);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q[8];
        for (int j = 0; j < 8; j++)
            q[j] = p[j] + (size_t)b * bs;
#define DEC_Q5_0(x) q5_32((const struct lg_block_q5_0 *)(const void *)(x))
        PACK8(dst[b].w, DEC_Q5_0, q);
#undef DEC_Q5_0
        dst[b].d = scales8(q, offsetof(struct lg_block_q5_0, d));
    }
}

static void pack_q8_0(const uint8_t *base, size_t rb, int nr, int64_t b0, int64_t nb,
                      struct pk32s *dst)
{
    const size_t bs = sizeof(struct lg_block_q8_0);
    const uint8_t *p[8];
    rows8(base, rb, nr, b0, bs, p);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q[8];
        for (int j = 0; j < 8; j++)
            q[j] = p[j] + (size_t)b * bs;
#define DEC_Q8_0(x) load32((x) + offsetof(struct lg_block_q8_0, qs))
        PACK8(dst[b].w, DEC_Q8_0, q);
#undef DEC_Q8_0
        for (int k = 0; k < 8; k++)
            _mm256_store_si256(dst[b].a + k, _mm256_abs_epi8(_mm256_load_si256(dst[b].w + k)));
        dst[b].d = scales8(q, offsetof(struct lg_block_q8_0, d));
    }
}

/* 6-bit scale / min pair k of Q4_K (same values as quant_blocks.h's layout). */
static inline void scale_min_k4(const uint8_t *s, int k, int16_t *sc, int16_t *m)
{
    if (k < 4) {
        *sc = (int16_t)(s[k] & 63);
        *m = (int16_t)(s[k + 4] & 63);
    } else {
        *sc = (int16_t)((s[k + 4] & 15) | ((s[k - 4] >> 6) << 4));
        *m = (int16_t)((s[k + 4] >> 4) | ((s[k] >> 6) << 4));
    }
}

static inline __m256i dec_q4_k(const uint8_t *qs, int hi)
{
    __m256i v = load32(qs);
    return _mm256_and_si256(hi ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(15));
}

static void pack_q4_k(const uint8_t *base, size_t rb, int nr, int64_t b0, int64_t nb,
                      struct pkq4k *dst)
{
    const size_t bs = sizeof(struct lg_block_q4_k);
    const uint8_t *p[8];
    rows8(base, rb, nr, b0, bs, p);
    for (int64_t b = 0; b < nb; b++) {
        const struct lg_block_q4_k *x[8];
        int16_t sc[8][8], mn[8][8]; /* [sub-block][row] */
        for (int j = 0; j < 8; j++) {
            x[j] = (const struct lg_block_q4_k *)(const void *)(p[j] + (size_t)b * bs);
            for (int k = 0; k < 8; k++)
                scale_min_k4(x[j]->scales, k, &sc[k][j], &mn[k][j]);
        }
        for (int s = 0; s < 8; s++) { /* sub-block s: chunk s / 2, low or high nibbles */
            const int o = 32 * (s / 2), hi = s % 2;
            store_t8(dst[b].w + 8 * s, dec_q4_k(x[0]->qs + o, hi), dec_q4_k(x[1]->qs + o, hi),
                     dec_q4_k(x[2]->qs + o, hi), dec_q4_k(x[3]->qs + o, hi),
                     dec_q4_k(x[4]->qs + o, hi), dec_q4_k(x[5]->qs + o, hi),
                     dec_q4_k(x[6]->qs + o, hi), dec_q4_k(x[7]->qs + o, hi));
            dst[b].sc[s] = pair16(sc[s]);
        }
        for (int m = 0; m < 4; m++) {
            __m256i lo = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)mn[2 * m]));
            __m256i hi = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)mn[2 * m + 1]));
            dst[b].mn[m] = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 16));
        }
        const uint8_t *xb[8];
        for (int j = 0; j < 8; j++)
            xb[j] = (const uint8_t *)x[j];
        dst[b].d = scales8(xb, offsetof(struct lg_block_q4_k, d));
        dst[b].dmin = scales8(xb, offsetof(struct lg_block_q4_k, dmin));
    }
}

/* 32 six-bit quants of group jj (0..3) of half h from ql / qh (see qdot_avx2.c) */
static inline __m256i dec_q6_k(const struct lg_block_q6_k *x, int h, int jj)
{
    __m256i ql = load32(x->ql + 64 * h + 32 * (jj & 1));
    __m256i qh = load32(x->qh + 32 * h);
    __m256i lo = _mm256_and_si256(jj >> 1 ? _mm256_srli_epi16(ql, 4) : ql, _mm256_set1_epi8(15));
    __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * jj), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
}

static void pack_q6_k(const uint8_t *base, size_t rb, int nr, int64_t b0, int64_t nb,
                      struct pkq6k *dst)
{
    const size_t bs = sizeof(struct lg_block_q6_k);
    const uint8_t *p[8];
    rows8(base, rb, nr, b0, bs, p);
    for (int64_t b = 0; b < nb; b++) {
        const struct lg_block_q6_k *x[8];
        int16_t sc[16][8];
        for (int j = 0; j < 8; j++) {
            x[j] = (const struct lg_block_q6_k *)(const void *)(p[j] + (size_t)b * bs);
            for (int k = 0; k < 16; k++)
                sc[k][j] = x[j]->scales[k];
        }
        for (int g = 0; g < 8; g++) { /* 32-element group g = 4h + jj */
            const int h = g / 4, jj = g % 4;
            store_t8(dst[b].w + 8 * g, dec_q6_k(x[0], h, jj), dec_q6_k(x[1], h, jj),
                     dec_q6_k(x[2], h, jj), dec_q6_k(x[3], h, jj), dec_q6_k(x[4], h, jj),
                     dec_q6_k(x[5], h, jj), dec_q6_k(x[6], h, jj), dec_q6_k(x[7], h, jj));
        }
        for (int k = 0; k < 16; k++) {
            __m256i w = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(const void *)sc[k]));
            dst[b].sc[k] = _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi32(0xffff)),
                                           _mm256_slli_epi32(w, 16));
        }
        for (int m = 0; m < 8; m++) {
            __m256i lo = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(const void *)sc[2 * m]));
            __m256i hi = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(const void *)sc[2 * m + 1]));
            dst[b].scp[m] = _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xffff)),
                                            _mm256_slli_epi32(hi, 16));
        }
        const uint8_t *xb[8];
        for (int j = 0; j < 8; j++)
            xb[j] = (const uint8_t *)x[j];
        dst[b].d = scales8(xb, offsetof(struct lg_block_q6_k, d));
    }
}

/* ---- tiles: 8 packed rows x NT tokens over nb blocks --------------------------------------
 * ya[t]: token t's activation blocks (from the chunk's first block); yo[t]: &y[t][row0];
 * first: start from 0 (else from the partial sums in y). */

struct tile_args {
    const void *pk;
    int64_t nb;
    const uint8_t *ya[TT];
    float *yo[TT];
    const float *dy[TT];   /* Q4_0 / Q8_0: activation scales of the chunk's blocks */
    const int32_t *sy[TT]; /* Q4_0: 8 * sum of activations per block */
    int nr, first;
};

#define TILE_BEGIN(NT)                                                                         \
    __m256 acc[TT];                                                                            \
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] =                              \
        a->first ? _mm256_setzero_ps() : load_y(a->yo[t], a->nr);

#define TILE_END(NT)                                                                           \
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) store_y(a->yo[t], acc[t], a->nr);

static inline __attribute__((always_inline)) void tile_q4_0(const struct tile_args *a,
                                                              const int NT)
{
    const struct pk32 *pk = a->pk;
    const __m256i ones = _mm256_set1_epi16(1);
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        __m256i s[TT];
        const int8_t *yq[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) yq[t] =
            ((const struct lg_block_q8_0 *)(const void *)a->ya[t])[b].qs;
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) s[t] =
            _mm256_maddubs_epi16(pk[b].w[0], bcast4(yq[t]));
        _Pragma("GCC unroll 8") for (int k = 1; k < 8; k++)
        {
            __m256i w = _mm256_load_si256(pk[b].w + k);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(w, bcast4(yq[t] + 4 * k)));
                PIN(s[t]);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m256i i = _mm256_sub_epi32(_mm256_madd_epi16(s[t], ones),
                                         _mm256_set1_epi32(a->sy[t][b]));
            __m256 sc = _mm256_mul_ps(pk[b].d, _mm256_set1_ps(a->dy[t][b]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(i), sc));
        }
    }
    TILE_END(NT)
}

/* Q5_0: quants 0..31, so i16 lanes take 4 products (31 * 127 * 8 = 31496) before widening */
static inline __attribute__((always_inline)) void tile_q5_0(const struct tile_args *a,
                                                              const int NT)
{
    const struct pk32 *pk = a->pk;
    const __m256i ones = _mm256_set1_epi16(1);
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        __m256i s[TT], h[TT];
        const int8_t *yq[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) yq[t] =
            ((const struct lg_block_q8_0 *)(const void *)a->ya[t])[b].qs;
        _Pragma("GCC unroll 2") for (int half = 0; half < 2; half++)
        {
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) h[t] =
                _mm256_maddubs_epi16(pk[b].w[4 * half], bcast4(yq[t] + 16 * half));
            _Pragma("GCC unroll 4") for (int k = 1; k < 4; k++)
            {
                __m256i w = _mm256_load_si256(pk[b].w + 4 * half + k);
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                {
                    h[t] = _mm256_add_epi16(
                        h[t], _mm256_maddubs_epi16(w, bcast4(yq[t] + 16 * half + 4 * k)));
                    PIN(h[t]);
                }
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) s[t] =
                half ? _mm256_add_epi32(s[t], _mm256_madd_epi16(h[t], ones))
                     : _mm256_madd_epi16(h[t], ones);
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m256i i = _mm256_sub_epi32(s[t], _mm256_set1_epi32(a->sy[t][b]));
            __m256 sc = _mm256_mul_ps(pk[b].d, _mm256_set1_ps(a->dy[t][b]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(i), sc));
        }
    }
    TILE_END(NT)
}

static inline __attribute__((always_inline)) void tile_q8_0(const struct tile_args *a,
                                                              const int NT)
{
    const struct pk32s *pk = a->pk;
    const __m256i ones = _mm256_set1_epi16(1);
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        __m256i s[TT];
        const int8_t *yq[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            yq[t] = ((const struct lg_block_q8_0 *)(const void *)a->ya[t])[b].qs;
            s[t] = _mm256_setzero_si256();
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)
        {
            __m256i aw = _mm256_load_si256(pk[b].a + k), w = _mm256_load_si256(pk[b].w + k);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(yq[t] + 4 * k), w));
                s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p, ones));
                PIN(s[t]);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m256 sc = _mm256_mul_ps(pk[b].d, _mm256_set1_ps(a->dy[t][b]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(s[t]), sc));
        }
    }
    TILE_END(NT)
}

/* bsums pairs (sum of 32 activations per Q4_K sub-block) as 4 dwords of two i16. */
static inline __m128i bsum_pairs(const int16_t *bsums)
{
    __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)bsums);
    __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(bsums + 8));
    return _mm_hadd_epi16(lo, hi);
}

static inline __attribute__((always_inline)) void tile_q4_k(const struct tile_args *a,
                                                              const int NT)
{
    const struct pkq4k *pk = a->pk;
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        const struct lg_block_q8_k *y[TT];
        __m256i isum[TT], msum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            isum[t] = _mm256_setzero_si256();
            __m128i bp = bsum_pairs(y[t]->bsums);
            __m256i m = _mm256_madd_epi16(pk[b].mn[0], _mm256_broadcastd_epi32(bp));
            m = _mm256_add_epi32(m, _mm256_madd_epi16(pk[b].mn[1], _mm256_broadcastd_epi32(
                                                                     _mm_shuffle_epi32(bp, 1))));
            m = _mm256_add_epi32(m, _mm256_madd_epi16(pk[b].mn[2], _mm256_broadcastd_epi32(
                                                                     _mm_shuffle_epi32(bp, 2))));
            m = _mm256_add_epi32(m, _mm256_madd_epi16(pk[b].mn[3], _mm256_broadcastd_epi32(
                                                                     _mm_shuffle_epi32(bp, 3))));
            msum[t] = m;
        }
        for (int sb = 0; sb < 8; sb++) {
            const __m256i *w = pk[b].w + 8 * sb;
            __m256i s[TT];
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) s[t] =
                _mm256_maddubs_epi16(w[0], bcast4(y[t]->qs + 32 * sb));
            _Pragma("GCC unroll 8") for (int k = 1; k < 8; k++)
            {
                __m256i wk = _mm256_load_si256(w + k);
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                {
                    s[t] = _mm256_add_epi16(
                        s[t], _mm256_maddubs_epi16(wk, bcast4(y[t]->qs + 32 * sb + 4 * k)));
                    PIN(s[t]);
                }
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) isum[t] =
                _mm256_add_epi32(isum[t], _mm256_madd_epi16(s[t], pk[b].sc[sb]));
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m256 v = _mm256_sub_ps(_mm256_mul_ps(pk[b].d, _mm256_cvtepi32_ps(isum[t])),
                                     _mm256_mul_ps(pk[b].dmin, _mm256_cvtepi32_ps(msum[t])));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_set1_ps(y[t]->d), v));
        }
    }
    TILE_END(NT)
}

static inline __attribute__((always_inline)) void tile_q6_k(const struct tile_args *a,
                                                              const int NT)
{
    const struct pkq6k *pk = a->pk;
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        const struct lg_block_q8_k *y[TT];
        __m256i isum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            __m256i m = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++)
                m = _mm256_add_epi32(m, _mm256_madd_epi16(pk[b].scp[k],
                                                          bcast4((const int8_t *)y[t]->bsums +
                                                                 4 * k)));
            isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(m, 5));
        }
        for (int sb = 0; sb < 16; sb++) { /* 16-element sub-block: 4 vectors */
            const __m256i *w = pk[b].w + 4 * sb;
            const int o = 16 * sb;
            __m256i w0 = _mm256_load_si256(w), w1 = _mm256_load_si256(w + 1);
            __m256i w2 = _mm256_load_si256(w + 2), w3 = _mm256_load_si256(w + 3);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                const int8_t *q = y[t]->qs + o;
                __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast4(q)),
                                              _mm256_maddubs_epi16(w1, bcast4(q + 4)));
                __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(w2, bcast4(q + 8)),
                                              _mm256_maddubs_epi16(w3, bcast4(q + 12)));
                isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_add_epi32(_mm256_madd_epi16(s0, pk[b].sc[sb]),
                                              _mm256_madd_epi16(s1, pk[b].sc[sb])));
                PIN(isum[t]);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m256 v = _mm256_mul_ps(pk[b].d, _mm256_cvtepi32_ps(isum[t]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_set1_ps(y[t]->d), v));
        }
    }
    TILE_END(NT)
}

#define TILE_FNS(name)                                                                         \
    static void name##_1(const struct tile_args *a) { name(a, 1); }                            \
    static void name##_2(const struct tile_args *a) { name(a, 2); }                            \
    static void name##_3(const struct tile_args *a) { name(a, 3); }                            \
    static void name##_4(const struct tile_args *a) { name(a, 4); }

TILE_FNS(tile_q4_0)
TILE_FNS(tile_q5_0)
TILE_FNS(tile_q8_0)
TILE_FNS(tile_q4_k)
TILE_FNS(tile_q6_k)

/* ---- driver ------------------------------------------------------------------------------ */

typedef void (*pack_fn)(const uint8_t *base, size_t rb, int nr, int64_t b0, int64_t nb,
                        void *dst);
typedef void (*tile_fn)(const struct tile_args *a);

struct gemm_kind {
    int min_tok;     /* fewer tokens: the packing costs more than it saves (use dot4) */
    int blk;         /* elements per weight block */
    size_t ablk;     /* bytes per activation block */
    size_t pblk;     /* bytes per packed block of 8 rows */
    int prep;        /* 0 none, 1 Q8_0 scales, else also prep * sum(y) per block (offset) */
    pack_fn pack;
    tile_fn tile[TT];
};

static void pack_q4_0_v(const uint8_t *b, size_t rb, int nr, int64_t b0, int64_t nb, void *d)
{
    pack_q4_0(b, rb, nr, b0, nb, d);
}
static void pack_q5_0_v(const uint8_t *b, size_t rb, int nr, int64_t b0, int64_t nb, void *d)
{
    pack_q5_0(b, rb, nr, b0, nb, d);
}
static void pack_q8_0_v(const uint8_t *b, size_t rb, int nr, int64_t b0, int64_t nb, void *d)
{
    pack_q8_0(b, rb, nr, b0, nb, d);
}
static void pack_q4_k_v(const uint8_t *b, size_t rb, int nr, int64_t b0, int64_t nb, void *d)
{
    pack_q4_k(b, rb, nr, b0, nb, d);
}
static void pack_q6_k_v(const uint8_t *b, size_t rb, int nr, int64_t b0, int64_t nb, void *d)
{
    pack_q6_k(b, rb, nr, b0, nb, d);
}

static const struct gemm_kind K_Q4_0 = {2, 32, sizeof(struct lg_block_q8_0), sizeof(struct pk32), 8,
                                        pack_q4_0_v,
                                        {tile_q4_0_1, tile_q4_0_2, tile_q4_0_3, tile_q4_0_4}};
static const struct gemm_kind K_Q5_0 = {2, 32, sizeof(struct lg_block_q8_0), sizeof(struct pk32), 16,
                                        pack_q5_0_v,
                                        {tile_q5_0_1, tile_q5_0_2, tile_q5_0_3, tile_q5_0_4}};
static const struct gemm_kind K_Q8_0 = {4, 32, sizeof(struct lg_block_q8_0), sizeof(struct pk32s), 1,
                                        pack_q8_0_v,
                                        {tile_q8_0_1, tile_q8_0_2, tile_q8_0_3, tile_q8_0_4}};
static const struct gemm_kind K_Q4_K = {3, 256, sizeof(struct lg_block_q8_k), sizeof(struct pkq4k),
                                        0, pack_q4_k_v,
                                        {tile_q4_k_1, tile_q4_k_2, tile_q4_k_3, tile_q4_k_4}};
static const struct gemm_kind K_Q6_K = {3, 256, sizeof(struct lg_block_q8_k), sizeof(struct pkq6k),
                                        0, pack_q6_k_v,
                                        {tile_q6_k_1, tile_q6_k_2, tile_q6_k_3, tile_q6_k_4}};

/* Packed bytes per chunk of 8 rows: fits L1 (32 KiB) beside the streamed activations.
 * Blocks per chunk: PACK_BYTES / packed block size, at most MAXB32 (Q4_0 / Q5_0 64 blocks =
 * 2048 columns, Q8_0 37, Q4_K 8 super-blocks, Q6_K 7). */
enum { PACK_BYTES = 20 * 1024 };
_Static_assert(sizeof(struct pkq6k) <= PACK_BYTES && sizeof(struct pk32) * MAXB32 <= PACK_BYTES,
               "pack chunk");

static void gemm(const struct gemm_kind *g, const struct lg_wmat *w, const void *qx, size_t ldq,
                 float *y, int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)
{
    _Alignas(32) uint8_t pack[PACK_BYTES];
    float dy[MAXTOK][MAXB32];
    int32_t sy[MAXTOK][MAXB32];
    const int64_t nb_all = w->cols / g->blk;
    const int64_t kcb = (int64_t)(PACK_BYTES / g->pblk) < MAXB32 ? (int64_t)(PACK_BYTES / g->pblk)
                                                                 : MAXB32;
    const uint8_t *wb = w->data, *ab = qx;
    for (int64_t tc = 0; tc < n_tok; tc += MAXTOK) {
        const int64_t nt = n_tok - tc < MAXTOK ? n_tok - tc : MAXTOK;
        for (int64_t b0 = 0; b0 < nb_all; b0 += kcb) {
            const int64_t nb = nb_all - b0 < kcb ? nb_all - b0 : kcb;
            if (g->prep)
                for (int64_t t = 0; t < nt; t++) {
                    const struct lg_block_q8_0 *yb =
                        (const struct lg_block_q8_0 *)(const void *)(ab + (size_t)(tc + t) * ldq) +
                        b0;
                    for (int64_t b = 0; b < nb; b++) {
                        dy[t][b] = f16(yb[b].d);
                        if (g->prep > 1) {
                            __m256i s = _mm256_maddubs_epi16(_mm256_set1_epi8((char)g->prep),
                                                             load32(yb[b].qs));
                            s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
                            __m128i q = _mm_add_epi32(_mm256_castsi256_si128(s),
                                                      _mm256_extracti128_si256(s, 1));
                            q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4e));
                            q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1));
                            sy[t][b] = _mm_cvtsi128_si32(q);
                        }
                    }
                }
            for (int64_t r = r0; r < r1; r += TR) {
                const int nr = r1 - r < TR ? (int)(r1 - r) : TR;
                g->pack(wb + (size_t)r * w->row_bytes, w->row_bytes, nr, b0, nb, pack);
                struct tile_args a;
                a.pk = pack;
                a.nb = nb;
                a.nr = nr;
                a.first = b0 == 0;
                for (int64_t t = 0; t < nt; t += TT) {
                    const int n4 = nt - t < TT ? (int)(nt - t) : TT;
                    for (int i = 0; i < n4; i++) {
                        int64_t tok = tc + t + i;
                        a.ya[i] = ab + (size_t)tok * ldq + (size_t)b0 * g->ablk;
                        a.yo[i] = y + tok * ldy + r;
                        a.dy[i] = dy[t + i];
                        a.sy[i] = sy[t + i];
                    }
                    g->tile[n4 - 1](&a);
                }
            }
        }
    }
}

#define GEMM_FN(name, kind)                                                                    \
    static void name(const struct lg_wmat *w, const void *qx, size_t ldq, float *y,           \
                     int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)                       \
    {                                                                                          \
        gemm(&kind, w, qx, ldq, y, ldy, n_tok, r0, r1);                                        \
    }

GEMM_FN(gemm_q4_0, K_Q4_0)
GEMM_FN(gemm_q5_0, K_Q5_0)
GEMM_FN(gemm_q8_0, K_Q8_0)
GEMM_FN(gemm_q4_k, K_Q4_K)
GEMM_FN(gemm_q6_k, K_Q6_K)

/* ---- one token at a time: 8 rows x 1 token without packing (decode) ----------------------
 * Each of the 8 rows' blocks is multiplied in its own vector (sign trick), the 8 vectors of
 * lane sums are reduced to one vector of 8 block totals (row j in lane j), scaled by the rows'
 * weight scales times the token's scale and added to the rows' accumulators: the reference's
 * order per row, with one vector add per block for 8 rows (no serial scalar chain). */

/* Lane j = the total of v[j]'s eight int32 lanes. */
static inline __m256i totals8(const __m256i v[8])
{
    __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20),
                            _mm256_permute2x128_si256(ab, cd, 0x31));
}

/* Lane j = the total of p[j]'s sixteen int16 lanes, when every partial sum fits in int16
 * (Q4_0: |q - 8| <= 8, |y| <= 127, 32 * 8 * 127 = 32512). */
static inline __m256i totals8_i16(const __m256i p[8])
{
    __m256i a = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    __m256i b = _mm256_hadd_epi16(_mm256_hadd_epi16(p[4], p[5]), _mm256_hadd_epi16(p[6], p[7]));
    __m256i c = _mm256_hadd_epi16(a, b); /* each 128-bit half: 8 half-block sums */
    return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(c)),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(c, 1)));
}

#define GEMV_FN(name, blk, BODY)                                                               \
    static void name(const struct lg_wmat *w, const void *qx, size_t ldq, float *y,           \
                     int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)                       \
    {                                                                                          \
        const int64_t nb = w->cols / LG_QK;                                                    \
        for (int64_t r = r0; r < r1; r += TR) {                                                \
            const int nr = r1 - r < TR ? (int)(r1 - r) : TR;                                   \
            const blk *x[8];                                                                   \
            for (int j = 0; j < 8; j++)                                                        \
                x[j] = (const blk *)(const void *)row_of((const uint8_t *)w->data +            \
                                                             (size_t)r * w->row_bytes,         \
                                                         w->row_bytes, j, nr);                 \
            for (int64_t t = 0; t < n_tok; t++) {                                              \
                const struct lg_block_q8_0 *ya =                                               \
                    (const struct lg_block_q8_0 *)(const void *)((const uint8_t *)qx +         \
                                                                  (size_t)t * ldq);            \
                __m256 acc = _mm256_setzero_ps();                                              \
                for (int64_t b = 0; b < nb; b++) {                                             \
                    if (t == 0) /* 8 row streams: help the prefetcher, ~4 lines ahead */       \
                        for (int j = 0; j < 8; j++)                                            \
                            _mm_prefetch((const char *)(x[j] + b) + 256, _MM_HINT_T0);         \
                    const __m256i yq = load32(ya[b].qs);                                       \
                    __m256i tot;                                                               \
                    BODY                                                                       \
                    __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(                               \
                        (short)x[0][b].d, (short)x[1][b].d, (short)x[2][b].d, (short)x[3][b].d, \
                        (short)x[4][b].d, (short)x[5][b].d, (short)x[6][b].d,                  \
                        (short)x[7][b].d));                                                    \
                    __m256 sc = _mm256_mul_ps(dw, _mm256_set1_ps(f16(ya[b].d)));               \
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(tot), sc));      \
                }                                                                              \
                store_y(y + t * ldy + r, acc, nr);                                             \
            }                                                                                  \
        }                                                                                      \
    }

GEMV_FN(gemv_q4_0, struct lg_block_q4_0, {
    __m256i p[8];
    for (int j = 0; j < 8; j++) {
        __m256i q = _mm256_sub_epi8(nibbles32(x[j][b].qs), _mm256_set1_epi8(8));
        p[j] = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yq, q));
    }
    tot = totals8_i16(p);
})

GEMV_FN(gemv_q5_0, struct lg_block_q5_0, {
    __m256i v[8];
    for (int j = 0; j < 8; j++) {
        __m256i q = _mm256_sub_epi8(q5_32(&x[j][b]), _mm256_set1_epi8(16));
        v[j] = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yq, q)),
            _mm256_set1_epi16(1));
    }
    tot = totals8(v);
})

GEMV_FN(gemv_q8_0, struct lg_block_q8_0, {
    __m256i v[8];
    for (int j = 0; j < 8; j++) {
        __m256i q = load32(x[j][b].qs);
        v[j] = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yq, q)),
            _mm256_set1_epi16(1));
    }
    tot = totals8(v);
})

lg_gemm_q_fn lg_gemm_avx2(uint32_t type, int64_t n_tok)
{
    const struct gemm_kind *k = type == LG_QTYPE_Q4_0   ? &K_Q4_0
                                : type == LG_QTYPE_Q5_0 ? &K_Q5_0
                                : type == LG_QTYPE_Q8_0 ? &K_Q8_0
                                : type == LG_QTYPE_Q4_K ? &K_Q4_K
                                : type == LG_QTYPE_Q6_K ? &K_Q6_K
                                                        : NULL;
    if (!k)
        return NULL;
    if (n_tok < k->min_tok) /* few tokens: the unpacked 8-row kernel where there is one */
        return type == LG_QTYPE_Q4_0   ? gemv_q4_0
               : type == LG_QTYPE_Q5_0 ? gemv_q5_0
               : type == LG_QTYPE_Q8_0 ? gemv_q8_0
                                       : NULL;
    return type == LG_QTYPE_Q4_0   ? gemm_q4_0
           : type == LG_QTYPE_Q5_0 ? gemm_q5_0
           : type == LG_QTYPE_Q8_0 ? gemm_q8_0
           : type == LG_QTYPE_Q4_K ? gemm_q4_k
                                   : gemm_q6_k;
}
