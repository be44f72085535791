/* qdot.h: quantized dot products as ggml computes them (activations quantized once per row).
 *
 * A weight row of type W is multiplied with an activation row converted once to the
 * "activation type" lg_act_type(W): Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4, Q8_1 for Q4_1/Q5_1,
 * Q8_K for the K-quants and IQ4_XS, F16 for F16, BF16 for BF16 and F32 for F32 (ggml's
 * vec_dot_type table). The dot is then an integer sum per block scaled by the two block
 * scales, so results match llama.cpp's to float rounding (they do not match a dot of the
 * dequantized weights with f32 activations: the activations carry 8-bit quantization error).
 *
 * lg_vec_dot_fn(w, a, n): dot of n elements (n a multiple of the weight block size and of the
 * activation block size) of weight row w (type W) and activation row a (type lg_act_type(W)).
 * Pure; any thread. Rows must be aligned like their block structs (quant_blocks.h: 2 bytes for
 * f16-scaled blocks, 4 for Q8_K and F32), which GGUF tensor data and our scratch always are.
 */
#ifndef LG_KERN_QDOT_H
#define LG_KERN_QDOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

typedef float (*lg_vec_dot_fn)(const void *w, const void *a, int64_t n);

/* Four dots of one weight row with four activation rows a, a + lda, a + 2 lda, a + 3 lda
 * (lda in bytes): out[i * ldo]. Lets prefill decode each weight block once for 4 tokens. */
typedef void (*lg_vec_dot4_fn)(const void *w, const void *a, size_t lda, int64_t n, float *out,
                               int64_t ldo);

/* Activation type for weight type w, or -1 when w has no quantized dot (use dequant + f32). */
int lg_act_type(uint32_t w);

/* Bytes of an activation row of n elements for weight type w (0 when unsupported or n is not a
 * multiple of the activation block size). */
size_t lg_act_row_bytes(uint32_t w, int64_t n);

/* Converts n floats to the activation format of weight type w (n as above). Reference
 * quantizers of quant/ (bit-exact with ggml's), plain conversion for F16/BF16, copy for F32. */
void lg_act_quantize(uint32_t w, const float *x, void *dst, int64_t n);

/* The scalar reference dots, indexed by weight type (NULL where lg_act_type is -1). */
extern const lg_vec_dot_fn lg_vec_dot_ref[LG_QTYPE_COUNT];

struct lg_wmat;

/* y[t][r] = dot(W row r, activation row t) for t < n_tok and rows r0 <= r < r1, with the
 * activations already converted (lg_act_quantize) in rows of ldq bytes. When this (ISA, type,
 * layout, n_tok) has a tiled kernel (lg_gemm_q_for), that kernel does the work; an R8 matrix
 * without one (scalar tables) goes through lg_matmul_r8_ref; otherwise rows are taken in
 * blocks that stay in cache while every token passes over them, 4 tokens at a time through
 * dot4 when it is not NULL. Any r0 <= r1 (R8: groups of 8 cut by the range are computed whole
 * and only the rows in range stored). Every output equals lg_vec_dot_ref's bit for bit where
 * the ISA's kernels do (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K). No allocation; several threads may run
 * disjoint row ranges. */
void lg_matmul_q(lg_vec_dot_fn dot, lg_vec_dot4_fn dot4, const struct lg_wmat *w, const void *qx,
                 size_t ldq, float *y, int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1);

/* A register-tiled quantized GEMM: the same contract as lg_matmul_q (rows [r0, r1), n_tok
 * tokens, activations in lg_act_type(w->type) rows of ldq bytes), for one weight type and
 * layout. No allocation (stack buffers of at most about 53 KiB); reentrant. */
typedef void (*lg_gemm_q_fn)(const struct lg_wmat *w, const void *qx, size_t ldq, float *y,
                             int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1);

/* The tiled kernel that belongs with a kernel table's dot4 for weight type `type` (the same
 * ISA) in `layout` (enum lg_wlayout) for n_tok tokens, or NULL (scalar reference tables, other
 * types: use the dots). GGUF rows: the packed GEMM from a per-type token count on (2 to 4:
 * packing costs more than it saves below), an unpacked 8-row kernel for fewer tokens where
 * there is one (Q5_0, Q8_0). R8 (Q4_0, Q8_0, Q4_K, Q6_K): one kernel for every n_tok. */
