/* repack_body.h: the R8 matrix-product kernels (Q4_0, Q8_0, Q4_K, Q6_K) of kern/repack_avx2.c
 * (read its header: layout, tiling, arithmetic) and kern/repack_avx512.c. No include guard:
 * each of those files defines the ISA's integer steps and includes this once, so the two get
 * the same tiles, decoding, chunking and driver. The includer provides:
 *   R8_GEMM_NAME     the exported lg_gemm_q_fn selector's name
 *   R8_PIN_REG(v)    the asm constraint of PIN ("+x"(v) or "+v"(v))
 *   r8_dot2(s, w0, y0, w1, y1), r8_dot(s, w, y)  s plus the products of unsigned weight bytes
 *                    and signed activation bytes (i16 lanes in AVX2, i32 in VNNI)
 *   r8_dot32(s, w, y)  the same into i32 lanes
 *   r8_q4_0_start(sy), r8_q4_0_end(s, sy)  a Q4_0 block's accumulator before its r8_dot2
 *                    steps and its i32 total minus sy after them
 *   r8_scaled(s, sc) r8_dot sums times sub-block scales, in i32
 *   r8_q6_dot(w0, y0, .., w3, y3, sc)  a Q6_K sub-block's 16 products times its scale, in i32
 *   r8_q6_step(s, i, w, y), R8_Q6_SLOT(i), r8_q6_scaled(s, sc)  the same one product vector
 *                    i (0..3) at a time: step i updates s[R8_Q6_SLOT(i)] (step 0 starts it)
 *   R8_SC(v, i), R8_SCS(v, i)  unsigned / signed byte i of each 32-bit lane as r8_scaled
 *                    takes a scale
 *   R8_ONE_Q4_0, R8_ONE_Q8_0, R8_ONE_Q4_K, R8_ONE_Q6_K  a tile_fn of the includer's own for one
 *                    token (declared before the include, defined after it), or NULL: tile_*_1
 *   R8_Q8_0_OFFSET   the prepass's offset for Q8_0's one-token tile (0: none; 128 for a tile
 *                    taking w + 128)
 *   R8_PAIR_Q4_0, R8_PAIR_Q8_0  {tile_fn for 1 .. R8_PAIR_TT tokens} of the includer's own for
 *                    two groups side by side (16 rows: group g at a->gp, g + 1 at a->gp +
 *                    a->gstride; a->yo[t] 16 outputs), run on pairs of whole groups for several
 *                    tokens, or {NULL}: one group at a time (tile_*)
 *   R8_PAIR_TT       tokens per pair tile (at most PTT)
 *   R8_STAGE         entries of the pair tiles' prepass (struct r8_stage): PRE with pair tiles
 *                    for Q4_0 / Q8_0, else 1 (none)
 *   R8_Q8_0_OFFSET_N the same offset for Q8_0 with several tokens (tile_q8_0 ignores it; 128 for
 *                    pair tiles taking w + 128)
 *   R8_PAIR_DECODE_Q4_K, R8_PAIR_DECODE_Q6_K  a pair_decode_fn of the includer's own (a chunk of
 *                    groups g and g + 1 decoded together, at most DEC_BLOCKS / 2 blocks) or NULL
 *   R8_PAIR_DEC_Q4_K, R8_PAIR_DEC_Q6_K  its tiles for 1 .. TT tokens (as R8_PAIR_*), or {NULL}
 * Every step is an exact integer sum, so both ISAs give the same outputs, bit for bit those of
 * lg_vec_dot_ref. */
enum {
    TT = 4,           /* tokens per tile */
    PTT = 8,          /* tokens per pair tile at most (R8_PAIR_TT) */
    MAXTOK = 64,      /* tokens per pass (the partial-group buffers) */
    PRE = 2048,       /* prepass entries (tokens x blocks of a chunk) */
    L1_BYTES = 20480, /* R8 bytes of a group's chunk when several token tiles reuse it */
    ABYTES = sizeof(struct lg_block_q8_0)
};

/* An activation block as the pair tiles of Q4_0 / Q8_0 read it: the prepass stages, per chunk,
 * each token tile's blocks (block-major, then the tile's tokens), so that a tile reaches all its
 * tokens' quants, scales and offset sums from one pointer. */
struct r8_stage {
    int8_t qs[32];
    float d;    /* the block's scale */
    int32_t sy; /* minus offset * sum(qs) */
};

struct r8_args {
    const uint8_t *gp;         /* the group's first block of the chunk */
    int64_t nb;                /* blocks in the chunk */
    const uint8_t *ya[PTT];    /* token's Q8_0 / Q8_K activation block at the chunk's start */
    const float *dy[PTT];      /* activation scales of the chunk's blocks */
    const int32_t *sy[PTT];    /* Q4_0: 8 * sum of the activations per block */
    float *yo[PTT];            /* 8 outputs (rows of the group; 16 for a pair tile) */
    size_t gstride;            /* bytes from the group's chunk to the next group's */
    const struct r8_stage *st; /* Q4_0 / Q8_0 pair tiles: token t of block b at st[b * NT + t] */
    int first;                 /* start from 0, else from the partial sums in yo */
};

