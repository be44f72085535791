/* gemm_k_amx.c: Intel AMX matrix products on R8 weights of type Q4_K and Q6_K (layout in
 * kern/repack.c) against Q8_K activations, for prefill and batched decode (n_tok >= 2); handed
 * out by lg_gemm_r8_amx (kern/gemm_amx.c) through lg_gemm_r8_amx_k.
 *
 * The reference (kern/qdot_ref.c, kdot) computes per super-block of 256 elements
 *     isum = sum_k sc[k] * (q_k . y_k),  msum = sum_k mn[k] * bsums_k  (exact integers)
 *     acc += y->d * (d * (float)isum - dmin * (float)msum)
 * (Q6_K: q in [-32, 31], signed 8-bit scales, no mins; its term is y->d * (d * (float)isum),
 * the same float since dmin * msum = +0 there). Applying the sub-block scales to tile sums
 * after every sub-block would cost a vpmulld per token row per sub-block; instead every weight
 * is multiplied by its scale once, when the weights are unpacked, into two byte planes P0, P1
 * with w = q * sc = P0 + f * P1:
 *     Q4_K (q 0..15, sc 0..63 = 16 sh + sl): P0 = q * sl (0..225), P1 = q * sh (0..45), f = 16
 *          (each a byte, so one 16-bit multiply of a word holding two quants makes two bytes);
 *     Q6_K (w -4064..4096): P0 = w & 255 (unsigned), P1 = w >> 8 (signed, -16..16), f = 256,
 * so isum = (P0 . y) + f (P1 . y) over the whole super-block: two tile products of K = 256
 * (TDPBSUD: signed activations x unsigned P0; P1 likewise, TDPBSSD for Q6_K's signed P1) into
 * two int32 C tiles, then one shift and add per token row. Every step is an exact integer
 * (|isum| < 2^28) and the float steps are the reference's, in its order (separate multiply,
 * subtract and add; no FMA), so every output is bit-identical to lg_vec_dot_ref
 * (tests/unit/test_amx_k.c). msum (Q4_K) is taken per token row with vpmaddwd / vpdpwssd of
 * the rows' min pairs and the token's bsum pairs.
 *
 * Tiles. A (tmm4): M tokens x 64 activation bytes, M = min(n_tok, 16), from a per-pass copy
 * of the activations in tile order (zero rows past the last token of a short last tile).
 * B (tmm5 P0, tmm6 P1): 16 rows of 4-byte units x 16 weight rows, AMX's "VNNI" form
 * B[k / 4][4 n + k % 4] = weight k of row n, which is R8's own form for 8 rows, so a panel
 * row is one R8 vector of group g beside the same vector of group g + 1, decoded and scaled:
 *
 *   panel row i (64 bytes), i = e / 4      | rows 8g .. 8g+7 (32) | rows 8g+8 .. 8g+15 (32) |
 *     Q4_K: i = 16c + v (v < 8): low nibbles of qs vector 8c + v (scale 2c);
 *           i = 16c + 8 + v: high nibbles of the same vector (scale 2c + 1)
 *     Q6_K: i = 32h + 8j + v: (ql vector 16h + 8(j & 1) + v, nibble j >> 1) | (qh vector
 *           8h + v, bits 2j..2j+1) << 4, minus 32 (scale 8h + 2j + v / 4)
 *
 * C (tmm0, tmm1 for even super-blocks, tmm2, tmm3 for odd ones): M tokens x 16 rows of int32,
 * so a C row is one token's 16 outputs, one zmm register. The 8 tile products of super-block
 * b + 1 are issued one by one between the vector steps of super-block b's terms, so that the
 * tile unit and the vector units can work together (measured: they overlap only in part).
 *
 * Loop order (buffers on the stack, about 160 KiB; no allocation): tokens in passes of
 * TOKMAX; per pass, rows in blocks of RB row tiles (the block's outputs stay in L2); per
 * block, K in chunks of KB super-blocks (the pass's activations copied into tile order and
 * its bsum pairs prepared once per chunk); per row tile (2 groups = 16 rows from the range's
 * first group; a lone last group gets zero weights beside it) the chunk is unpacked once into
 * panels and every token tile runs over them with its 16 accumulators in registers. A chunk's
 * partial sums leave through y and come back for the next chunk (exact floats: the
 * reference's order of additions). Stores and loads of y are masked to the rows in [r0, r1):
 * groups cut by the range are computed whole, only rows in range are written.
 * Callers have checked lg_amx_ok() (the tile state is granted). Thread-safety: reentrant; each
 * call loads its own thread's tile configuration and releases it.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kern/amx.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

enum {
    TT = 16,      /* tokens and weight rows per tile */
    KB = 2,       /* super-blocks per K chunk (panels: 17 KiB, stay in L1 across token tiles) */
    TOKMAX = 256, /* tokens per pass */
    RB = 16,      /* row tiles per block: the block's outputs of a pass (256 KiB) stay in L2 */
    QK = LG_QK_K,
    YB = sizeof(struct lg_block_q8_k),
    YQS = offsetof(struct lg_block_q8_k, qs),
    /* R8 Q4_K block: d x 8, dmin x 8, scales (3 vectors), qs (32 vectors) */
    Q4K_DMIN = 16,
    Q4K_SCALES = 32,
    Q4K_QS = 128,
    Q4K_BLOCK = Q4K_QS + 32 * 32,
    /* R8 Q6_K block: ql (32 vectors), qh (16 vectors), scales (4 vectors), d x 8 */
    Q6K_QH = 1024,
    Q6K_SCALES = 1536,
    Q6K_D = 1664,
    Q6K_BLOCK = 1680
};
_Static_assert(Q4K_BLOCK == 8 * sizeof(struct lg_block_q4_k), "R8 Q4_K block");
_Static_assert(Q6K_BLOCK == 8 * sizeof(struct lg_block_q6_k), "R8 Q6_K block");

