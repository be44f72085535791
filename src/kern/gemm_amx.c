/* gemm_amx.c: Intel AMX matrix products on R8 weights of type Q4_0 and Q8_0 (layout in
 * kern/repack.c), for prefill and batched decode (several tokens); the AMX availability test.
 *
 * One TDPBSSD multiplies a tile of 16 tokens x 32 activation bytes (A: one Q8_0 block per
 * token) by a tile of 32 x 16 weight bytes (B: the same block of 16 weight rows) into 16 x 16
 * exact int32 sums (C), signed x signed: Q4_0 weights enter as q - 8 in [-8, 7], Q8_0 as they
 * are, activations as they are, so no offset correction is needed. B is in AMX's "VNNI" form,
 * B[k / 4][4 n + k % 4] = weight k of row n, which is what R8 already stores for 8 rows:
 *
 *   B tile row i (64 bytes), i = 0..7    | rows 8g .. 8g+7 (32) | rows 8g+8 .. 8g+15 (32) |
 *     Q8_0: R8 vector i of group g and of group g + 1 (elements 4i .. 4i + 3 of each row)
 *     Q4_0: i < 4: low nibbles of vector i; i >= 4: high nibbles of vector i - 4, minus 8
 *           (elements 4i .. 4i + 3 again: the high nibbles hold elements 16 + 4k ..)
 *
 * so a token's A row is simply its block's 32 qs bytes in element order. After each block the
 * C tile is stored and every output (token t, row r) takes the reference's block term
 *     acc += (float)isum * (dw[r] * dy[t])
 * in the reference's order (separate multiply and add, no FMA), 16 rows of a token per zmm
 * register, so every output is bit-identical to lg_vec_dot_ref (tests/unit/test_amx.c).
 *
 * Tiling (buffers on the stack, about 100 KiB; no allocation):
 *  - tokens in passes of at most TPASS, tiles of 16; per pass, K in chunks of kb blocks (the
 *    pass's activation scales of a chunk fit DY_N floats), the scales converted once per chunk
 *    for all row tiles. A tiles are read in place from the caller's rows (row stride ldq);
 *    a call of fewer than 16 tokens configures tiles of n_tok rows, and the partial last tile
 *    of a longer call is copied into a zero-padded buffer (no read past the caller's rows);
 *  - per row tile (2 groups = 16 rows, starting at the range's first group; a lone last group
 *    gets zero weights beside it), the chunk's weights are unpacked into B-tile order (+ the
 *    16 scales as floats): once for all token tiles, or with a single token tile a pair of
 *    blocks at a time inside its loop, so that streaming the weights overlaps the tile work;
 *  - a chunk's partial sums leave through y and come back for the next chunk (exact floats:
 *    the order of additions stays the reference's). Stores and partial loads are masked to
 *    the rows in [r0, r1), so groups cut by the range are computed whole, only rows in range
 *    are written, nothing outside is touched.
 * Tiles: tmm0, tmm1 C (16 x 64 bytes), tmm2, tmm3 A (16 x 32), tmm4, tmm5 B (8 x 64).
 * Cost (measured on a Sapphire Rapids VM): per block and 16 x 16 outputs the tile work (two
 * loads, the product, the C store) and the scaling (4 vector operations per 16 outputs) add up
 * rather than overlap, about 2.2x (Q4_0) to 3x (Q8_0) faster than the VNNI kernels from 32
 * tokens on; below MIN_TOK_* tokens the VNNI kernels win.
 * Thread-safety: reentrant; each call loads its own thread's tile configuration and releases
 * it. lg_amx_ok() asks the kernel once per process for the tile state.
 */
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kern/amx.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

/* ---- availability ------------------------------------------------------------------------ */

enum {
    ARCH_REQ_XCOMP_PERM = 0x1023, /* Linux arch_prctl: ask for an extended state component */
    XFEATURE_XTILEDATA = 18       /* the AMX tile data state */
};

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static bool amx_usable;

static void amx_init(void)
{
    const char *env = getenv("LG_AMX");
    if (env && strcmp(env, "0") == 0)
        return;
    unsigned a, b, c, d;
    /* AMX-TILE (leaf 7 EDX bit 24), AMX-INT8 (bit 25), and an OS that manages the tile state
     * through XSAVE (OSXSAVE, then XCR0 bits 17 XTILECFG and 18 XTILEDATA) */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 25 & 1))
        return;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1))
        return;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo >> 17 & 3) != 3)
        return;
    /* Linux hands the 8 KiB tile state to a process only when asked. (Under valgrind all three
     * checks fail: its CPUID hides AMX, its XCR0 lacks the tile bits, the request gets -1.) */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return;
    amx_usable = true;
}

