/* repack.c: the interleaved 8-row weight layout "R8" (enum lg_wlayout, kern.h), portable parts.
 *
 * Why: the AVX2 kernels multiply 8 weight rows at once with one broadcast of 4 activation
 * bytes (_mm256_maddubs_epi16), which wants "lane = row" vectors: 32-bit lane j of a vector
 * holds 4 consecutive bytes of row j. Building those vectors from GGUF rows takes an 8 x 8
 * transpose per 32 quants on every call (as much work as the products themselves in decode);
 * R8 stores the weights that way once, at load, so the kernels stream them with plain loads.
 *
 * Layout. A matrix of R rows (R % 8 == 0) is R / 8 groups; group g (rows 8g .. 8g + 7) takes
 * the same bytes its 8 GGUF rows took and holds its blocks in order, block b of the group
 * being 8 GGUF blocks' bytes. Inside, each field of the block struct (quant_blocks.h) is laid
 * out for the 8 rows together, in the struct's order:
 *  - a 2-byte f16 field (d, dmin): the 8 rows' values side by side (16 bytes);
 *  - a byte-array field of n bytes (qs, ql, qh, scales): n / 4 vectors of 32 bytes, vector k
 *    holding bytes 4k .. 4k + 3 of the field of row 8g + j at bytes 4j .. 4j + 3.
 *
 *   Q4_0 block (144 = 8 x 18):  | d x 8 (16) | qs: 4 vectors (128) |
 *   Q8_0 block (272 = 8 x 34):  | d x 8 (16) | qs: 8 vectors (256) |
 *   Q4_K block (1152 = 8 x 144): | d x 8 | dmin x 8 | scales: 3 vectors | qs: 32 vectors |
 *   Q6_K block (1680 = 8 x 210): | ql: 32 vectors | qh: 16 vectors | scales: 4 vectors | d x 8 |
 *
 *   vector k:  byte 0      4      8          28     32
 *              | row 8g   | 8g+1 | ...      | 8g+7 |    (bytes 4k .. 4k+3 of each row's field)
 *
 * The bytes are moved, not decoded: a Q4_0 vector k carries in its low nibbles elements
 * 4k .. 4k + 3 and in its high nibbles elements 16 + 4k .. of each row. A matrix keeps its
 * size (rows * row_bytes), so an expert tensor repacked expert by expert keeps every expert's
 * offset.
 * Invariant: unpacking row r (lg_unpack_r8_row) gives back the GGUF bytes of row r exactly, and
 * every kernel on R8 computes the scalar reference's arithmetic (lg_vec_dot_ref) bit for bit.
 * Thread-safety: pure functions; any thread.
 */
#include <stddef.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

enum { MAX_FIELDS = 4 };

struct r8_field {
    unsigned short off, bytes, unit; /* unit 2: an f16 per row; 4: vectors of 4-byte units */
};

struct r8_type {
    unsigned short block_bytes, n_fields;
    int block_elems;
    struct r8_field f[MAX_FIELDS];
};

#define F16(st, m)                                                                                 \
    {                                                                                              \
        offsetof(st, m), 2, 2                                                                      \
    }
#define ARR(st, m)                                                                                 \
    {                                                                                              \
        offsetof(st, m), sizeof(((st *)0)->m), 4                                                   \
    }

static const struct r8_type T_Q4_0 = {
    sizeof(struct lg_block_q4_0),
    2,
    LG_QK,
    {F16(struct lg_block_q4_0, d), ARR(struct lg_block_q4_0, qs)}};
static const struct r8_type T_Q8_0 = {
    sizeof(struct lg_block_q8_0),
    2,
    LG_QK,
    {F16(struct lg_block_q8_0, d), ARR(struct lg_block_q8_0, qs)}};
static const struct r8_type T_Q4_K = {
    sizeof(struct lg_block_q4_k),
    4,
    LG_QK_K,
    {F16(struct lg_block_q4_k, d), F16(struct lg_block_q4_k, dmin),
     ARR(struct lg_block_q4_k, scales), ARR(struct lg_block_q4_k, qs)}};
static const struct r8_type T_Q6_K = {sizeof(struct lg_block_q6_k),
                                      4,
                                      LG_QK_K,
                                      {ARR(struct lg_block_q6_k, ql), ARR(struct lg_block_q6_k, qh),
                                       ARR(struct lg_block_q6_k, scales),
                                       F16(struct lg_block_q6_k, d)}};

static const struct r8_type *r8_type(uint32_t type)
{
    switch (type) {
    case LG_QTYPE_Q4_0:
        return &T_Q4_0;
    case LG_QTYPE_Q8_0:
        return &T_Q8_0;
    case LG_QTYPE_Q4_K:
        return &T_Q4_K;
    case LG_QTYPE_Q6_K:
        return &T_Q6_K;
    default:
        return NULL;
    }
}

bool lg_repack_r8_ok(uint32_t type, int64_t rows, int64_t cols)
{
    const struct r8_type *t = r8_type(type);
    return t && rows > 0 && rows % 8 == 0 && cols > 0 && cols % t->block_elems == 0;
}

