/* kv.h: the KV cache of one sequence.
 *
 * Per layer that owns its KV: K and V stores of [n_slots] slot rows; a slot row holds the
 * n_head_kv heads of head_dim elements in the cache's storage type (enum lg_qtype: F32, F16,
 * Q8_0 or Q4_0, chosen separately for K and V), head h at byte h * head_bytes of the row, where
 * head_bytes = lg_qtype_row_bytes(type, head_dim). Block types need head_dim % 32 == 0, so no
 * block straddles two heads. Rows are converted on write (lg_kv_store: ggml's reference
 * quantizers, IEEE round-to-nearest-even for F16) and read in place by the attention kernel
 * (struct lg_attn_args in kern/kern.h); nothing ever holds a dequantized copy of the cache.
 * Position pos lives in slot pos % n_slots.
 * - Global layers: n_slots = n_ctx (the ring never wraps inside the context).
 * - Sliding layers (window W): n_slots = min(n_ctx, W + n_chunk). A chunk of up to n_chunk
 *   tokens is written before it is attended over; with W + n_chunk slots the writes of a chunk
 *   never overwrite a key that a query of the same chunk can still see (the oldest key a query
 *   at p sees is p - W + 1, the newest write is p_last <= p + n_chunk - 1, and
 *   p_last - n_slots < p - W + 1). Callers must split batches into chunks <= n_chunk.
 * - KV-shared layers (src != il) own nothing: their K/V views are the donor's.
 * The cache does not know the model; the model fills a layout. Engine thread only
 * (lg_kv_type_parse and lg_kv_size: any thread).
 */
#ifndef LG_KV_H
#define LG_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

struct lg_kv_layer_layout {
    int32_t src;        /* layer whose cache this layer reads (== own index when it owns KV) */
    int64_t window;     /* 0 for global layers */
    int64_t n_head_kv;
    int64_t head_dim;
};

struct lg_kv_layout {
    int32_t n_layer;
    const struct lg_kv_layer_layout *layers; /* [n_layer]; copied by lg_kv_create */
    uint32_t type_k;    /* storage type of K (enum lg_qtype); 0 = LG_QTYPE_F32 */
    uint32_t type_v;    /* of V */
};

struct lg_kv;

/* Creates a cache for up to n_ctx positions, to be filled in chunks of at most n_chunk tokens.
 * Errors: LG_ERR_INVALID_ARG (bad layout: src not an owning earlier-or-same layer, dims),
 * LG_ERR_UNSUPPORTED (storage type not F32/F16/Q8_0/Q4_0, or a block type with head_dim not a
 * multiple of 32), LG_ERR_NOMEM, LG_ERR_RANGE (size overflow). */
enum lg_status lg_kv_create(const struct lg_kv_layout *layout, int64_t n_ctx, int64_t n_chunk,
                            struct lg_kv **out, struct lg_err *err);
void lg_kv_destroy(struct lg_kv *kv);

/* Exactly the bytes lg_kv_create() would allocate for these arguments (stores and
 * bookkeeping), with the same validation and errors, without allocating. */
enum lg_status lg_kv_size(const struct lg_kv_layout *layout, int64_t n_ctx, int64_t n_chunk,
                          size_t *bytes, struct lg_err *err);

/* K / V store of layer il (the donor's for a shared layer): [n_slots] rows of
 * lg_kv_row_bytes_k/v(kv, il) bytes in lg_kv_type_k/v(kv). Valid until lg_kv_destroy(). */
void *lg_kv_k(struct lg_kv *kv, int32_t il);
void *lg_kv_v(struct lg_kv *kv, int32_t il);
uint32_t lg_kv_type_k(const struct lg_kv *kv);
uint32_t lg_kv_type_v(const struct lg_kv *kv);
size_t lg_kv_row_bytes_k(const struct lg_kv *kv, int32_t il);
size_t lg_kv_row_bytes_v(const struct lg_kv *kv, int32_t il);
int64_t lg_kv_n_slots(const struct lg_kv *kv, int32_t il);
/* True when layer il writes its own K/V. */
bool lg_kv_owns(const struct lg_kv *kv, int32_t il);