bool lg_amx_ok(void)
{
    pthread_once(&amx_once, amx_init);
    return amx_usable;
}

/* ---- the kernel -------------------------------------------------------------------------- */

enum {
    TT = 16,        /* tokens per tile (C rows, A rows) */
    QB = 32,        /* quant bytes of a block (A row, weights per row and block) */
    BW = 8 * 64,    /* B-tile bytes of one block */
    BBLK = BW + 64, /* unpacked weight block: B tile + 16 scales as floats */
    KB_MAX = 32,    /* blocks per chunk at most (the B and tail buffers) */
    DY_N = 16384,   /* activation scales of a pass's chunk (64 KiB) */
    TPASS = 512,    /* tokens per pass (a chunk then has KB_MAX blocks) */
    ABYTES = sizeof(struct lg_block_q8_0),
    Q4_BLOCK = 16 + 4 * 32, /* R8 block bytes */
    Q8_BLOCK = 16 + 8 * 32
};
_Static_assert(Q4_BLOCK == 8 * sizeof(struct lg_block_q4_0), "R8 Q4_0 block");
_Static_assert(Q8_BLOCK == 8 * sizeof(struct lg_block_q8_0), "R8 Q8_0 block");
_Static_assert(DY_N / TPASS >= KB_MAX, "chunk of a full pass");

/* The AMX tile configuration (palette 1) as LDTILECFG reads it. */
struct tile_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile i */
    uint8_t rows[16];
};

/* m: rows of the A and C tiles (tokens per tile, <= TT): a call of fewer than TT tokens
 * multiplies and stores only as many rows (the unit's time grows with them). */
static void tiles_config(int m)
{
    _Alignas(64) struct tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 2; i++) {
        cfg.rows[i] = (uint8_t)m; /* C */
        cfg.colsb[i] = 64;
        cfg.rows[2 + i] = (uint8_t)m; /* A */
        cfg.colsb[2 + i] = QB;
        cfg.rows[4 + i] = QB / 4; /* B */
        cfg.colsb[4 + i] = 64;
    }
    _tile_loadconfig(&cfg);
}

static inline __m512i load2x256(const uint8_t *p0, const uint8_t *p1)
{
    const __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)p0);
    const __m256i hi =
        p1 ? _mm256_loadu_si256((const __m256i *)(const void *)p1) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* The 16 weight rows' scales of one R8 block pair as floats (zero for a missing group). */
static inline void unpack_scales(const uint8_t *p0, const uint8_t *p1, uint8_t *dst)
{
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)p0);
    const __m128i hi =
        p1 ? _mm_loadu_si128((const __m128i *)(const void *)p1) : _mm_setzero_si128();
    const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    _mm512_store_ps((float *)(void *)(dst + BW), _mm512_cvtph_ps(h));
}

/* Software prefetch PF_DIST bytes ahead in the two groups' streams (short streams that the
 * hardware prefetcher alone picks up late). */
enum { PF_DIST = 1024 };
static inline void prefetch_blocks(const uint8_t *q0, const uint8_t *q1, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64) {
        _mm_prefetch((const char *)(q0 + PF_DIST + o), _MM_HINT_T0);
        if (q1)
            _mm_prefetch((const char *)(q1 + PF_DIST + o), _MM_HINT_T0);
    }
}

/* nb blocks of groups at p0 and p1 (NULL: none) into B-tile order at dst (BBLK per block). */
static void unpack_q4_0(const uint8_t *p0, const uint8_t *p1, int64_t nb, uint8_t *dst)
{
    const __m512i m4 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    for (int64_t b = 0; b < nb; b++, dst += BBLK) {
        const uint8_t *q0 = p0 + (size_t)b * Q4_BLOCK, *q1 = p1 ? p1 + (size_t)b * Q4_BLOCK : NULL;
        prefetch_blocks(q0, q1, Q4_BLOCK);
        unpack_scales(q0, q1, dst);
        for (int k = 0; k < 4; k++) {
            const __m512i v = load2x256(q0 + 16 + 32 * k, q1 ? q1 + 16 + 32 * k : NULL);
            const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(v, m4), eight);
            const __m512i hi =
                _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), eight);
            _mm512_store_si512((void *)(dst + 64 * k), lo);
            _mm512_store_si512((void *)(dst + 64 * (4 + k)), hi);
        }
    }
}

