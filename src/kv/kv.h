/* kv.h: the KV cache of one sequence.
 *
 * Per layer that owns its KV: K and V stores of [n_slots][n_head_kv][head_dim] f32. Position
 * pos lives in slot pos % n_slots.
 * - Global layers: n_slots = n_ctx (the ring never wraps inside the context).
 * - Sliding layers (window W): n_slots = min(n_ctx, W + n_chunk). A chunk of up to n_chunk
 *   tokens is written before it is attended over; with W + n_chunk slots the writes of a chunk
 *   never overwrite a key that a query of the same chunk can still see (the oldest key a query
 *   at p sees is p - W + 1, the newest write is p_last <= p + n_chunk - 1, and
 *   p_last - n_slots < p - W + 1). Callers must split batches into chunks <= n_chunk.
 * - KV-shared layers (src != il) own nothing: their K/V views are the donor's.
 * The cache does not know the model; the model fills a layout. Engine thread only.
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
};

struct lg_kv;

/* Creates a cache for up to n_ctx positions, to be filled in chunks of at most n_chunk tokens.
 * Errors: LG_ERR_INVALID_ARG (bad layout: src not an owning earlier-or-same layer, dims),
 * LG_ERR_NOMEM, LG_ERR_RANGE (size overflow). */
enum lg_status lg_kv_create(const struct lg_kv_layout *layout, int64_t n_ctx, int64_t n_chunk,
                            struct lg_kv **out, struct lg_err *err);
void lg_kv_destroy(struct lg_kv *kv);

/* K / V store of layer il (the donor's for a shared layer): [n_slots][n_head_kv][head_dim]. */
float *lg_kv_k(struct lg_kv *kv, int32_t il);
float *lg_kv_v(struct lg_kv *kv, int32_t il);
int64_t lg_kv_n_slots(const struct lg_kv *kv, int32_t il);
/* True when layer il writes its own K/V. */
bool lg_kv_owns(const struct lg_kv *kv, int32_t il);

int64_t lg_kv_n_ctx(const struct lg_kv *kv);
int64_t lg_kv_n_chunk(const struct lg_kv *kv);
/* Number of positions stored so far (the next position to write). */
int64_t lg_kv_n_pos(const struct lg_kv *kv);
/* Marks positions [n_pos, n_pos + n) as written (called after a chunk went through all layers). */
void lg_kv_advance(struct lg_kv *kv, int64_t n);

/* Forgets positions >= pos so that the next chunk may start at pos. Always possible for
 * pos == 0; otherwise LG_ERR_RANGE when a sliding ring no longer holds the window before pos. */
enum lg_status lg_kv_rewind(struct lg_kv *kv, int64_t pos, struct lg_err *err);

/* Bytes allocated for K/V. */
size_t lg_kv_bytes(const struct lg_kv *kv);

#endif