static inline __m256i bcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* The products of 16 weights of a Q6_K sub-block (quants 0..63 in w0..w3, elements 4i .. 4i + 3
 * in wi) with the 16 activations at q, times the sub-block scale sc (as r8_scaled takes it). */
static inline __m256i q6_sub(__m256i w0, __m256i w1, __m256i w2, __m256i w3, const int8_t *q,
                             __m256i sc)
{
    return r8_q6_dot(w0, bcast4(q), w1, bcast4(q + 4), w2, bcast4(q + 8), w3, bcast4(q + 12), sc);
}

/* Keeps v in a register as computed (stops GCC from regrouping the exact integer sums into
 * temporaries that spill). */
#define PIN(v) __asm__("" : R8_PIN_REG(v))

static inline __m256i loadu(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* Eight f16 scales at p as floats. */
static inline __m256 scales8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* Software prefetch, into L2, of the lines of the block PF_DIST bytes ahead: one sequential
 * stream per thread, which the hardware prefetcher alone leaves at 45-85 % of a plain read
 * loop's rate in decode (one token: little work per byte, so the loads must be in flight
 * early). Measured on one token, 512 MB from DRAM (issue #10): T1 at 4 KiB ahead gave Q4_0
 * ~90 % of the read loop (T1 at 1 KiB ~75 %, 2 KiB ~87 %, 8 KiB as 4 KiB; T0 ~80 %; NTA ~50 %).
 * Always inline: as a separate function GCC finds it free of side effects (prefetches do not
 * count) and deletes the calls, which it did until then. The lines past the end of a row range
 * are fetched for nothing (4 KiB per call). */
enum { PF_DIST = 4096 };
static inline __attribute__((always_inline)) void prefetch_block(const uint8_t *p, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        _mm_prefetch((const char *)(p + PF_DIST + o), _MM_HINT_T1);
}

#define TILE_BEGIN(NT)                                                                             \
    __m256 acc[TT];                                                                                \
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] =                                  \
        a->first ? _mm256_setzero_ps() : _mm256_loadu_ps(a->yo[t]);

#define TILE_END(NT)                                                                               \
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) _mm256_storeu_ps(a->yo[t], acc[t]);

/* acc += (float)isum * (dw * dy): the reference's block term, 8 rows at once. */
#define TILE_SCALE(NT, ISUM, P)                                                                    \
    {                                                                                              \
        const __m256 dw = scales8(P);                                                              \
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)                                       \
        {                                                                                          \
            __m256 sc = _mm256_mul_ps(dw, _mm256_set1_ps(a->dy[t][b]));                            \
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(ISUM[t]), sc));        \
        }                                                                                          \
    }

enum { Q4_BLOCK = 16 + 4 * 32, Q8_BLOCK = 16 + 8 * 32 };
_Static_assert(Q4_BLOCK == 8 * sizeof(struct lg_block_q4_0), "R8 Q4_0 block");
_Static_assert(Q8_BLOCK == 8 * sizeof(struct lg_block_q8_0), "R8 Q8_0 block");

static inline __attribute__((always_inline)) void tile_q4_0(const struct r8_args *a, const int NT)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    TILE_BEGIN(NT)
    const uint8_t *p = a->gp;
    for (int64_t b = 0; b < a->nb; b++, p += Q4_BLOCK) {
        prefetch_block(p, Q4_BLOCK);
        const uint8_t *yq[TT];
        __m256i s[TT], i32[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            yq[t] = a->ya[t] + (size_t)b * ABYTES + offsetof(struct lg_block_q8_0, qs);
            s[t] = r8_q4_0_start(a->sy[t][b]);
        }
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
        {
            const __m256i v = loadu(p + 16 + 32 * k);
            const __m256i lo = _mm256_and_si256(v, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                s[t] = r8_dot2(s[t], lo, bcast4(yq[t] + 4 * k), hi, bcast4(yq[t] + 16 + 4 * k));
                PIN(s[t]);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) i32[t] =
            r8_q4_0_end(s[t], a->sy[t][b]);
        TILE_SCALE(NT, i32, p)
    }
    TILE_END(NT)
}

static inline __attribute__((always_inline)) void tile_q8_0(const struct r8_args *a, const int NT)
{
    TILE_BEGIN(NT)
    const uint8_t *p = a->gp;
    for (int64_t b = 0; b < a->nb; b++, p += Q8_BLOCK) {
        prefetch_block(p, Q8_BLOCK);
        const uint8_t *yq[TT];
        __m256i s[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) yq[t] =
            a->ya[t] + (size_t)b * ABYTES + offsetof(struct lg_block_q8_0, qs);
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)
        {
            const __m256i w = loadu(p + 16 + 32 * k);
            const __m256i aw = _mm256_abs_epi8(w);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                s[t] = r8_dot32(k ? s[t] : _mm256_setzero_si256(), aw,
                                _mm256_sign_epi8(bcast4(yq[t] + 4 * k), w));
                PIN(s[t]);
            }
        }
        TILE_SCALE(NT, s, p)
    }
    TILE_END(NT)
}