static void unpack_q8_0(const uint8_t *p0, const uint8_t *p1, int64_t nb, uint8_t *dst)
{
    for (int64_t b = 0; b < nb; b++, dst += BBLK) {
        const uint8_t *q0 = p0 + (size_t)b * Q8_BLOCK, *q1 = p1 ? p1 + (size_t)b * Q8_BLOCK : NULL;
        prefetch_blocks(q0, q1, Q8_BLOCK);
        unpack_scales(q0, q1, dst);
        for (int k = 0; k < 8; k++)
            _mm512_store_si512((void *)(dst + 64 * k),
                               load2x256(q0 + 16 + 32 * k, q1 ? q1 + 16 + 32 * k : NULL));
    }
}

typedef void (*unpack_fn)(const uint8_t *p0, const uint8_t *p1, int64_t nb, uint8_t *dst);

/* One token tile over one row tile's chunk. */
struct tile_args {
    uint8_t *bb;            /* unpacked weights [nb][BBLK] */
    unpack_fn unpack;       /* NULL, or: unpack each pair of blocks into bb just before use */
    const uint8_t *p0, *p1; /* with unpack: the R8 groups at the chunk's start (p1 may be NULL) */
    size_t wblk;            /* with unpack: R8 bytes per block */
    const uint8_t *ab;      /* the tile's first token's first block's 32 quants */
    size_t lda;             /* bytes between the tile's tokens (A-tile row stride) */
    size_t ablk;            /* bytes between a token's blocks */
    const float *dy;        /* activation scales [nb][TT] */
    int64_t nb;
    float *yo; /* output of the tile's first token, row 8g */
    int64_t ldy;
    __mmask16 m; /* rows in range */
    int first;   /* start from 0, else from the partial sums in yo */
};

/* acc[t] += (float)isum[t] * (dw * dy[t]) for the C tile stored at c. */
static inline __attribute__((always_inline)) void
block_terms(__m512 *acc, const int32_t *c, const uint8_t *bblk, const float *dy, const int NT)
{
    const __m512 dw = _mm512_load_ps((const float *)(const void *)(bblk + BW));
    _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++)
    {
        const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(dy[t]));
        const __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c + 16 * t)));
        acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(v, sc));
    }
}

/* One block: A (tokens) times B (weights) into C tile tc, stored to cbuf. */
#define AMX_BLOCK(tc, ta, tb, cbuf, ap, lda, bp)                                                   \
    do {                                                                                           \
        _tile_loadd(ta, ap, lda);                                                                  \
        _tile_loadd(tb, bp, 64);                                                                   \
        _tile_zero(tc);                                                                            \
        _tile_dpbssd(tc, ta, tb);                                                                  \
        _tile_stored(tc, cbuf, 64);                                                                \
    } while (0)

/* Two blocks per step on two sets of tiles. (Scaling the pair stored one step earlier, so that
 * the vector loads never wait for the tile stores just issued, measured no faster.) */
static inline __attribute__((always_inline)) void tile_run(const struct tile_args *a, const int NT)
{
    _Alignas(64) int32_t c[2][TT * 16];
    __m512 acc[TT];
    _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++) acc[t] =
        a->first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(a->m, a->yo + t * a->ldy);
    uint8_t *bb = a->bb;
    const uint8_t *ab = a->ab, *p0 = a->p0, *p1 = a->p1;
    const size_t lda = a->lda, ablk = a->ablk, wblk = a->wblk;
    const float *dy = a->dy;
    int64_t b = 0;
    for (; b + 2 <= a->nb; b += 2, bb += 2 * BBLK, ab += 2 * ablk, dy += 2 * TT) {
        if (a->unpack)
            a->unpack(p0 + b * wblk, p1 ? p1 + b * wblk : NULL, 2, bb);
        AMX_BLOCK(0, 2, 4, c[0], ab, lda, bb);
        AMX_BLOCK(1, 3, 5, c[1], ab + ablk, lda, bb + BBLK);
        block_terms(acc, c[0], bb, dy, NT);
        block_terms(acc, c[1], bb + BBLK, dy + TT, NT);
    }
    if (b < a->nb) {
        if (a->unpack)
            a->unpack(p0 + b * wblk, p1 ? p1 + b * wblk : NULL, 1, bb);
        AMX_BLOCK(0, 2, 4, c[0], ab, lda, bb);
        block_terms(acc, c[0], bb, dy, NT);
    }
    _Pragma("GCC unroll 16") for (int t = 0; t < NT; t++)
        _mm512_mask_storeu_ps(a->yo + t * a->ldy, a->m, acc[t]);
}

