/* arena.c: bump allocation from a list of blocks. Invariant: head is the block being filled;
 * every block's payload starts 64-byte aligned and `used <= cap`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"

struct arena_block {
    struct arena_block *next;
    size_t cap;
    size_t used;
    void *mem; /* cap bytes, 64-aligned */
};

struct lg_arena {
    struct arena_block *head;
    size_t block_bytes;
    size_t used;
};

static struct arena_block *block_new(size_t cap)
{
    struct arena_block *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    b->mem = aligned_alloc(64, cap);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

struct lg_arena *lg_arena_create(size_t block_bytes)
{
    struct lg_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->block_bytes = block_bytes ? (block_bytes + 63) / 64 * 64 : (size_t)1 << 20;
    return a;
}

void lg_arena_destroy(struct lg_arena *a)
{
    if (!a)
        return;
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *n = b->next;
        free(b->mem);
        free(b);
        b = n;
    }
    free(a);
}

void *lg_arena_alloc(struct lg_arena *a, size_t n)
{
    if (n > SIZE_MAX - 128)
        return NULL;
    size_t need = (n + 63) / 64 * 64;
    if (need == 0)
        need = 64;
    struct arena_block *b = a->head;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > a->block_bytes ? need : a->block_bytes;
        struct arena_block *nb = block_new(cap);
        if (!nb)
            return NULL;
        /* A big one-off block goes behind the head so the head keeps filling. */
        if (b && need > a->block_bytes) {
            nb->next = b->next;
            b->next = nb;
            nb->used = need;
            a->used += need;
            memset(nb->mem, 0, need);
            return nb->mem;
        }
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = (char *)b->mem + b->used;
    b->used += need;
    a->used += need;
    memset(p, 0, need);
    return p;
}

void *lg_arena_calloc(struct lg_arena *a, size_t n, size_t sz)
{
    if (sz && n > SIZE_MAX / sz)
        return NULL;
    return lg_arena_alloc(a, n * sz);
}

void lg_arena_reset(struct lg_arena *a)
{
    /* Keep the head block (the usual working set) and free the others. */
    struct arena_block *b = a->head;
    if (!b)
        return;
    struct arena_block *n = b->next;
    while (n) {
        struct arena_block *nn = n->next;
        free(n->mem);
        free(n);
        n = nn;
    }
    b->next = NULL;
    b->used = 0;
    a->used = 0;
}

size_t lg_arena_used(const struct lg_arena *a)
{
    return a->used;
}