/* In every 32-bit lane: bytes i0 and i1 of the lane as two u16 (the pshufb control: byte
 * 0x80 gives 0). */
static inline __m256i lane_bytes16(__m256i v, int i0, int i1)
{
    const __m256i ctl = _mm256_add_epi32(
        _mm256_set1_epi32((int)((unsigned)i0 | 0x8000u | (unsigned)i1 << 16 | 0x80000000u)),
        _mm256_setr_epi32(0, 0x40004, 0x80008, 0xc000c, 0, 0x40004, 0x80008, 0xc000c));
    return _mm256_shuffle_epi8(v, ctl);
}

/* In every 32-bit lane: signed bytes i0 and i1 of the lane as two i16. */
static inline __m256i lane_bytes16s(__m256i v, int i0, int i1)
{
    const __m256i ctl = _mm256_add_epi32(
        _mm256_set1_epi32(0x80 | i0 << 8 | 0x80 << 16 | i1 << 24),
        _mm256_setr_epi32(0, 0x4000400, 0x8000800, 0xc000c00, 0, 0x4000400, 0x8000800, 0xc000c00));
    return _mm256_srai_epi16(_mm256_shuffle_epi8(v, ctl), 8);
}

/* R8 Q4_K block: d x 8, dmin x 8, scales (3 vectors), qs (32 vectors). */
enum { Q4K_DMIN = 16, Q4K_SCALES = 32, Q4K_QS = 128, Q4K_BLOCK = Q4K_QS + 32 * 32 };
_Static_assert(Q4K_BLOCK == 8 * sizeof(struct lg_block_q4_k), "R8 Q4_K block");

/* scales_k4 (qdot_avx2.c) on the 8 rows of the R8 Q4_K block at p, lane j = row j's bytes:
 * the 6-bit scales of sub-blocks 0..3 (sc_lo) and 4..7 (sc_hi) as bytes, and mn[m] = the
 * mins of sub-blocks 2m, 2m + 1 as an i16 pair. */
static inline void q4k_scales_mins(const uint8_t *p, __m256i *sc_lo, __m256i *sc_hi, __m256i mn[4])
{
    const __m256i w0 = loadu(p + Q4K_SCALES), w1 = loadu(p + Q4K_SCALES + 32);
    const __m256i w2 = loadu(p + Q4K_SCALES + 64);
    const __m256i m4 = _mm256_set1_epi8(15), m6 = _mm256_set1_epi8(63), m2 = _mm256_set1_epi8(3);
    const __m256i mn_lo = _mm256_and_si256(w1, m6);
    const __m256i mn_hi =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, 4), m4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w1, 6), m2), 4));
    *sc_lo = _mm256_and_si256(w0, m6);
    *sc_hi = _mm256_or_si256(_mm256_and_si256(w2, m4),
                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w0, 6), m2), 4));
    mn[0] = lane_bytes16(mn_lo, 0, 1);
    mn[1] = lane_bytes16(mn_lo, 2, 3);
    mn[2] = lane_bytes16(mn_hi, 0, 1);
    mn[3] = lane_bytes16(mn_hi, 2, 3);
}

/* sum over the 8 sub-blocks of min * (sum of the activation sub-block), per row */
static inline __m256i q4k_msum(const __m256i mn[4], const struct lg_block_q8_k *y)
{
    /* sums of the 8 32-element sub-blocks, as 4 dwords of two i16 */
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)y->bsums);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(y->bsums + 8));
    const __m128i bp = _mm_hadd_epi16(lo, hi);
    __m256i m = _mm256_madd_epi16(mn[0], _mm256_broadcastd_epi32(bp));
    m = _mm256_add_epi32(
        m, _mm256_madd_epi16(mn[1], _mm256_broadcastd_epi32(_mm_shuffle_epi32(bp, 1))));
    m = _mm256_add_epi32(
        m, _mm256_madd_epi16(mn[2], _mm256_broadcastd_epi32(_mm_shuffle_epi32(bp, 2))));
    m = _mm256_add_epi32(
        m, _mm256_madd_epi16(mn[3], _mm256_broadcastd_epi32(_mm_shuffle_epi32(bp, 3))));
    return m;
}