lg_gemm_q_fn lg_gemm_q_for(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4, int64_t n_tok);

/* kern/gemm_avx2.c (x86 only): the AVX2 kernel for Q4_0, Q5_0, Q8_0, Q4_K, Q6_K and n_tok as
 * lg_gemm_q_for describes, or NULL. Each output equals lg_vec_dot_ref's bit for bit when both
 * are compiled without FP contraction (GCC's ISO C mode). Callers must have checked that the
 * CPU has AVX2 + FMA + F16C. */
lg_gemm_q_fn lg_gemm_avx2(uint32_t type, int64_t n_tok);

/* kern/repack_avx2.c (x86 only): the AVX2 kernel on R8 matrices of `type` (Q4_0, Q8_0, Q4_K,
 * Q6_K), or NULL. Same contract and exactness as lg_gemm_avx2. */
lg_gemm_q_fn lg_gemm_r8_avx2(uint32_t type);

/* kern/repack_avx512.c (x86 only): the R8 kernels of lg_gemm_r8_avx2 with each maddubs +
 * madd chain replaced by AVX512-VNNI vpdpbusd (256-bit vectors, same layout and tiling), or
 * NULL. Same contract and exactness. Callers must have checked lg_cpu_has_avx512_vnni. */
lg_gemm_q_fn lg_gemm_r8_avx512(uint32_t type);

/* kern/matmul_q.c (x86 only). Whether the CPU has AVX-512 F, BW, VL and VNNI. */
bool lg_cpu_has_avx512_vnni(void);
/* For the AVX-512 kernel table: when the CPU has AVX512-VNNI, sets dot4[t] for the R8 types
 * (Q4_0, Q8_0, Q4_K, Q6_K) to dots computing what the AVX2 ones do but under their own
 * addresses, by which lg_gemm_q_for picks lg_gemm_r8_avx512 on R8 matrices (and the AVX2
 * kernels elsewhere); leaves dot4 alone otherwise. Any thread; idempotent. */
void lg_qdot_fill_avx512(lg_vec_dot4_fn *dot4);

/* ---- the R8 layout (kern/repack.c; enum lg_wlayout in kern.h) ---------------------------
 * Pure functions, any thread. */

/* Whether a rows x cols matrix of `type` has an R8 form (Q4_0, Q8_0, Q4_K, Q6_K;
 * rows % 8 == 0). */
bool lg_repack_r8_ok(uint32_t type, int64_t rows, int64_t cols);
/* Bytes of one group of 8 rows in R8 (= 8 GGUF rows), 0 for other types. */
size_t lg_repack_r8_group_bytes(uint32_t type, int64_t cols);
/* Writes groups [g0, g1) (rows 8 g0 .. 8 g1 - 1) of the R8 form of the GGUF rows at src (one
 * every src_row_bytes bytes) to dst (the whole matrix's R8 buffer: group g at
 * g * lg_repack_r8_group_bytes). The caller checked lg_repack_r8_ok. */
void lg_repack_r8(uint32_t type, const void *src, size_t src_row_bytes, void *dst, int64_t cols,
                  int64_t g0, int64_t g1);
/* The GGUF bytes of row r of an R8 matrix (w->row_bytes bytes to dst). */
void lg_unpack_r8_row(const struct lg_wmat *w, int64_t r, void *dst);
/* lg_matmul_q on an R8 matrix in the scalar reference's arithmetic. */
void lg_matmul_r8_ref(const struct lg_wmat *w, const void *qx, size_t ldq, float *y, int64_t ldy,
                      int64_t n_tok, int64_t r0, int64_t r1);
/* The term one weight block adds to the reference dot (kern/qdot_ref.c) of Q4_0 / Q8_0
 * ((float)isum * (dw * dy)) or Q4_K / Q6_K (yd * (d * isum - dmin * msum)) weights, against
 * one Q8_0 or Q8_K activation block. */
float lg_qdot_ref_block(uint32_t type, const void *w, const void *a);

#endif
