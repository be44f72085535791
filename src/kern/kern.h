/* kern.h: the compute kernels, as one table of function pointers.
 *
 * kern/ref.c defines "correct" (plain scalar C); ISA files (kern/x_avx2.c, kern/x_avx512.c) may
 * fill some slots with faster versions later, and an empty slot falls back to the reference.
 * lg_kern_select() fills the table once, from cpuid, with LG_ISA=ref|avx2|avx512 overriding.
 *
 * Conventions:
 * - Weight matrices are described by struct lg_wmat: `rows` output rows of `cols` inputs each,
 *   stored row-major in GGML type `type`, one row every `row_bytes` bytes (PyTorch [out, in];
 *   GGUF ne = [cols, rows]). The data usually points into the model's mapping.
 * - Ops that split work take (ith, nth): thread ith of nth does its share and nothing else;
 *   calling with (0, 1) does everything. Kernels never create threads or allocate: callers
 *   pass any scratch they need.
 * - Activations are f32, row-major, with shapes in the comments. Matrix products on quantized
 *   weights go through vec_dot / vec_dot4 (kern/qdot.h) on activations converted once per row
 *   to ggml's activation format for the weight type, driven by lg_matmul_q over row ranges;
 *   `matmul` (dequantize a row, f32 dot) remains for types without a quantized dot.
 * - ISA files: kern/qdot_avx2.c fills the AVX2 dot products (lg_qdot_fill_avx2);
 *   kern/ops_avx512.c and kern/attn_avx512.c the AVX-512 element-wise ops, activation
 *   quantizers and prefill attention (lg_kern_fill_avx512); the avx512 table runs the AVX2
 *   functions in the other slots (and the VNNI R8 products, kern/matmul_q.c). NEON later.
 * Thread-safety: the table is immutable after lg_kern_select(); every op is reentrant.
 */
#ifndef LG_KERN_H
#define LG_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "kern/qdot.h"
#include "quant/quant.h"

/* How a weight matrix's bytes are arranged (struct lg_wmat.layout). */
enum lg_wlayout {
    LG_WLAYOUT_ROWS = 0, /* GGUF rows, one every row_bytes bytes (the zero default) */
    LG_WLAYOUT_R8 = 1    /* Q4_0, Q8_0, Q4_K, Q6_K with rows % 8 == 0: 8 rows interleaved
                          * (kern/repack.c); row_bytes is the GGUF row size, the matrix
                          * rows * row_bytes bytes. Only lg_matmul_q reads it (not `matmul`,
                          * not lg_dequant_row). */
};

/* A 2-D weight matrix view (see above). */
struct lg_wmat {
    uint32_t type;       /* enum lg_qtype */
    const void *data;    /* rows * row_bytes bytes; borrowed (usually the model mapping) */
    int64_t rows;        /* output features */
    int64_t cols;        /* input features (a multiple of the type's block size) */
    size_t row_bytes;    /* bytes between consecutive rows (ROWS); bytes per row (R8) */
    uint32_t layout;     /* enum lg_wlayout */
};

/* Arguments of one attention call: causal (optionally sliding-window) attention of n_tok
 * queries at positions pos0..pos0+n_tok-1 over a key/value store in which position j lives in
 * slot j % n_slots. The caller guarantees that every visible key is present (the KV module
 * sizes rings so that it is).
 * K and V are read in their storage type (issue #9): a slot row is n_head_kv heads, head h at
 * byte h * lg_qtype_row_bytes(type, head_dim) of the row; rows are k_stride / v_stride bytes
 * apart. Types: F32 (0, the zero-initialised default), F16, Q8_0, Q4_0 (block types need
 * head_dim % 32 == 0). The kernels dequantize a block at a time on the fly (exact: the products
 * d * q fit in f32) and accumulate in the same order as the F32 path, so the result equals
 * bit for bit the F32 kernel run on the dequantized cache, and every ISA variant equals the
 * reference bit for bit (tests/unit/test_kv_types.c). */