static inline __attribute__((always_inline)) void tile_q4_k(const struct r8_args *a, const int NT)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    TILE_BEGIN(NT)
    const uint8_t *p = a->gp;
    for (int64_t b = 0; b < a->nb; b++, p += Q4K_BLOCK) {
        prefetch_block(p, Q4K_BLOCK);
        __m256i sc_lo, sc_hi, mn[4];
        q4k_scales_mins(p, &sc_lo, &sc_hi, mn);
        const struct lg_block_q8_k *y[TT];
        __m256i isum[TT], msum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            msum[t] = q4k_msum(mn, y[t]);
            isum[t] = _mm256_setzero_si256();
        }
        if (NT <= 2) {
            /* few tokens: each qs vector loaded once for its two sub-blocks 2c, 2c + 1 */
            _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++)
            {
                const uint8_t *q = p + Q4K_QS + 256 * c;
                __m256i sl[TT], sh[TT];
                _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
                {
                    const __m256i v = loadu(q + 32 * i);
                    const __m256i lo = _mm256_and_si256(v, m4);
                    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                    {
                        const __m256i yl = bcast4(y[t]->qs + 64 * c + 4 * i);
                        const __m256i yh = bcast4(y[t]->qs + 64 * c + 32 + 4 * i);
                        sl[t] = r8_dot(i ? sl[t] : _mm256_setzero_si256(), lo, yl);
                        sh[t] = r8_dot(i ? sh[t] : _mm256_setzero_si256(), hi, yh);
                        PIN(sl[t]);
                        PIN(sh[t]);
                    }
                }
                const __m256i scl = c < 2 ? R8_SC(sc_lo, 2 * c) : R8_SC(sc_hi, 2 * c - 4);
                const __m256i sch = c < 2 ? R8_SC(sc_lo, 2 * c + 1) : R8_SC(sc_hi, 2 * c - 3);
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_add_epi32(r8_scaled(sl[t], scl), r8_scaled(sh[t], sch)));
            }
        } else {
            _Pragma("GCC unroll 1") for (int sb = 0; sb < 8; sb++)
            {
                /* sub-block sb: low (even) or high (odd) nibbles of qs bytes 32 (sb / 2) .. */
                const uint8_t *q = p + Q4K_QS + 256 * (sb / 2);
                const __m128i sh = _mm_cvtsi32_si128(4 * (sb % 2));
                __m256i s[TT];
                _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
                {
                    const __m256i w = _mm256_and_si256(_mm256_srl_epi16(loadu(q + 32 * i), sh), m4);
                    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                    {
                        const __m256i yv = bcast4(y[t]->qs + 32 * sb + 4 * i);
                        s[t] = r8_dot(i ? s[t] : _mm256_setzero_si256(), w, yv);
                        PIN(s[t]);
                    }
                }
                const __m256i sc = sb < 4 ? R8_SC(sc_lo, sb) : R8_SC(sc_hi, sb - 4);
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) isum[t] =
                    _mm256_add_epi32(isum[t], r8_scaled(s[t], sc));
            }
        }
        const __m256 d = scales8(p), dmin = scales8(p + Q4K_DMIN);
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m256 v = _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])),
                                     _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(msum[t])));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_set1_ps(y[t]->d), v));
        }
    }
    TILE_END(NT)
}

/* R8 Q6_K block: ql (32 vectors), qh (16 vectors), scales (4 vectors), d x 8. */
enum { Q6K_QH = 1024, Q6K_SCALES = 1536, Q6K_D = 1664, Q6K_BLOCK = 1680 };
_Static_assert(Q6K_BLOCK == 8 * sizeof(struct lg_block_q6_k), "R8 Q6_K block");

static inline __attribute__((always_inline)) void tile_q6_k(const struct r8_args *a, const int NT)
{
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    TILE_BEGIN(NT)
    const uint8_t *p = a->gp;
    for (int64_t b = 0; b < a->nb; b++, p += Q6K_BLOCK) {
        prefetch_block(p, Q6K_BLOCK);
        __m256i sv[4];
        for (int m = 0; m < 4; m++)
            sv[m] = loadu(p + Q6K_SCALES + 32 * m);
        const struct lg_block_q8_k *y[TT];
        __m256i isum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            /* 32 * sum_k sc[k] * bsums[k]: the correction of q + 32 */
            __m256i m = _mm256_setzero_si256();
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) m = _mm256_add_epi32(
                m, _mm256_madd_epi16(lane_bytes16s(sv[k / 2], 2 * (k % 2), 2 * (k % 2) + 1),
                                     bcast4((const uint8_t *)(y[t]->bsums + 2 * k))));
            isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(m, 5));
        }
        _Pragma("GCC unroll 1") for (int g = 0; g < 8; g++)
        {
            /* 32-element group g = 4h + j: ql bytes 64h + 32 (j & 1) + l (nibble j >> 1),
             * qh bytes 32h + l (bits 2j, 2j + 1); sub-blocks 2g (l < 16) and 2g + 1 */
            const int h = g / 4, j = g % 4;
            const uint8_t *ql = p + 32 * (16 * h + 8 * (j & 1)), *qh = p + Q6K_QH + 256 * h;
            const __m128i shl = _mm_cvtsi32_si128(4 * (j >> 1)), shh = _mm_cvtsi32_si128(2 * j);
            _Pragma("GCC unroll 2") for (int half = 0; half < 2; half++)
            {
                const int k = 2 * g + half;
                const __m256i sc = R8_SCS(sv[k / 4], k % 4);
                __m256i s[TT][2];
                _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
                {
                    const int v = 4 * half + i;
                    const __m256i lo =
                        _mm256_and_si256(_mm256_srl_epi16(loadu(ql + 32 * v), shl), m4);
                    const __m256i hb =
                        _mm256_and_si256(_mm256_srl_epi16(loadu(qh + 32 * v), shh), m3);
                    const __m256i w = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
                    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                    {
                        r8_q6_step(s[t], i, w, bcast4(y[t]->qs + 32 * g + 4 * v));
                        PIN(s[t][R8_Q6_SLOT(i)]);
                    }
                }
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) isum[t] =
                    _mm256_add_epi32(isum[t], r8_q6_scaled(s[t], sc));
            }
        }
        const __m256 d = scales8(p + Q6K_D);
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] =
            _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_set1_ps(y[t]->d),
                                                _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t]))));
    }
    TILE_END(NT)
}