/* One super-block of a 16-row tile in tile form. */
struct panel {
    uint8_t lo[64][64]; /* B rows (4 tiles of 16) of P0 (see the file comment) */
    uint8_t hi[64][64]; /* B rows of P1 */
    __m512i mnp[4];     /* Q4_K: mins of sub-blocks 2j, 2j + 1 as an i16 pair, lane = row */
    __m512 d, dmin;     /* the rows' f16 scales as floats (Q6_K: dmin unused) */
};

/* The AMX tile configuration (palette 1) as LDTILECFG reads it. */
struct tile_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile i */
    uint8_t rows[16];
};

/* C lo / hi (tmm0, tmm1 and tmm2, tmm3 for odd super-blocks) and A (tmm4): m rows of 64 bytes;
 * B lo / hi (tmm5, tmm6): 16 rows. */
static void tiles_config(int m)
{
    _Alignas(64) struct tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    const int rows[7] = {m, m, m, m, m, 16, 16};
    for (int i = 0; i < 7; i++) {
        cfg.rows[i] = (uint8_t)rows[i];
        cfg.colsb[i] = rows[i] ? 64 : 0;
    }
    _tile_loadconfig(&cfg);
}

/* Zero weights for the missing second group of a lone last group (the largest block). */
static const _Alignas(64) uint8_t zero_block[Q6K_BLOCK];

/* The 32 bytes at p0 + off (rows 0..7) beside the 32 at p1 + off (rows 8..15). */
static inline __m512i load2(const uint8_t *p0, const uint8_t *p1, size_t off)
{
    const __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(p0 + off));
    const __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p1 + off));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* The 8 + 8 f16 at p0 + off, p1 + off as 16 floats. */
static inline __m512 scales16(const uint8_t *p0, const uint8_t *p1, size_t off)
{
    const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(p0 + off));
    const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p1 + off));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}

/* In every 32-bit lane: bytes i0 and i1 of the lane as two u16 (pshufb: byte 0x80 gives 0). */
static inline __m512i lane_words(__m512i v, int i0, int i1)
{
    const __m512i ctl = _mm512_add_epi32(
        _mm512_set1_epi32((int)((unsigned)i0 | 0x8000u | (unsigned)i1 << 16 | 0x80000000u)),
        _mm512_set4_epi32(0xc000c, 0x80008, 0x40004, 0));
    return _mm512_shuffle_epi8(v, ctl);
}