typedef void (*tile_fn)(const struct tile_args *a);

/* clang-format off */
#define TILE_FN(n) static void tile_##n(const struct tile_args *a) { tile_run(a, n); }
TILE_FN(1) TILE_FN(2) TILE_FN(3) TILE_FN(4) TILE_FN(5) TILE_FN(6) TILE_FN(7) TILE_FN(8)
TILE_FN(9) TILE_FN(10) TILE_FN(11) TILE_FN(12) TILE_FN(13) TILE_FN(14) TILE_FN(15) TILE_FN(16)
#undef TILE_FN
static const tile_fn tiles[TT] = {tile_1, tile_2, tile_3, tile_4, tile_5, tile_6, tile_7, tile_8,
    tile_9, tile_10, tile_11, tile_12, tile_13, tile_14, tile_15, tile_16};
/* clang-format on */

/* The scales of tokens [0, nt) (rows of ldq bytes at ax) for blocks [b0, b0 + nb) as floats:
 * dy[tile][b][16], 0 past nt in the last tile. */
static void prep_scales(const uint8_t *ax, size_t ldq, int64_t nt, int64_t b0, int64_t nb,
                        float *dy)
{
    const int64_t ntiles = (nt + TT - 1) / TT;
    for (int64_t t = 0; t < ntiles * TT; t++) {
        float *dt = dy + (t / TT) * nb * TT + t % TT;
        if (t >= nt) {
            for (int64_t b = 0; b < nb; b++)
                dt[b * TT] = 0.0f;
            continue;
        }
        const uint8_t *src = ax + (size_t)t * ldq + (size_t)b0 * ABYTES;
        for (int64_t b = 0; b < nb; b++, src += ABYTES) {
            uint16_t d;
            memcpy(&d, src + offsetof(struct lg_block_q8_0, d), 2);
            dt[b * TT] = _cvtsh_ss(d);
        }
    }
}

/* The quants of tokens [0, nt) (nt < TT) for blocks [b0, b0 + nb) into a[b][TT][32], rows
 * past nt zero: the last token tile of a call of more than TT tokens, which must not read
 * past the caller's rows. */
static void prep_tail(const uint8_t *ax, size_t ldq, int64_t nt, int64_t b0, int64_t nb, uint8_t *a)
{
    for (int64_t t = 0; t < TT; t++) {
        const uint8_t *src = t < nt ? ax + (size_t)t * ldq + (size_t)b0 * ABYTES : NULL;
        for (int64_t b = 0; b < nb; b++) {
            __m256i v = _mm256_setzero_si256();
            if (src)
                v = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(src + (size_t)b * ABYTES +
                                                    offsetof(struct lg_block_q8_0, qs)));
            _mm256_store_si256((__m256i *)(void *)(a + (size_t)(b * TT + t) * QB), v);
        }
    }
}