/* clang-format off */
#define TILE_FNS(name)                                                                             \
    static void name##_1(const struct r8_args *a) { name(a, 1); }                                  \
    static void name##_2(const struct r8_args *a) { name(a, 2); }                                  \
    static void name##_3(const struct r8_args *a) { name(a, 3); }                                  \
    static void name##_4(const struct r8_args *a) { name(a, 4); }
/* clang-format on */

TILE_FNS(tile_q4_0)
TILE_FNS(tile_q8_0)
TILE_FNS(tile_q4_k)
TILE_FNS(tile_q6_k)

/* Q4_K / Q6_K for many tokens: a group's chunk is decoded once per call into these (lane =
 * row, as the tiles above compute them), and the token tiles read them, instead of each tile
 * decoding quants and scales again (as costly as the products themselves for 4 tokens). */
struct q4k_dec {
    __m256i w[64]; /* quants 0..15, vector 8 (sub-block) + i: elements 32 sb + 4i .. + 3 */
    __m256i sc[8]; /* sub-block scale as r8_scaled takes it, per row */
    __m256i mn[4]; /* mins of sub-blocks 2m, 2m + 1 as an i16 pair per row */
    __m256 d, dmin;
};

static void decode_q4_k(const uint8_t *p, int64_t nb, void *dst)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++, p += Q4K_BLOCK) {
        struct q4k_dec *o = (struct q4k_dec *)dst + b;
        for (int c = 0; c < 4; c++)
            for (int i = 0; i < 8; i++) {
                const __m256i v = loadu(p + Q4K_QS + 256 * c + 32 * i);
                o->w[8 * (2 * c) + i] = _mm256_and_si256(v, m4);
                o->w[8 * (2 * c + 1) + i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            }
        __m256i sc_lo, sc_hi;
        q4k_scales_mins(p, &sc_lo, &sc_hi, o->mn);
        for (int k = 0; k < 4; k++) {
            o->sc[k] = R8_SC(sc_lo, k);
            o->sc[4 + k] = R8_SC(sc_hi, k);
        }
        o->d = scales8(p);
        o->dmin = scales8(p + Q4K_DMIN);
    }
}

static inline __attribute__((always_inline)) void tile_q4_k_dec(const struct r8_args *a,
                                                                const int NT)
{
    const struct q4k_dec *pk = (const struct q4k_dec *)(const void *)a->gp;
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        const struct lg_block_q8_k *y[TT];
        __m256i isum[TT], msum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            msum[t] = q4k_msum(pk[b].mn, y[t]);
            isum[t] = _mm256_setzero_si256();
        }
        _Pragma("GCC unroll 1") for (int sb = 0; sb < 8; sb++)
        {
            const __m256i *w = pk[b].w + 8 * sb;
            __m256i s[TT];
            _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
            {
                const __m256i wi = _mm256_load_si256(w + i);
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                {
                    const __m256i yv = bcast4(y[t]->qs + 32 * sb + 4 * i);
                    s[t] = r8_dot(i ? s[t] : _mm256_setzero_si256(), wi, yv);
                    PIN(s[t]);
                }
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) isum[t] =
                _mm256_add_epi32(isum[t], r8_scaled(s[t], pk[b].sc[sb]));
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

TILE_FNS(tile_q4_k_dec)

struct q6_dec {
    __m256i w[64];  /* quants 0..63, vector 4 (sub-block) + i: elements 16 sb + 4i .. + 3 */
    __m256i sc[16]; /* sub-block scale as r8_scaled takes it, per row */
    __m256i scp[8]; /* scales 2m, 2m + 1 as an i16 pair per row (the +32 correction) */
    __m256 d;
};

static void decode_q6_k(const uint8_t *p, int64_t nb, void *dst)
{
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < nb; b++, p += Q6K_BLOCK) {
        struct q6_dec *o = (struct q6_dec *)dst + b;
        for (int g = 0; g < 8; g++) {
            const int h = g / 4, j = g % 4;
            const uint8_t *ql = p + 32 * (16 * h + 8 * (j & 1)), *qh = p + Q6K_QH + 256 * h;
            const __m128i shl = _mm_cvtsi32_si128(4 * (j >> 1)), shh = _mm_cvtsi32_si128(2 * j);
            for (int v = 0; v < 8; v++) {
                const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(loadu(ql + 32 * v), shl), m4);
                const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(loadu(qh + 32 * v), shh), m3);
                o->w[8 * g + v] = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
            }
        }
        __m256i sv[4];
        for (int m = 0; m < 4; m++)
            sv[m] = loadu(p + Q6K_SCALES + 32 * m);
        for (int k = 0; k < 16; k++)
            o->sc[k] = R8_SCS(sv[k / 4], k % 4);
        for (int k = 0; k < 8; k++)
            o->scp[k] = lane_bytes16s(sv[k / 2], 2 * (k % 2), 2 * (k % 2) + 1);
        o->d = scales8(p + Q6K_D);
    }
}