/* In every 32-bit lane: signed byte i of the lane as an i16 in both halves. */
static inline __m512i lane_words_s(__m512i v, int i)
{
    const __m512i ctl = _mm512_add_epi32(_mm512_set1_epi32(0x80 | i << 8 | 0x80 << 16 | i << 24),
                                         _mm512_set4_epi32(0xc000c00, 0x8000800, 0x4000400, 0));
    return _mm512_srai_epi16(_mm512_shuffle_epi8(v, ctl), 8);
}

/* Stores the low bytes (lo) and high bytes (hi) of the i16 lanes of we (even bytes of a
 * panel row) and wo (odd bytes). */
static inline void split_store(__m512i we, __m512i wo, uint8_t *lo, uint8_t *hi)
{
    /* (a & c) | b: imm 0xec */
    const __m512i l =
        _mm512_ternarylogic_epi32(we, _mm512_slli_epi16(wo, 8), _mm512_set1_epi16(0x00ff), 0xec);
    const __m512i h = _mm512_ternarylogic_epi32(wo, _mm512_srli_epi16(we, 8),
                                                _mm512_set1_epi16((short)0xff00), 0xec);
    _mm512_store_si512((void *)lo, l);
    _mm512_store_si512((void *)hi, h);
}

/* Unpacks nb Q4_K super-blocks of groups p0 (rows 0..7) and p1 (rows 8..15; the next block
 * s1 bytes on: 0 for the zero block) into panels. */
static void unpack_q4_k(const uint8_t *p0, const uint8_t *p1, size_t s1, int64_t nb,
                        struct panel *o)
{
    const __m512i m4 = _mm512_set1_epi8(15), m6 = _mm512_set1_epi8(63);
    const __m512i m2 = _mm512_set1_epi8(3);
    for (int64_t b = 0; b < nb; b++, p0 += Q4K_BLOCK, p1 += s1, o++) {
        /* 6-bit scales and mins (scale_min_k4), lane = row: bytes k of sub-blocks k, 4 + k */
        const __m512i w0 = load2(p0, p1, Q4K_SCALES), w1 = load2(p0, p1, Q4K_SCALES + 32);
        const __m512i w2 = load2(p0, p1, Q4K_SCALES + 64);
        const __m512i sc_lo = _mm512_and_si512(w0, m6), mn_lo = _mm512_and_si512(w1, m6);
        const __m512i sc_hi =
            _mm512_or_si512(_mm512_and_si512(w2, m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 6), m2), 4));
        const __m512i mn_hi =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 6), m2), 4));
        o->mnp[0] = lane_words(mn_lo, 0, 1);
        o->mnp[1] = lane_words(mn_lo, 2, 3);
        o->mnp[2] = lane_words(mn_hi, 0, 1);
        o->mnp[3] = lane_words(mn_hi, 2, 3);
        o->d = scales16(p0, p1, 0);
        o->dmin = scales16(p0, p1, Q4K_DMIN);
        /* scale = 16 sh + sl: q * sl <= 225 and q * sh <= 45 fit a byte, so one i16 multiply
         * of a word holding two quants gives both bytes of a plane */
        const __m512i sl_lo = _mm512_and_si512(sc_lo, m4);
        const __m512i sh_lo = _mm512_and_si512(_mm512_srli_epi32(sc_lo, 4), m2);
        const __m512i sl_hi = _mm512_and_si512(sc_hi, m4);
        const __m512i sh_hi = _mm512_and_si512(_mm512_srli_epi32(sc_hi, 4), m2);
        for (int c = 0; c < 4; c++) {
            const __m512i vl = c < 2 ? sl_lo : sl_hi, vh = c < 2 ? sh_lo : sh_hi;
            const int ie = 2 * (c % 2), io = ie + 1;
            const __m512i le = lane_words(vl, ie, ie), he = lane_words(vh, ie, ie);
            const __m512i lo_ = lane_words(vl, io, io), ho = lane_words(vh, io, io);
            for (int v = 0; v < 8; v++) {
                const __m512i x = load2(p0, p1, Q4K_QS + 256 * c + 32 * v);
                const __m512i ql = _mm512_and_si512(x, m4);
                const __m512i qh = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
                _mm512_store_si512((void *)o->lo[16 * c + v], _mm512_mullo_epi16(ql, le));
                _mm512_store_si512((void *)o->hi[16 * c + v], _mm512_mullo_epi16(ql, he));
                _mm512_store_si512((void *)o->lo[16 * c + 8 + v], _mm512_mullo_epi16(qh, lo_));
                _mm512_store_si512((void *)o->hi[16 * c + 8 + v], _mm512_mullo_epi16(qh, ho));
            }
        }
    }
}