static void amx_gemm(int q4, const struct lg_wmat *w, const void *qx, size_t ldq, float *y,
                     int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)
{
    if (r0 >= r1 || n_tok <= 0)
        return;
    _Alignas(64) float dyb[DY_N];
    _Alignas(64) uint8_t tail[KB_MAX * TT * QB];
    _Alignas(64) uint8_t bbuf[KB_MAX * BBLK];
    const size_t bbytes = q4 ? Q4_BLOCK : Q8_BLOCK;
    const int64_t nb_all = w->cols / LG_QK;
    const size_t gbytes = bbytes * (size_t)nb_all;
    const int64_t g0 = r0 / 8, g1 = (r1 + 7) / 8;
    const uint8_t *wb = w->data, *ax = qx;
    /* fewer than TT tokens: tiles of n_tok rows, read straight from the caller's rows */
    tiles_config(n_tok < TT ? (int)n_tok : TT);
    for (int64_t tc = 0; tc < n_tok; tc += TPASS) {
        const int64_t nt = n_tok - tc < TPASS ? n_tok - tc : TPASS;
        const int64_t ntiles = (nt + TT - 1) / TT;
        const int64_t nfull = n_tok < TT ? 1 : nt / TT; /* tiles read in place */
        int64_t kb = DY_N / (ntiles * TT);
        if (kb > KB_MAX)
            kb = KB_MAX;
        const uint8_t *at = ax + (size_t)tc * ldq;
        for (int64_t b0 = 0; b0 < nb_all; b0 += kb) {
            const int64_t nb = nb_all - b0 < kb ? nb_all - b0 : kb;
            prep_scales(at, ldq, nt, b0, nb, dyb);
            if (nfull < ntiles)
                prep_tail(at + (size_t)(nfull * TT) * ldq, ldq, nt - nfull * TT, b0, nb, tail);
            for (int64_t g = g0; g < g1; g += 2) {
                const uint8_t *p0 = wb + (size_t)g * gbytes + (size_t)b0 * bbytes;
                const uint8_t *p1 = g + 1 < g1 ? p0 + gbytes : NULL;
                /* one token tile: unpack a pair of blocks at a time in the tile loop, so
                 * that streaming the weights overlaps the tile work; several: unpack the
                 * chunk once for all of them */
                const unpack_fn unpack = q4 ? unpack_q4_0 : unpack_q8_0;
                if (ntiles > 1)
                    unpack(p0, p1, nb, bbuf);
                /* rows 8g + j in [r0, r1) */
                const int64_t lo = r0 > 8 * g ? r0 - 8 * g : 0;
                const int64_t hi = r1 - 8 * g < 16 ? r1 - 8 * g : 16;
                struct tile_args a;
                a.bb = bbuf;
                a.unpack = ntiles > 1 ? NULL : unpack;
                a.p0 = p0;
                a.p1 = p1;
                a.wblk = bbytes;
                a.nb = nb;
                a.ldy = ldy;
                a.m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
                a.first = b0 == 0;
                for (int64_t i = 0; i < ntiles; i++) {
                    const int64_t n = nt - TT * i < TT ? nt - TT * i : TT;
                    if (i < nfull) {
                        a.ab = at + (size_t)(TT * i) * ldq + (size_t)b0 * ABYTES +
                               offsetof(struct lg_block_q8_0, qs);
                        a.lda = ldq;
                        a.ablk = ABYTES;
                    } else {
                        a.ab = tail;
                        a.lda = QB;
                        a.ablk = TT * QB;
                    }
                    a.dy = dyb + i * nb * TT;
                    a.yo = y + (tc + TT * i) * ldy + 8 * g;
                    tiles[n - 1](&a);
                }
            }
        }
    }
    _tile_release();
}

static void gemm_q4_0(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,
                      int64_t n_tok, int64_t r0, int64_t r1)
{
    amx_gemm(1, w, qx, ldq, y, ldy, n_tok, r0, r1);
}

static void gemm_q8_0(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,
                      int64_t n_tok, int64_t r0, int64_t r1)
{
    amx_gemm(0, w, qx, ldq, y, ldy, n_tok, r0, r1);
}

/* From how many tokens the AMX kernels beat the VNNI ones (repack_avx512.c), on 2048 x 2048
 * matrices in calls of 128 rows as the forward pass makes them (CPU time of both in one run,
 * ratios repeated): Q4_0 0.91x at 5 tokens, 0.99x at 6, 1.06x at 7, 1.16x at 8; Q8_0 0.87x at 4,
 * 1.09x at 5, 1.19x at 6. Below, the tile unit's fixed cost per block (load, multiply, store
 * of the C tile) outweighs the products it saves; one token stays on the VNNI kernels. */
enum { MIN_TOK_Q4_0 = 7, MIN_TOK_Q8_0 = 5, MIN_TOK_K = 2 };

lg_gemm_q_fn lg_gemm_r8_amx(uint32_t type, int64_t n_tok)
{
    switch (type) {
    case LG_QTYPE_Q4_0:
        return n_tok >= MIN_TOK_Q4_0 ? gemm_q4_0 : NULL;
    case LG_QTYPE_Q8_0:
        return n_tok >= MIN_TOK_Q8_0 ? gemm_q8_0 : NULL;
    default:
        /* TODO(#6): kern/gemm_k_amx.c's own token threshold */
        return n_tok >= MIN_TOK_K ? lg_gemm_r8_amx_k(type) : NULL;
    }
}