static inline __attribute__((always_inline)) void tile_q6_k_dec(const struct r8_args *a,
                                                                const int NT)
{
    const struct q6_dec *pk = (const struct q6_dec *)(const void *)a->gp;
    TILE_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        const struct lg_block_q8_k *y[TT];
        __m256i isum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            __m256i m = _mm256_setzero_si256();
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) m =
                _mm256_add_epi32(m, _mm256_madd_epi16(pk[b].scp[k], bcast4(y[t]->bsums + 2 * k)));
            isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(m, 5));
        }
        _Pragma("GCC unroll 1") for (int sb = 0; sb < 16; sb++)
        {
            const __m256i *w = pk[b].w + 4 * sb;
            const __m256i w0 = _mm256_load_si256(w), w1 = _mm256_load_si256(w + 1);
            const __m256i w2 = _mm256_load_si256(w + 2), w3 = _mm256_load_si256(w + 3);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                isum[t] = _mm256_add_epi32(
                    isum[t], q6_sub(w0, w1, w2, w3, y[t]->qs + 16 * sb, pk[b].sc[sb]));
                PIN(isum[t]);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] = _mm256_add_ps(
            acc[t], _mm256_mul_ps(_mm256_set1_ps(y[t]->d),
                                  _mm256_mul_ps(pk[b].d, _mm256_cvtepi32_ps(isum[t]))));
    }
    TILE_END(NT)
}

TILE_FNS(tile_q6_k_dec)

typedef void (*tile_fn)(const struct r8_args *a);

typedef void (*decode_fn)(const uint8_t *p, int64_t nb, void *dst);

/* decodes nb blocks of groups g (at p) and g + 1 (at p + gs) together */
typedef void (*pair_decode_fn)(const uint8_t *p, size_t gs, int64_t nb, void *dst);

/* Decoded blocks per chunk (struct q6_dec 2848 bytes, struct q4k_dec 2528). */
enum { DEC_BLOCKS = 8 };
_Static_assert(sizeof(struct q4k_dec) <= sizeof(struct q6_dec), "decode buffer");

struct r8_kind {
    size_t bbytes;     /* bytes of one block of a group */
    int blk;           /* elements per block */
    size_t abytes;     /* bytes per activation block */
    int prep;          /* Q8_0 activations: prepass of scales (and offset sums) */
    int offset;        /* weight offset to correct with offset * sum(y) (0: none) */
    int offset_one;    /* the same for one token (the `one` tile, else tile[0]) */
    tile_fn tile[TT];  /* by token count - 1 */
    tile_fn one;       /* one token: the includer's own tile (R8_ONE_*), NULL: tile[0] */
    tile_fn pair[PTT]; /* several tokens, two whole groups (R8_PAIR_*), {NULL}: tile */
    int pair_tt;       /* tokens per pair tile */
    decode_fn decode;  /* more than TT tokens: decode a chunk once (NULL: the tiles read R8) */
    tile_fn tile_dec[TT];
    pair_decode_fn pair_decode; /* the same for two whole groups (R8_PAIR_DECODE_*), or NULL */
    tile_fn pair_dec[TT];
};

/* clang-format off */
static const struct r8_kind K_Q4_0 = {
    .bbytes = Q4_BLOCK, .blk = LG_QK, .abytes = ABYTES, .prep = 1, .offset = 8, .offset_one = 8,
    .tile = {tile_q4_0_1, tile_q4_0_2, tile_q4_0_3, tile_q4_0_4}, .one = R8_ONE_Q4_0,
    .pair = R8_PAIR_Q4_0, .pair_tt = R8_PAIR_TT};
static const struct r8_kind K_Q8_0 = {
    .bbytes = Q8_BLOCK, .blk = LG_QK, .abytes = ABYTES, .prep = 1, .offset = R8_Q8_0_OFFSET_N,
    .offset_one = R8_Q8_0_OFFSET,
    .tile = {tile_q8_0_1, tile_q8_0_2, tile_q8_0_3, tile_q8_0_4}, .one = R8_ONE_Q8_0,
    .pair = R8_PAIR_Q8_0, .pair_tt = R8_PAIR_TT};
static const struct r8_kind K_Q4_K = {
    .bbytes = Q4K_BLOCK, .blk = LG_QK_K, .abytes = sizeof(struct lg_block_q8_k),
    .tile = {tile_q4_k_1, tile_q4_k_2, tile_q4_k_3, tile_q4_k_4}, .one = R8_ONE_Q4_K,
    .decode = decode_q4_k,
    .tile_dec = {tile_q4_k_dec_1, tile_q4_k_dec_2, tile_q4_k_dec_3, tile_q4_k_dec_4},
    .pair_decode = R8_PAIR_DECODE_Q4_K, .pair_dec = R8_PAIR_DEC_Q4_K};