/* Unpacks nb Q6_K super-blocks of groups p0 and p1 (as unpack_q4_k) into panels. */
static void unpack_q6_k(const uint8_t *p0, const uint8_t *p1, size_t s1, int64_t nb,
                        struct panel *o)
{
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; b++, p0 += Q6K_BLOCK, p1 += s1, o++) {
        __m512i sv[4];
        _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++) sv[m] =
            load2(p0, p1, Q6K_SCALES + 32 * m);
        o->d = scales16(p0, p1, Q6K_D);
        o->dmin = _mm512_setzero_ps();
        /* element 128h + 32j + l (B row 32h + 8j + v, l = 4v..4v+3): nibble j >> 1 of ql
         * vector 16h + 8 (j & 1) + v, bits 2j..2j+1 of qh vector 8h + v; sub-block 8h + 2j + v/4.
         * Each ql vector serves two B rows, each qh vector four. With u = q + 32 (0..63),
         * w = u * sc - 32 sc: vpmaddubsw of u with (sc, 0) / (0, sc) byte pairs gives u * sc of
         * the even / odd bytes as i16 (|u * sc| <= 8064). */
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                __m512i se[4], so[4], s32[4];
                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
                {
                    const int k = 8 * h + 2 * j + half;
                    se[j] = lane_words(sv[k / 4], k % 4, k % 4);
                    so[j] = _mm512_slli_epi16(se[j], 8);
                    s32[j] = _mm512_slli_epi16(lane_words_s(sv[k / 4], k % 4), 5);
                }
                _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
                {
                    const int v = 4 * half + i;
                    const __m512i xh = load2(p0, p1, Q6K_QH + (size_t)(256 * h + 32 * v));
                    _Pragma("GCC unroll 2") for (int jl = 0; jl < 2; jl++)
                    {
                        const __m512i xl = load2(p0, p1, (size_t)(32 * (16 * h + 8 * jl + v)));
                        _Pragma("GCC unroll 2") for (int nib = 0; nib < 2; nib++)
                        {
                            const int j = jl + 2 * nib;
                            /* bits 2j, 2j + 1 to bits 4, 5 of each byte */
                            const __m512i hb =
                                _mm512_and_si512(j < 2 ? _mm512_slli_epi16(xh, 4 - 2 * j)
                                                       : _mm512_srli_epi16(xh, 2 * j - 4),
                                                 m30);
                            const __m512i u = _mm512_ternarylogic_epi32(
                                nib ? _mm512_srli_epi16(xl, 4) : xl, hb, m4, 0xec);
                            split_store(_mm512_sub_epi16(_mm512_maddubs_epi16(u, se[j]), s32[j]),
                                        _mm512_sub_epi16(_mm512_maddubs_epi16(u, so[j]), s32[j]),
                                        o->lo[32 * h + 8 * j + v], o->hi[32 * h + 8 * j + v]);
                        }
                    }
                }
            }
    }
}

/* One token tile over one row tile's chunk. */
struct tile_args {
    const struct panel *pk; /* nb panels */
    int64_t nb;
    const uint8_t *aq;     /* A: the tile's activations of the chunk, [KB][TT][QK] */
    const uint8_t *ya[TT]; /* token t's Q8_K block at the chunk's start (its d) */
    const int32_t *bp[TT]; /* token t's bsum pairs of the chunk: [KB][4] (Q4_K) */
    float *yo[TT];         /* token t's outputs for the tile's 16 rows */
    __mmask16 mask;        /* rows of the tile in [r0, r1) */
    int first;             /* chunk 0: start from 0, else from the partial sums in yo */
};

/* Step s (0..7) of super-block b's 8 tile products into C (tmm0 lo, tmm1 hi): even steps
 * load the A tile of K bytes 64 (s / 2) .. and take the lo plane, odd steps the hi plane. The
 * steps are spread through the vector work of the previous super-block so that the front end
 * issues the two kinds of work together. */