struct lg_attn_args {
    const float *q;      /* [n_tok][n_head][head_dim] (already normed, roped) */
    float *out;          /* [n_tok][n_head][head_dim] */
    const void *k;       /* [n_slots] rows of k_stride bytes: [n_head_kv][head_dim] in type_k */
    const void *v;       /* [n_slots] rows of v_stride bytes: [n_head_kv][head_dim] in type_v */
    uint32_t type_k;     /* enum lg_qtype: F32, F16, Q8_0 or Q4_0 */
    uint32_t type_v;
    size_t k_stride;     /* bytes between slots; 0: n_head_kv heads back to back */
    size_t v_stride;
    int64_t n_tok;
    int64_t n_head;
    int64_t n_head_kv;   /* divides n_head; query head h reads KV head h / (n_head / n_head_kv) */
    int64_t head_dim;
    int64_t n_slots;
    int64_t pos0;
    int64_t window;      /* 0: full causal; else key j visible to query i iff i - j < window */
    float scale;         /* multiplies q.k */
    float softcap;       /* 0: none; else s = softcap * tanh(s / softcap) */
    float *scratch;      /* per thread: scratch + ith * scratch_stride, >= n visible keys */
    int64_t scratch_stride;
};

/* Bytes of one head of head_dim elements in a KV storage type (F32/F16/Q8_0/Q4_0). */
size_t lg_attn_head_bytes(uint32_t type, int64_t head_dim);

struct lg_kern {
    const char *isa; /* "ref", "avx2", ... */

    /* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok and for this thread's share of rows.
     * x: [n_tok] rows of stride ldx (>= cols); y: [n_tok] rows of stride ldy (>= rows).
     * scratch: >= cols floats for this thread (a dequantized row). */
    void (*matmul)(const struct lg_wmat *w, const float *x, int64_t ldx, float *y, int64_t ldy,
                   int64_t n_tok, float *scratch, int ith, int nth);

    /* y = x * (mean(x^2) + eps)^-1/2 * w over n elements; w NULL = no weight. y may equal x. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);

    /* NeoX RoPE on one token: x [n_head][head_dim]; pairs (i, i + n_rot/2) for i < n_rot/2
     * rotate by cs[i] = (cos, sin) (see lg_rope_angles); dims >= n_rot pass through. */
    void (*rope_neox)(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot,
                      const float *cs);

    /* In place softmax over n elements (max-subtracted). */
    void (*softmax)(float *x, int64_t n);

    /* In place x = gelu_tanh(x) (PyTorch "gelu_pytorch_tanh"). */
    void (*gelu_tanh)(float *x, int64_t n);

    /* y[i] = a[i] * b[i] */
    void (*mul)(float *y, const float *a, const float *b, int64_t n);

    /* y[i] += s * x[i] */
    void (*axpy)(float *y, const float *x, float s, int64_t n);

    /* In place x[i] = cap * tanh(x[i] / cap) (final logit soft-capping). */
    void (*softcap)(float *x, int64_t n, float cap);

    /* lg_act_quantize (kern/qdot.h), bit for bit in every ISA. */
    void (*act_quantize)(uint32_t w, const float *x, void *dst, int64_t n);

    /* dst = act_quantize(w, gelu_tanh(g) * m) over n elements (a multiple of the activation
     * format's block), g and m left unchanged: the GLU and the conversion for the product
     * after it in one pass over memory, 256 elements at a time through a buffer on the stack.
     * Bit for bit this table's gelu_tanh, mul and act_quantize in turn. */
    void (*glu_quantize)(uint32_t w, const float *g, const float *m, void *dst, int64_t n);

    /* Attention for this thread's share of (token, head) pairs. */
    void (*attention)(const struct lg_attn_args *a, int ith, int nth);