static const struct r8_kind K_Q6_K = {
    .bbytes = Q6K_BLOCK, .blk = LG_QK_K, .abytes = sizeof(struct lg_block_q8_k),
    .tile = {tile_q6_k_1, tile_q6_k_2, tile_q6_k_3, tile_q6_k_4}, .one = R8_ONE_Q6_K,
    .decode = decode_q6_k,
    .tile_dec = {tile_q6_k_dec_1, tile_q6_k_dec_2, tile_q6_k_dec_3, tile_q6_k_dec_4},
    .pair_decode = R8_PAIR_DECODE_Q6_K, .pair_dec = R8_PAIR_DEC_Q6_K};
/* clang-format on */

/* off * (sum of the 32 activations of block yb) */
static inline int32_t offset_sum(const uint8_t *qs, int off)
{
    __m256i s = _mm256_maddubs_epi16(_mm256_set1_epi8((char)off), loadu(qs));
    s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4e));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1));
    return _mm_cvtsi128_si32(q);
}

/* The staged prepass of one token (struct r8_stage): its nb blocks at yb to r[0], r[n], r[2n], ..
 * (n: the tokens of its pair tile), each with -off * sum(qs); the sums 8 blocks at a time
 * (horizontal adds of 8 blocks' partial sums at once). */
static void stage_token(struct r8_stage *r, int64_t n, const uint8_t *yb, int64_t nb, int off)
{
    const __m256i o = _mm256_set1_epi8((char)off), one = _mm256_set1_epi16(1);
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        __m256i v[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *q = yb + (size_t)(b + i) * ABYTES + offsetof(struct lg_block_q8_0, qs);
            v[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(o, loadu(q)), one);
        }
        /* [blocks 0..3 | 4..7] sums of each 128-bit half, then the halves added */
        const __m256i h0 =
            _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        const __m256i h1 =
            _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
        const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20),
                                             _mm256_permute2x128_si256(h0, h1, 0x31));
        int32_t sy[8];
        _mm256_storeu_si256((__m256i *)(void *)sy, _mm256_sub_epi32(_mm256_setzero_si256(), sum));
        for (int i = 0; i < 8; i++) {
            const uint8_t *blk = yb + (size_t)(b + i) * ABYTES;
            struct r8_stage *e = r + (b + i) * n;
            uint16_t d;
            memcpy(&d, blk + offsetof(struct lg_block_q8_0, d), 2);
            memcpy(e->qs, blk + offsetof(struct lg_block_q8_0, qs), 32);
            e->d = _cvtsh_ss(d);
            e->sy = sy[i];
        }
    }
    for (; b < nb; b++) {
        const uint8_t *blk = yb + (size_t)b * ABYTES;
        struct r8_stage *e = r + b * n;
        uint16_t d;
        memcpy(&d, blk + offsetof(struct lg_block_q8_0, d), 2);
        memcpy(e->qs, blk + offsetof(struct lg_block_q8_0, qs), 32);
        e->d = _cvtsh_ss(d);
        e->sy = -offset_sum(blk + offsetof(struct lg_block_q8_0, qs), off);
    }
}