/* clang-format off */
#define TILE_STEP(CL, CH)                                                                          \
    if (s % 2 == 0) {                                                                              \
        if (s == 0) {                                                                              \
            _tile_zero(CL);                                                                        \
            _tile_zero(CH);                                                                        \
        }                                                                                          \
        _tile_loadd(4, a->aq + (size_t)b * TT * QK + 64 * kq, QK);                                 \
        _tile_loadd(5, pk->lo[16 * kq], 64);                                                       \
        _tile_dpbsud(CL, 4, 5);                                                                    \
    } else {                                                                                       \
        _tile_loadd(6, pk->hi[16 * kq], 64);                                                       \
        if (q4)                                                                                    \
            _tile_dpbsud(CH, 4, 6);                                                                \
        else                                                                                       \
            _tile_dpbssd(CH, 4, 6);                                                                \
    }
/* clang-format on */

static inline __attribute__((always_inline)) void tile_step(const struct tile_args *a, int64_t b,
                                                            const int s, const int q4)
{
    const int kq = s / 2;
    const struct panel *pk = a->pk + b;
    if (b & 1) {
        TILE_STEP(2, 3)
    } else {
        TILE_STEP(0, 1)
    }
}
#undef TILE_STEP

/* Super-block b's C (pair b & 1) to c[0] (lo) and c[1] (hi). */
static inline void tile_store(int64_t b, int32_t (*c)[TT][TT])
{
    if (b & 1) {
        _tile_stored(2, c[0], 64);
        _tile_stored(3, c[1], 64);
    } else {
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
    }
}

static inline __m512i loadi(const int32_t *p)
{
    return _mm512_load_si512((const void *)p);
}

/* NT tokens (1..16) over the chunk: acc[t] (16 rows) += the reference's super-block terms. */
static inline __attribute__((always_inline)) void tile_run(const struct tile_args *a, const int NT,
                                                           const int mins)
{
    _Alignas(64) int32_t c[2][2][TT][TT];
    __m512 acc[TT];
    _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++) acc[t] =
        a->first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(a->mask, a->yo[t]);
    _Pragma("GCC unroll 8") for (int st = 0; st < 8; st++) tile_step(a, 0, st, mins);
    tile_store(0, c[0]);
    for (int64_t b = 0; b < a->nb; b++) {
        const int next = b + 1 < a->nb;
        int32_t(*cb)[TT][TT] = c[b & 1];
        const struct panel *pk = a->pk + b;
        _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++)
        {
            const __m512i isum =
                _mm512_add_epi32(loadi(cb[0][t]), _mm512_slli_epi32(loadi(cb[1][t]), mins ? 4 : 8));
            const float yd = *(const float *)(const void *)(a->ya[t] + (size_t)b * YB);
            __m512 v = _mm512_mul_ps(pk->d, _mm512_cvtepi32_ps(isum));
            if (mins) {
                const int32_t *bp = a->bp[t] + 4 * b;
                __m512i ms = _mm512_madd_epi16(pk->mnp[0], _mm512_set1_epi32(bp[0]));
                ms = _mm512_dpwssd_epi32(ms, pk->mnp[1], _mm512_set1_epi32(bp[1]));
                ms = _mm512_dpwssd_epi32(ms, pk->mnp[2], _mm512_set1_epi32(bp[2]));
                ms = _mm512_dpwssd_epi32(ms, pk->mnp[3], _mm512_set1_epi32(bp[3]));
                v = _mm512_sub_ps(v, _mm512_mul_ps(pk->dmin, _mm512_cvtepi32_ps(ms)));
            }
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_set1_ps(yd), v));
            if (next && t % 2 == 1)
                tile_step(a, b + 1, t / 2, mins);
        }
        if (next) {
            _Pragma("GCC unroll 8") for (int st = NT / 2; st < 8; st++)
                tile_step(a, b + 1, st, mins);
            tile_store(b + 1, c[(b + 1) & 1]);
        }
    }
    _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++)
        _mm512_mask_storeu_ps(a->yo[t], a->mask, acc[t]);
}

typedef void (*tile_fn)(const struct tile_args *a);

/* clang-format off */
#define TILE_FN(n)                                                                                 \
    static void tile_q4_k_##n(const struct tile_args *a) { tile_run(a, n, 1); }                    \
    static void tile_q6_k_##n(const struct tile_args *a) { tile_run(a, n, 0); }