/* Converts k and v ([n_head_kv * head_dim] f32 each) to the storage types and writes them to
 * the slot of position pos of layer il (which must own its KV). F32 is a plain copy. The
 * converters come from the kernel table (lg_kern_get() at creation, or lg_kv_set_kern): F16 by
 * F16C when the table is not "ref" and the CPU has F16C, Q8_0 by the table's act_quantize;
 * every path writes the same bytes as lg_quant_row (test_kv_types checks it). */
void lg_kv_store(struct lg_kv *kv, int32_t il, int64_t pos, const float *k, const float *v);

struct lg_kern;
/* Makes lg_kv_store use kernel table k's converters (NULL: lg_kern_get()). For tests. */
void lg_kv_set_kern(struct lg_kv *kv, const struct lg_kern *k);
/* True when the CPU has AVX2 and F16C (lg_kv_f16_row_avx2 may run). Any thread. */
bool lg_kv_f16c_ok(void);
/* kv_avx2.c: n floats to F16 (2n bytes at dst), bit for bit lg_f32_to_f16 (NaN included).
 * Only when lg_kv_f16c_ok(). Any thread. */
void lg_kv_f16_row_avx2(const float *x, void *dst, int64_t n);
/* Reads back (dequantizes) the slot of position pos of layer il into k and v (either may be
 * NULL). For tests and debugging: the forward pass never needs it. */
void lg_kv_load(struct lg_kv *kv, int32_t il, int64_t pos, float *k, float *v);

int64_t lg_kv_n_ctx(const struct lg_kv *kv);
int64_t lg_kv_n_chunk(const struct lg_kv *kv);
/* Number of positions stored so far (the next position to write). */
int64_t lg_kv_n_pos(const struct lg_kv *kv);
/* Marks positions [n_pos, n_pos + n) as written (called after a chunk went through all layers). */
void lg_kv_advance(struct lg_kv *kv, int64_t n);

/* Forgets positions >= pos so that the next chunk may start at pos. Always possible for
 * pos == 0; otherwise LG_ERR_RANGE when a sliding ring no longer holds the window before pos. */
enum lg_status lg_kv_rewind(struct lg_kv *kv, int64_t pos, struct lg_err *err);

/* Bytes allocated for the K/V stores. */
size_t lg_kv_bytes(const struct lg_kv *kv);
/* Bytes allocated in all (stores + bookkeeping): what lg_kv_size() predicted. */
size_t lg_kv_footprint(const struct lg_kv *kv);

/* Parses a KV-cache storage type name: "f32", "f16", "q8_0", "q4_0" (case-insensitive) into an
 * enum lg_qtype id. LG_ERR_INVALID_ARG (naming the accepted values) otherwise. Any thread. */
enum lg_status lg_kv_type_parse(const char *name, uint32_t *out, struct lg_err *err);
/* The name lg_kv_type_parse accepts for a storage type ("f16", ...), or "?" for others. */
const char *lg_kv_type_name(uint32_t type);

/* ---- snapshots of the sliding rings (prefix cache across turns) ----------------------------
 * A sliding layer's ring holds only its last window (+ n_chunk) positions, so a cache can be
 * cut back (lg_kv_rewind) by at most about n_chunk positions. A snapshot taken at position S
 * (say, the end of a prompt) keeps copies of the rings; restoring it brings the cache back to
 * S — global layers still hold every position below S as long as the cache was never cut
 * below S in between (the caller's invariant) — from where lg_kv_rewind can go back a chunk.
 * That lets the next turn of a chat reuse everything up to the previous prompt's end even when
 * the previous answer (or a thought the history drops) overwrote the rings. */
/* Bytes a snapshot of this cache takes (0 when no layer is a wrapping ring). */
size_t lg_kv_snapshot_bytes(const struct lg_kv *kv);
/* Copies the rings into buf (lg_kv_snapshot_bytes bytes); returns the position S it captured
 * (lg_kv_n_pos). */
int64_t lg_kv_snapshot_save(const struct lg_kv *kv, void *buf);
/* Restores a snapshot taken at position snap_pos (<= lg_kv_n_pos(kv)), leaving the cache at
 * snap_pos. LG_ERR_RANGE when snap_pos is beyond the cache. */
enum lg_status lg_kv_snapshot_restore(struct lg_kv *kv, const void *buf, int64_t snap_pos,
                                      struct lg_err *err);

#endif