static void r8_gemm(const struct r8_kind *kd, const struct lg_wmat *w, const void *qx, size_t ldq,
                    float *y, int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)
{
    if (r0 >= r1 || n_tok <= 0)
        return;
    float dyb[PRE];
    int32_t syb[PRE];
    struct r8_stage stg[R8_STAGE];         /* the pair tiles' prepass (token-tile-major) */
    _Alignas(32) float part[2][MAXTOK][8]; /* the first / last group when the range cuts it */
    _Alignas(64) uint8_t dec[DEC_BLOCKS * sizeof(struct q6_dec)]; /* a decoded chunk */
    const int64_t nb_all = w->cols / kd->blk;
    const size_t gbytes = kd->bbytes * (size_t)nb_all;
    const int64_t g0 = r0 / 8, g1 = (r1 + 7) / 8;
    const uint8_t *wb = w->data, *ab = qx;
    for (int64_t tc = 0; tc < n_tok; tc += MAXTOK) {
        const int64_t nt = n_tok - tc < MAXTOK ? n_tok - tc : MAXTOK;
        int64_t kb = PRE / nt;
        const int decode = kd->decode && nt > TT;
        const int off = nt == 1 ? kd->offset_one : kd->offset;
        if (nt > TT && kb > (int64_t)(L1_BYTES / kd->bbytes))
            kb = (int64_t)(L1_BYTES / kd->bbytes);
        if (decode && kb > (kd->pair_decode ? DEC_BLOCKS / 2 : DEC_BLOCKS))
            kb = kd->pair_decode ? DEC_BLOCKS / 2 : DEC_BLOCKS;
        if (kb < 1)
            kb = 1;
        const int stage = R8_STAGE > 1 && kd->prep && kd->pair[0] && nt > 1;
        /* the one-group tiles' prepass, unless every group of the range goes in a pair */
        const int plain = !stage || r0 % 8 || r1 % 8 || (r1 - r0) / 8 % 2;
        for (int64_t b0 = 0; b0 < nb_all; b0 += kb) {
            const int64_t nb = nb_all - b0 < kb ? nb_all - b0 : kb;
            for (int64_t t = 0; kd->prep && t < nt; t++) {
                const uint8_t *yb = ab + (size_t)(tc + t) * ldq + (size_t)b0 * ABYTES;
                for (int64_t b = 0; plain && b < nb; b++) {
                    uint16_t d;
                    memcpy(&d, yb + (size_t)b * ABYTES + offsetof(struct lg_block_q8_0, d), 2);
                    dyb[t * kb + b] = _cvtsh_ss(d);
                    if (off)
                        syb[t * kb + b] = offset_sum(
                            yb + (size_t)b * ABYTES + offsetof(struct lg_block_q8_0, qs), off);
                }
                if (stage) {
                    /* the token's pair tile: tokens [t0, t0 + n), entries from t0 * kb on */
                    const int64_t t0 = t - t % kd->pair_tt;
                    const int64_t n = nt - t0 < kd->pair_tt ? nt - t0 : kd->pair_tt;
                    stage_token(stg + t0 * kb + (t - t0), n, yb, nb, off);
                }
            }
            for (int64_t g = g0; g < g1; g++) {
                const int full = 8 * g >= r0 && 8 * g + 8 <= r1;
                /* groups g and g + 1 whole: the pair tiles (several tokens) */
                const int pair = nt > 1 &&
                                 (decode ? kd->pair_decode != NULL : kd->pair[0] != NULL) && full &&
                                 8 * g + 16 <= r1;
                struct r8_args a;
                a.gp = wb + (size_t)g * gbytes + (size_t)b0 * kd->bbytes;
                a.gstride = gbytes;
                a.nb = nb;
                a.first = b0 == 0;
                if (decode) {
                    if (pair)
                        kd->pair_decode(a.gp, gbytes, nb, dec);
                    else
                        kd->decode(a.gp, nb, dec);
                    a.gp = (const uint8_t *)dec;
                }
                /* tokens per tile: the pair tiles of the decoded chunks take TT */
                const int tt = pair && !decode ? kd->pair_tt : TT;
                for (int64_t t = 0; t < nt; t += tt) {
                    const int n4 = nt - t < tt ? (int)(nt - t) : tt;
                    for (int i = 0; i < n4; i++) {
                        const int64_t tok = t + i;
                        a.ya[i] = ab + (size_t)(tc + tok) * ldq + (size_t)b0 * kd->abytes;
                        a.dy[i] = dyb + tok * kb;
                        a.sy[i] = syb + tok * kb;
                        a.yo[i] = full ? y + (tc + tok) * ldy + 8 * g : part[g != g0][tok];
                    }
                    a.st = stage ? stg + t * kb : NULL;
                    if (nt == 1 && kd->one)
                        kd->one(&a);
                    else
                        (decode ? (pair ? kd->pair_dec : kd->tile_dec)
                                : (pair ? kd->pair : kd->tile))[n4 - 1](&a);
                }
                g += pair;
            }
        }
        /* the rows in range of a cut group */
        for (int64_t g = g0; g < g1; g++) {
            if (8 * g >= r0 && 8 * g + 8 <= r1)
                continue;
            const int64_t lo = r0 > 8 * g ? r0 : 8 * g, hi = r1 < 8 * g + 8 ? r1 : 8 * g + 8;
            for (int64_t t = 0; t < nt; t++)
                for (int64_t r = lo; r < hi; r++)
                    y[(tc + t) * ldy + r] = part[g != g0][t][r - 8 * g];
        }
    }
}

/* clang-format off */
#define GEMM_R8(name, kind)                                                                        \
    static void name(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,   \
                     int64_t n_tok, int64_t r0, int64_t r1)                                        \
    {                                                                                              \
        r8_gemm(&kind, w, qx, ldq, y, ldy, n_tok, r0, r1);                                         \
    }
/* clang-format on */
GEMM_R8(gemm_r8_q4_0, K_Q4_0)
GEMM_R8(gemm_r8_q8_0, K_Q8_0)
GEMM_R8(gemm_r8_q4_k, K_Q4_K)
GEMM_R8(gemm_r8_q6_k, K_Q6_K)
#undef GEMM_R8

lg_gemm_q_fn R8_GEMM_NAME(uint32_t type)
{
    switch (type) {
    case LG_QTYPE_Q4_0:
        return gemm_r8_q4_0;
    case LG_QTYPE_Q8_0:
        return gemm_r8_q8_0;
    case LG_QTYPE_Q4_K:
        return gemm_r8_q4_k;
    case LG_QTYPE_Q6_K:
        return gemm_r8_q6_k;
    default:
        return NULL;
    }
}
