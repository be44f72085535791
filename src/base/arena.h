/* arena.h: a bump allocator for objects that share one lifetime (a model, a request, a step).
 *
 * Memory comes from malloc'd blocks that are freed together by lg_arena_destroy() (or made
 * reusable by lg_arena_reset()). Allocation failure returns NULL; sizes are checked for
 * overflow. Not thread-safe: one owner at a time.
 */
#ifndef LG_BASE_ARENA_H
#define LG_BASE_ARENA_H

#include <stddef.h>

struct lg_arena;

/* block_bytes: size of each block (0: 1 MiB). NULL when out of memory. */
struct lg_arena *lg_arena_create(size_t block_bytes);
void lg_arena_destroy(struct lg_arena *a);

/* n bytes aligned to 64; zero-filled. NULL on overflow or out of memory. */
void *lg_arena_alloc(struct lg_arena *a, size_t n);
/* n elements of size sz (checked multiplication). */
void *lg_arena_calloc(struct lg_arena *a, size_t n, size_t sz);

/* Frees all blocks but the current one and rewinds; earlier pointers become invalid. */
void lg_arena_reset(struct lg_arena *a);

/* Bytes handed out since creation / the last reset. */
size_t lg_arena_used(const struct lg_arena *a);

#endif