size_t lg_repack_r8_group_bytes(uint32_t type, int64_t cols)
{
    const struct r8_type *t = r8_type(type);
    return t ? 8 * (size_t)t->block_bytes * (size_t)(cols / t->block_elems) : 0;
}

/* Moves one block of the 8 rows x[j] into its R8 form at o (or back when `back`). */
/* Copies n bytes (2 or 4: constant sizes, so the copies compile to single moves). */
static inline void move_unit(uint8_t *dst, const uint8_t *src, int n)
{
    if (n == 4)
        memcpy(dst, src, 4);
    else
        memcpy(dst, src, 2);
}

/* Moves one block of the 8 rows x[j] into its R8 form at o (or back when `back`). */
static void move_block(const struct r8_type *t, uint8_t *const x[8], uint8_t *o, bool back)
{
    for (int i = 0; i < t->n_fields; i++) {
        const struct r8_field *f = &t->f[i];
        for (int k = 0; k < f->bytes / f->unit; k++)
            for (int j = 0; j < 8; j++) {
                uint8_t *a = x[j] + f->off + f->unit * k, *b = o + 8 * f->unit * k + f->unit * j;
                if (back)
                    move_unit(a, b, f->unit);
                else
                    move_unit(b, a, f->unit);
            }
        o += 8 * f->bytes;
    }
}

void lg_repack_r8(uint32_t type, const void *src, size_t src_row_bytes, void *dst, int64_t cols,
                  int64_t g0, int64_t g1)
{
    const struct r8_type *t = r8_type(type);
    const size_t bs = t->block_bytes, nb = (size_t)(cols / t->block_elems);
    for (int64_t g = g0; g < g1; g++) {
        /* only read through x (move_block writes the R8 side) */
        uint8_t *rows = (uint8_t *)(uintptr_t)src + (size_t)g * 8 * src_row_bytes;
        uint8_t *o = (uint8_t *)dst + (size_t)g * 8 * bs * nb;
        for (size_t b = 0; b < nb; b++, o += 8 * bs) {
            uint8_t *x[8];
            for (int j = 0; j < 8; j++)
                x[j] = rows + (size_t)j * src_row_bytes + b * bs;
            move_block(t, x, o, false);
        }
    }
}

/* The GGUF bytes of block b of row r of an R8 matrix (all 8 rows of the group decoded into
 * grp, row r's at grp + (r % 8) * block_bytes). */
static const uint8_t *unpack_block(const struct lg_wmat *w, const struct r8_type *t, int64_t r,
                                   size_t b, uint8_t *grp)
{
    const size_t bs = t->block_bytes, nb = (size_t)(w->cols / t->block_elems);
    const uint8_t *o = (const uint8_t *)w->data + (size_t)(r / 8) * 8 * bs * nb + b * 8 * bs;
    uint8_t *x[8];
    for (int j = 0; j < 8; j++)
        x[j] = grp + (size_t)j * bs;
    move_block(t, x, (uint8_t *)(uintptr_t)o, true);
    return grp + (size_t)(r % 8) * bs;
}

enum { MAX_BLOCK = sizeof(struct lg_block_q6_k) };
_Static_assert(sizeof(struct lg_block_q4_k) <= MAX_BLOCK &&
                   sizeof(struct lg_block_q8_0) <= MAX_BLOCK,
               "block buffer");

void lg_unpack_r8_row(const struct lg_wmat *w, int64_t r, void *dst)
{
    const struct r8_type *t = r8_type(w->type);
    const size_t bs = t->block_bytes, nb = (size_t)(w->cols / t->block_elems);
    uint8_t grp[8 * MAX_BLOCK];
    for (size_t b = 0; b < nb; b++)
        memcpy((uint8_t *)dst + b * bs, unpack_block(w, t, r, b, grp), bs);
}

/* The scalar path (any kernel table without an R8 kernel, e.g. LG_ISA=ref on a model repacked
 * at load): the reference's block terms, added in the reference's order. */
void lg_matmul_r8_ref(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,
                      int64_t n_tok, int64_t r0, int64_t r1)
{
    const struct r8_type *t = r8_type(w->type);
    const size_t nb = (size_t)(w->cols / t->block_elems);
    const size_t ab =
        t->block_elems == LG_QK ? sizeof(struct lg_block_q8_0) : sizeof(struct lg_block_q8_k);
    uint8_t grp[8 * MAX_BLOCK];
    for (int64_t r = r0; r < r1; r++)
        for (int64_t tk = 0; tk < n_tok; tk++) {
            const uint8_t *a = (const uint8_t *)qx + (size_t)tk * ldq;
            float s = 0.0f;
            for (size_t b = 0; b < nb; b++)
                s += lg_qdot_ref_block(w->type, unpack_block(w, t, r, b, grp), a + b * ab);
            y[tk * ldy + r] = s;
        }
}