TILE_FN(1) TILE_FN(2) TILE_FN(3) TILE_FN(4) TILE_FN(5) TILE_FN(6) TILE_FN(7) TILE_FN(8)
TILE_FN(9) TILE_FN(10) TILE_FN(11) TILE_FN(12) TILE_FN(13) TILE_FN(14) TILE_FN(15) TILE_FN(16)
#undef TILE_FN
static const tile_fn tiles_q4_k[TT] = {
    tile_q4_k_1, tile_q4_k_2, tile_q4_k_3, tile_q4_k_4, tile_q4_k_5, tile_q4_k_6,
    tile_q4_k_7, tile_q4_k_8, tile_q4_k_9, tile_q4_k_10, tile_q4_k_11, tile_q4_k_12,
    tile_q4_k_13, tile_q4_k_14, tile_q4_k_15, tile_q4_k_16};
static const tile_fn tiles_q6_k[TT] = {
    tile_q6_k_1, tile_q6_k_2, tile_q6_k_3, tile_q6_k_4, tile_q6_k_5, tile_q6_k_6,
    tile_q6_k_7, tile_q6_k_8, tile_q6_k_9, tile_q6_k_10, tile_q6_k_11, tile_q6_k_12,
    tile_q6_k_13, tile_q6_k_14, tile_q6_k_15, tile_q6_k_16};
/* clang-format on */

struct kkind {
    size_t bbytes; /* R8 bytes of one super-block of a group */
    void (*unpack)(const uint8_t *p0, const uint8_t *p1, size_t s1, int64_t nb, struct panel *o);
    const tile_fn *tiles; /* by token count - 1 */
    int mins;             /* Q4_K: bsum pairs needed */
};

static const struct kkind K_Q4_K = {Q4K_BLOCK, unpack_q4_k, tiles_q4_k, 1};
static const struct kkind K_Q6_K = {Q6K_BLOCK, unpack_q6_k, tiles_q6_k, 0};

/* Token t's bsum pairs for super-blocks [b0, b0 + nb): dword j of super-block b holds the sums
 * of 32-element sub-blocks 2j and 2j + 1 as two i16 (each |sum| <= 4096). */
static void prep_bsums(const uint8_t *row, int64_t b0, int64_t nb, int32_t *dst)
{
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *bs = row + (size_t)(b0 + b) * YB + offsetof(struct lg_block_q8_k, bsums);
        const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)bs);
        const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(bs + 16));
        _mm_storeu_si128((__m128i *)(void *)(dst + 4 * b), _mm_hadd_epi16(lo, hi));
    }
}

/* One call's fixed arguments. */
struct k_call {
    const struct kkind *kd;
    const uint8_t *wb; /* R8 matrix */
    size_t gbytes;     /* bytes of a group (8 rows) */
    const uint8_t *ab; /* activation rows, one every ldq bytes */
    size_t ldq;
    float *y;
    int64_t ldy, r0, r1, g1;
    int m; /* tile rows: min(n_tok, 16) */
};

/* Tokens [tc, tc + nt)'s activations of super-blocks [b0, b0 + nb) in tile order and (Q4_K)
 * their bsum pairs. Rows past nt in a short last tile of 16 rows are zeroed: C row t depends
 * only on A row t, so they reach no output, but the tile load never reads stale stack. */
static void prep_chunk(const struct k_call *k, int64_t tc, int64_t nt, int64_t b0, int64_t nb,
                       uint8_t (*act)[KB][TT][QK], int32_t (*bsp)[KB][4])
{
    for (int64_t t = 0; t < nt; t++) {
        const uint8_t *row = k->ab + (size_t)(tc + t) * k->ldq;
        for (int64_t b = 0; b < nb; b++)
            memcpy(act[t / TT][b][t % TT], row + (size_t)(b0 + b) * YB + YQS, QK);
        if (k->kd->mins)
            prep_bsums(row, b0, nb, bsp[t][0]);
    }
    if (nt % TT && k->m == TT)
        for (int64_t b = 0; b < nb; b++)
            memset(act[nt / TT][b][nt % TT], 0, (size_t)(TT - nt % TT) * QK);
}