    /* Quantized dot products by weight type (kern/qdot.h): the activation row is in the
     * format lg_act_type(type). NULL where the type has none (lg_act_type -1): such weights
     * go through `matmul` (dequantize + f32). vec_dot4 may be NULL (4 vec_dot calls). */
    lg_vec_dot_fn vec_dot[LG_QTYPE_COUNT];
    lg_vec_dot4_fn vec_dot4[LG_QTYPE_COUNT];
};

/* Fills cs[2*i], cs[2*i+1] = cos, sin of theta_i = pos * freq_scale * base^(-2i/n_rot) / ff[i]
 * for i < n_rot/2 (ff NULL = all ones). Angles are computed as PyTorch does in fp32
 * (inv_freq in fp32, product in fp32), then cos/sin. */
void lg_rope_angles(float *cs, int64_t n_rot, int64_t pos, float base, float freq_scale,
                    const float *ff);
/* The same in two steps, so that a prefill computes the pow()s once per layer:
 * lg_rope_inv_freq fills inv[i] = base^(-2i/n_rot) (fp32) for i < n_rot/2, and
 * lg_rope_angles_inv(cs, n_rot, pos, inv, ...) then equals lg_rope_angles bit for bit. */
void lg_rope_inv_freq(float *inv, int64_t n_rot, float base);
void lg_rope_angles_inv(float *cs, int64_t n_rot, int64_t pos, const float *inv,
                        float freq_scale, const float *ff);

/* The table for this CPU (or LG_ISA). Never NULL; any thread; the first call initializes. */
const struct lg_kern *lg_kern_get(void);
/* Table k's name for users (bench, logs): k->isa, or "avx512+amx" when its R8 products of
 * several tokens run on AMX (kern/amx.h). The string is static; any thread. */
const char *lg_kern_isa_label(const struct lg_kern *k);

/* Explicit selection: "ref", "avx2", "avx512", or NULL for auto (cpuid + LG_ISA). Returns NULL
 * for an unknown or unsupported name. The returned table is static and immutable. */
const struct lg_kern *lg_kern_select(const char *isa);

/* The scalar reference table (always available). */
const struct lg_kern *lg_kern_ref(void);

/* Reference building blocks, exported for tests and for ISA files to fall back on. */
float lg_kern_dot_f32(const float *a, const float *b, int64_t n);
/* glu_quantize from k's gelu_tanh, mul and act_quantize (the tables' glu_quantize slots). */
void lg_kern_glu_quantize_with(const struct lg_kern *k, uint32_t w, const float *g,
                               const float *m, void *dst, int64_t n);
/* The attention softmax (every ISA's attention computes exactly this one, vectorised): as
 * `softmax`, except that a key more than LG_ATTN_EXP_MIN below the maximum score gets weight 0
 * instead of a tiny or subnormal one (< 2e-22 of the top weight: invisible in f32 sums, but
 * products with subnormals take microcode assists that made peaked attention several times
 * slower); e^z is a fixed polynomial (about 2 ulp, kern/ref.c) rather than libm's expf, and the
 * sum of the weights is taken in double over 8 lanes (element i in lane i % 8, lanes reduced as
 * ((0+4)+(1+5))+((2+6)+(3+7))), so that vector code reproduces it bit for bit. */
enum { LG_ATTN_EXP_MIN = -50 };
void lg_kern_attn_softmax(float *x, int64_t n);

/* The AVX2 attention (kern/attn_avx2.c; x86 builds only): sets k->attention. */
void lg_attn_fill_avx2(struct lg_kern *k);
/* The AVX2 element-wise ops and activation quantizers (kern/ops_avx2.c; x86 builds only). */
void lg_kern_fill_avx2(struct lg_kern *k);
/* The AVX-512 element-wise ops and activation quantizers (kern/ops_avx512.c), and through
 * lg_attn_fill_avx512 (kern/attn_avx512.c) the AVX-512 attention; x86 builds only, to be run
 * on a CPU with AVX-512 F/BW/VL/DQ. */
void lg_kern_fill_avx512(struct lg_kern *k);
void lg_attn_fill_avx512(struct lg_kern *k);

#endif