/* Row tile g (groups g, g + 1) over super-blocks [b0, b0 + nb) for the pass's tokens. */
static void row_tile(const struct k_call *k, int64_t g, int64_t tc, int64_t nt, int64_t b0,
                     int64_t nb, struct panel *pan, uint8_t (*act)[KB][TT][QK],
                     int32_t (*bsp)[KB][4])
{
    const struct kkind *kd = k->kd;
    const uint8_t *p0 = k->wb + (size_t)g * k->gbytes + (size_t)b0 * kd->bbytes;
    if (g + 1 < k->g1)
        kd->unpack(p0, p0 + k->gbytes, kd->bbytes, nb, pan);
    else
        kd->unpack(p0, zero_block, 0, nb, pan);
    const int64_t row0 = 8 * g;
    uint32_t mask = 0;
    for (int n = 0; n < TT; n++)
        if (row0 + n >= k->r0 && row0 + n < k->r1)
            mask |= 1u << n;
    struct tile_args a;
    a.pk = pan;
    a.nb = nb;
    a.mask = (__mmask16)mask;
    a.first = b0 == 0;
    for (int64_t t0 = 0; t0 < nt; t0 += k->m) {
        const int cnt = nt - t0 < k->m ? (int)(nt - t0) : k->m;
        a.aq = act[t0 / TT][0][0];
        for (int i = 0; i < cnt; i++) {
            const int64_t tok = tc + t0 + i;
            a.ya[i] = k->ab + (size_t)tok * k->ldq + (size_t)b0 * YB;
            a.bp[i] = bsp[t0 + i][0];
            a.yo[i] = k->y + tok * k->ldy + row0;
        }
        kd->tiles[cnt - 1](&a);
    }
}

static void k_gemm(const struct kkind *kd, const struct lg_wmat *w, const void *qx, size_t ldq,
                   float *y, int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)
{
    if (r0 >= r1 || n_tok <= 0)
        return;
    _Alignas(64) struct panel pan[KB];                 /* a row tile's chunk */
    _Alignas(64) uint8_t act[TOKMAX / TT][KB][TT][QK]; /* the pass's chunk of activations */
    _Alignas(64) int32_t bsp[TOKMAX][KB][4];
    const int64_t nb_all = w->cols / QK, g0 = r0 / 8;
    const struct k_call k = {.kd = kd,
                             .wb = w->data,
                             .gbytes = kd->bbytes * (size_t)nb_all,
                             .ab = qx,
                             .ldq = ldq,
                             .y = y,
                             .ldy = ldy,
                             .r0 = r0,
                             .r1 = r1,
                             .g1 = (r1 + 7) / 8,
                             .m = n_tok < TT ? (int)n_tok : TT};
    tiles_config(k.m);
    for (int64_t tc = 0; tc < n_tok; tc += TOKMAX) {
        const int64_t nt = n_tok - tc < TOKMAX ? n_tok - tc : TOKMAX;
        for (int64_t gb = g0; gb < k.g1; gb += 2 * RB) {
            const int64_t ge = k.g1 < gb + 2 * RB ? k.g1 : gb + 2 * RB;
            for (int64_t b0 = 0; b0 < nb_all; b0 += KB) {
                const int64_t nb = nb_all - b0 < KB ? nb_all - b0 : KB;
                prep_chunk(&k, tc, nt, b0, nb, act, bsp);
                for (int64_t g = gb; g < ge; g += 2)
                    row_tile(&k, g, tc, nt, b0, nb, pan, act, bsp);
            }
        }
    }
    _tile_release();
}

static void gemm_q4_k(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,
                      int64_t n_tok, int64_t r0, int64_t r1)
{
    k_gemm(&K_Q4_K, w, qx, ldq, y, ldy, n_tok, r0, r1);
}

static void gemm_q6_k(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,
                      int64_t n_tok, int64_t r0, int64_t r1)
{
    k_gemm(&K_Q6_K, w, qx, ldq, y, ldy, n_tok, r0, r1);
}

lg_gemm_q_fn lg_gemm_r8_amx_k(uint32_t type)
{
    switch (type) {
    case LG_QTYPE_Q4_K:
        return gemm_q4_k;
    case LG_QTYPE_Q6_K:
        return gemm_q6_k;
    default:
        return NULL;
    }
}
