/* gguf.c: the bounds-checked GGUF v2/v3 reader (shared/spec/hardening.md §3).
 *
 * Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv × (string key, u32 type,
 * value), n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding
 * to the alignment, then the data section. All integers are little-endian; a string is a u64
 * length followed by that many bytes.
 *
 * Invariants: every read goes through a cursor that checks the bytes left before touching them;
 * every count is checked against its cap and against what the remaining bytes could hold before
 * anything is allocated; every allocation comes from one arena whose total is capped at the
 * file size plus a constant; sizes and offsets use overflow-checked arithmetic and stay below
 * 2^62. The metadata and tensor infos are fully parsed and validated before the object exists;
 * tensor data is never read here.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "quant/quant.h"

enum {
    GG_MAX_KEY_BYTES = 64 * 1024,
    GG_MAX_STR_BYTES = 16 * 1024 * 1024,
    GG_MAX_ARR_ELEMS = 1 << 26,
    GG_MAX_KV = 65536,
    GG_MAX_TENSORS = 1 << 20,
    GG_MAX_ALIGNMENT = 1 << 20,
    GG_ALLOC_SLACK = 16 * 1024 * 1024, /* allocation budget = file size + this */
    GG_ARENA_BLOCK = 64 * 1024,
    GG_NAME_SHOW = 48 /* bytes of a key/name quoted in an error message */
};

static const uint64_t GG_MAX_SIZE = (uint64_t)1 << 62;

/* ---- arena: every allocation of one open file, freed together, under a byte budget ---- */

struct gg_block {
    struct gg_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

struct gg_priv {
    struct gg_block *blocks;
    uint64_t alloc_bytes, alloc_budget;
    uint32_t *kv_index; /* open addressing: 0 = empty, else kv index + 1 */
    uint64_t kv_mask;
    uint32_t *t_index; /* same for tensors */
    uint64_t t_mask;
    uint64_t seed; /* hash key of both indexes */
    void *map;     /* mmap of lg_gguf_open, NULL for a borrowed buffer */
    size_t map_size;
};

static void *gg_alloc(struct gg_priv *pv, uint64_t bytes)
{
    bytes = (bytes + 15) & ~(uint64_t)15;
    if (bytes == 0)
        bytes = 16;
    struct gg_block *b = pv->blocks;
    if (!b || b->cap - b->used < bytes) {
        uint64_t cap = bytes > GG_ARENA_BLOCK ? bytes : GG_ARENA_BLOCK;
        if (cap > pv->alloc_budget - pv->alloc_bytes)
            return NULL;
        b = malloc(sizeof *b + (size_t)cap);
        if (!b)
            return NULL;
        pv->alloc_bytes += cap;
        b->cap = (size_t)cap;
        b->used = 0;
        /* keep the partly used block at the head when this one is a one-off big block */
        if (pv->blocks && bytes > GG_ARENA_BLOCK) {
            b->next = pv->blocks->next;
            pv->blocks->next = b;
        } else {
            b->next = pv->blocks;
            pv->blocks = b;
        }
    }
    void *p = b->mem + b->used;
    b->used += (size_t)bytes;
    return p;
}

static void gg_arena_free(struct gg_priv *pv)
{
    struct gg_block *b = pv->blocks;
    while (b) {
        struct gg_block *n = b->next;
        free(b);
        b = n;
    }
    pv->blocks = NULL;
}

/* ---- small helpers ---- */

/* Names come from the file, so the index hash is keyed with a random seed per open: without
 * it a file could hold 2^20 names that collide in the table and turn the duplicate check into
 * 10^11 comparisons (hash flooding). The seed changes nothing observable. */
static uint64_t gg_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t gg_hash(uint64_t seed, const char *s, uint64_t len)
{
    uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ull);
    uint64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = gg_mix(h ^ w);
    }
    uint64_t tail = 0;
    for (uint64_t k = 0; i + k < len; k++)
        tail |= (uint64_t)(unsigned char)s[i + k] << (8 * k);
    return gg_mix(h ^ tail ^ 0x5bd1e995ull);
}

static uint64_t gg_seed(void)
{
    uint64_t seed = 0;
    if (getentropy(&seed, sizeof seed) != 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&ts;
    }
    return seed;
}

/* Copies a name from the file into buf for an error message: printable ASCII only. */
static const char *gg_show(char *buf, const char *s, uint64_t len)
{
    size_t n = len > GG_NAME_SHOW ? GG_NAME_SHOW : (size_t)len, j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (len > n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

static const uint8_t gg_type_size[LG_GGUF_TYPE_COUNT] = {
    [LG_GGUF_TYPE_UINT8] = 1,   [LG_GGUF_TYPE_INT8] = 1,   [LG_GGUF_TYPE_UINT16] = 2,
    [LG_GGUF_TYPE_INT16] = 2,   [LG_GGUF_TYPE_UINT32] = 4, [LG_GGUF_TYPE_INT32] = 4,
    [LG_GGUF_TYPE_FLOAT32] = 4, [LG_GGUF_TYPE_BOOL] = 1,   [LG_GGUF_TYPE_STRING] = 0,
    [LG_GGUF_TYPE_ARRAY] = 0,   [LG_GGUF_TYPE_UINT64] = 8, [LG_GGUF_TYPE_INT64] = 8,
    [LG_GGUF_TYPE_FLOAT64] = 8,
};

size_t lg_gguf_type_size(enum lg_gguf_type t)
{
    return (unsigned)t < LG_GGUF_TYPE_COUNT ? gg_type_size[t] : 0;
}

const char *lg_gguf_type_name(enum lg_gguf_type t)
{
    static const char *const names[LG_GGUF_TYPE_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                          "i32", "f32", "bool", "string", "array",
                                                          "u64", "i64", "f64"};
    return (unsigned)t < LG_GGUF_TYPE_COUNT ? names[t] : "unknown";
}

const char *lg_gguf_file_type_name(uint32_t file_type)
{
    /* llama.cpp's llama_ftype; holes are ids that were removed there */
    static const char *const names[] = {
        [0] = "ALL_F32",        [1] = "MOSTLY_F16",      [2] = "MOSTLY_Q4_0",
        [3] = "MOSTLY_Q4_1",    [7] = "MOSTLY_Q8_0",     [8] = "MOSTLY_Q5_0",
        [9] = "MOSTLY_Q5_1",    [10] = "MOSTLY_Q2_K",    [11] = "MOSTLY_Q3_K_S",
        [12] = "MOSTLY_Q3_K_M", [13] = "MOSTLY_Q3_K_L",  [14] = "MOSTLY_Q4_K_S",
        [15] = "MOSTLY_Q4_K_M", [16] = "MOSTLY_Q5_K_S",  [17] = "MOSTLY_Q5_K_M",
        [18] = "MOSTLY_Q6_K",   [19] = "MOSTLY_IQ2_XXS", [20] = "MOSTLY_IQ2_XS",
        [21] = "MOSTLY_Q2_K_S", [22] = "MOSTLY_IQ3_XS",  [23] = "MOSTLY_IQ3_XXS",
        [24] = "MOSTLY_IQ1_S",  [25] = "MOSTLY_IQ4_NL",  [26] = "MOSTLY_IQ3_S",
        [27] = "MOSTLY_IQ3_M",  [28] = "MOSTLY_IQ2_S",   [29] = "MOSTLY_IQ2_M",
        [30] = "MOSTLY_IQ4_XS", [31] = "MOSTLY_IQ1_M",   [32] = "MOSTLY_BF16",
        [36] = "MOSTLY_TQ1_0",  [37] = "MOSTLY_TQ2_0",   [38] = "MOSTLY_MXFP4_MOE",
    };
    if (file_type < sizeof names / sizeof names[0])
        return names[file_type];
    return file_type == 1024 ? "GUESSED" : NULL;
}

bool lg_str_eq(struct lg_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

static uint64_t gg_rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void gg_decode_scalar(enum lg_gguf_type t, const uint8_t *p, struct lg_gguf_value *v)
{
    v->type = t;
    switch (t) {
    case LG_GGUF_TYPE_UINT8:
        v->v.u64 = p[0];
        break;
    case LG_GGUF_TYPE_BOOL:
        v->v.u64 = p[0] != 0;
        break;
    case LG_GGUF_TYPE_UINT16:
        v->v.u64 = gg_rd(p, 2);
        break;
    case LG_GGUF_TYPE_UINT32:
        v->v.u64 = gg_rd(p, 4);
        break;
    case LG_GGUF_TYPE_UINT64:
        v->v.u64 = gg_rd(p, 8);
        break;
    case LG_GGUF_TYPE_INT8:
        v->v.i64 = (int8_t)p[0];
        break;
    case LG_GGUF_TYPE_INT16:
        v->v.i64 = (int16_t)(uint16_t)gg_rd(p, 2);
        break;
    case LG_GGUF_TYPE_INT32:
        v->v.i64 = (int32_t)(uint32_t)gg_rd(p, 4);
        break;
    case LG_GGUF_TYPE_INT64:
        v->v.i64 = (int64_t)gg_rd(p, 8);
        break;
    case LG_GGUF_TYPE_FLOAT32: {
        uint32_t u = (uint32_t)gg_rd(p, 4);
        float f;
        memcpy(&f, &u, 4);
        v->v.f64 = f;
        break;
    }
    case LG_GGUF_TYPE_FLOAT64: {
        uint64_t u = gg_rd(p, 8);
        double d;
        memcpy(&d, &u, 8);
        v->v.f64 = d;
        break;
    }
    default:
        v->v.u64 = 0;
        break;
    }
}

/* ---- the parser: a bounded cursor plus the context of the current field ---- */

struct gg_parser {
    const uint8_t *base;
    uint64_t size, pos;
    struct lg_err *err;
    struct gg_priv *pv;
    char ctx[160];         /* "kv #3 'general.name'", "tensor #2 'x'" */
    uint64_t nested_elems; /* elements of nested arrays so far (global budget) */
    uint64_t total_bytes;  /* sum of tensor nbytes so far */
};

static uint64_t gg_left(const struct gg_parser *p)
{
    return p->size - p->pos;
}

static enum lg_status gg_need(struct gg_parser *p, uint64_t n, const char *field)
{
    if (n <= gg_left(p))
        return LG_OK;
    return lg_err_set(p->err, LG_ERR_FORMAT,
                      "gguf: %s%s%s at byte %llu: truncated, needs %llu bytes but %llu are left",
                      p->ctx, p->ctx[0] ? " " : "", field, (unsigned long long)p->pos,
                      (unsigned long long)n, (unsigned long long)gg_left(p));
}

static enum lg_status gg_u32(struct gg_parser *p, uint32_t *out, const char *field)
{
    enum lg_status st = gg_need(p, 4, field);
    if (st)
        return st;
    *out = (uint32_t)gg_rd(p->base + p->pos, 4);
    p->pos += 4;
    return LG_OK;
}

static enum lg_status gg_u64(struct gg_parser *p, uint64_t *out, const char *field)
{
    enum lg_status st = gg_need(p, 8, field);
    if (st)
        return st;
    *out = gg_rd(p->base + p->pos, 8);
    p->pos += 8;
    return LG_OK;
}

static enum lg_status gg_fail(struct gg_parser *p, enum lg_status code, uint64_t at,
                              const char *field, const char *fmt, ...) LG_PRINTF(5, 6);

static enum lg_status gg_fail(struct gg_parser *p, enum lg_status code, uint64_t at,
                              const char *field, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lg_err_set(p->err, code, "gguf: %s%s%s at byte %llu: %s", p->ctx,
                      p->ctx[0] && field[0] ? " " : "", field, (unsigned long long)at, what);
}

static enum lg_status gg_nomem(struct gg_parser *p, const char *what, uint64_t bytes)
{
    return lg_err_set(p->err, LG_ERR_NOMEM,
                      "gguf: %s%s%s at byte %llu: allocating %llu bytes exceeds the budget "
                      "(file size + 16 MiB) or memory",
                      p->ctx, p->ctx[0] ? " " : "", what, (unsigned long long)p->pos,
                      (unsigned long long)bytes);
}

/* Field names are built only when an error is reported: "value[7] length". */
enum { GG_NO_IDX = -1 };

static const char *gg_field(char *buf, size_t n, const char *field, int64_t idx, const char *suffix)
{
    if (idx == GG_NO_IDX)
        snprintf(buf, n, "%s%s", field, suffix);
    else
        snprintf(buf, n, "%s[%lld]%s", field, (long long)idx, suffix);
    return buf;
}

/* A string: u64 length (≤ cap and ≤ bytes left), then the bytes. */
static enum lg_status gg_string(struct gg_parser *p, struct lg_str *out, uint64_t cap,
                                const char *field, int64_t idx)
{
    uint64_t at = p->pos, len;
    char f[96];
    if (gg_left(p) < 8)
        return gg_need(p, 8, gg_field(f, sizeof f, field, idx, " length"));
    len = gg_rd(p->base + p->pos, 8);
    p->pos += 8;
    if (len > cap)
        return gg_fail(p, LG_ERR_FORMAT, at, gg_field(f, sizeof f, field, idx, " length"),
                       "%llu bytes exceed the %llu-byte cap", (unsigned long long)len,
                       (unsigned long long)cap);
    if (len > gg_left(p))
        return gg_fail(p, LG_ERR_FORMAT, at, gg_field(f, sizeof f, field, idx, " length"),
                       "%llu bytes run past the end of the file (%llu left)",
                       (unsigned long long)len, (unsigned long long)gg_left(p));
    out->ptr = (const char *)(p->base + p->pos);
    out->len = len;
    p->pos += len;
    return LG_OK;
}

static enum lg_status gg_value(struct gg_parser *p, enum lg_gguf_type type,
                               struct lg_gguf_value *out, unsigned depth, const char *field);

/* An array body: u32 element type, u64 count, elements. depth is 1 for a top-level array. */
static enum lg_status gg_array(struct gg_parser *p, struct lg_gguf_value *out, unsigned depth,
                               const char *field, int64_t idx)
{
    uint64_t at = p->pos;
    uint32_t et;
    uint64_t n;
    enum lg_status st;
    char f[96];
    gg_field(f, sizeof f, field, idx, " element type");
    if ((st = gg_u32(p, &et, f)))
        return st;
    if (et >= LG_GGUF_TYPE_COUNT)
        return gg_fail(p, LG_ERR_FORMAT, at, f, "unknown array element type %u", et);
    if (et == LG_GGUF_TYPE_ARRAY && depth >= LG_GGUF_MAX_ARRAY_DEPTH)
        return gg_fail(p, LG_ERR_FORMAT, at, f, "arrays nested deeper than %d levels",
                       (int)LG_GGUF_MAX_ARRAY_DEPTH);
    gg_field(f, sizeof f, field, idx, " length");
    at = p->pos;
    if ((st = gg_u64(p, &n, f)))
        return st;
    /* the smallest encoding of one element: scalars by size, a string 8, an array 12 */
    uint64_t min_elem = et == LG_GGUF_TYPE_STRING  ? 8
                        : et == LG_GGUF_TYPE_ARRAY ? 12
                                                   : gg_type_size[et];
    if (n > GG_MAX_ARR_ELEMS)
        return gg_fail(p, LG_ERR_FORMAT, at, f, "%llu elements exceed the cap of %d",
                       (unsigned long long)n, (int)GG_MAX_ARR_ELEMS);
    if (n > gg_left(p) / min_elem)
        return gg_fail(p, LG_ERR_FORMAT, at, f,
                       "%llu %s elements cannot fit in the %llu bytes left", (unsigned long long)n,
                       lg_gguf_type_name((enum lg_gguf_type)et), (unsigned long long)gg_left(p));
    out->type = LG_GGUF_TYPE_ARRAY;
    out->v.arr.elem_type = (enum lg_gguf_type)et;
    out->v.arr.n = n;
    out->v.arr.data = p->base + p->pos;
    out->v.arr.strs = NULL;
    out->v.arr.arrs = NULL;
    if (et == LG_GGUF_TYPE_STRING) {
        struct lg_str *s = n ? gg_alloc(p->pv, n * sizeof *s) : NULL;
        if (n && !s)
            return gg_nomem(p, "string array", n * sizeof *s);
        gg_field(f, sizeof f, field, idx, "");
        for (uint64_t i = 0; i < n; i++)
            if ((st = gg_string(p, &s[i], GG_MAX_STR_BYTES, f, (int64_t)i)))
                return st;
        out->v.arr.strs = s;
    } else if (et == LG_GGUF_TYPE_ARRAY) {
        if (n > (uint64_t)LG_GGUF_MAX_NESTED_ELEMS - p->nested_elems)
            return gg_fail(p, LG_ERR_FORMAT, at, f,
                           "nested arrays hold more than %d elements in total",
                           (int)LG_GGUF_MAX_NESTED_ELEMS);
        p->nested_elems += n;
        struct lg_gguf_value *a = n ? gg_alloc(p->pv, n * sizeof *a) : NULL;
        if (n && !a)
            return gg_nomem(p, "nested array", n * sizeof *a);
        gg_field(f, sizeof f, field, idx, "");
        for (uint64_t i = 0; i < n; i++)
            if ((st = gg_array(p, &a[i], depth + 1, f, (int64_t)i)))
                return st;
        out->v.arr.arrs = a;
    } else {
        uint64_t bytes = n * min_elem;
        if (et == LG_GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (p->base[p->pos + i] > 1)
                    return gg_fail(p, LG_ERR_FORMAT, p->pos + i,
                                   gg_field(f, sizeof f, field, idx, ""),
                                   "bool element %llu has value %u (not 0 or 1)",
                                   (unsigned long long)i, p->base[p->pos + i]);
        p->pos += bytes;
    }
    return LG_OK;
}

static enum lg_status gg_value(struct gg_parser *p, enum lg_gguf_type type,
                               struct lg_gguf_value *out, unsigned depth, const char *field)
{
    if (type == LG_GGUF_TYPE_STRING) {
        out->type = type;
        return gg_string(p, &out->v.str, GG_MAX_STR_BYTES, field, GG_NO_IDX);
    }
    if (type == LG_GGUF_TYPE_ARRAY)
        return gg_array(p, out, depth + 1, field, GG_NO_IDX);
    size_t sz = gg_type_size[type];
    enum lg_status st = gg_need(p, sz, field);
    if (st)
        return st;
    if (type == LG_GGUF_TYPE_BOOL && p->base[p->pos] > 1)
        return gg_fail(p, LG_ERR_FORMAT, p->pos, field, "bool value %u is not 0 or 1",
                       p->base[p->pos]);
    gg_decode_scalar(type, p->base + p->pos, out);
    p->pos += sz;
    return LG_OK;
}

/* ---- name index (open addressing, power-of-two table, load ≤ 1/2) ---- */

static enum lg_status gg_index_create(struct gg_parser *p, uint64_t n, uint32_t **tab,
                                      uint64_t *mask)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    *tab = gg_alloc(p->pv, cap * sizeof **tab);
    if (!*tab)
        return gg_nomem(p, "name index", cap * sizeof **tab);
    memset(*tab, 0, cap * sizeof **tab);
    *mask = cap - 1;
    return LG_OK;
}

/* Returns the slot holding name, or the empty slot where it would go. */
static uint32_t *gg_index_slot(uint32_t *tab, uint64_t mask, uint64_t seed, const char *s,
                               uint64_t len,
                               const struct lg_str *(*name_of)(const void *, uint32_t),
                               const void *items)
{
    uint64_t h = gg_hash(seed, s, len) & mask;
    for (;;) {
        uint32_t e = tab[h];
        if (e == 0)
            return &tab[h];
        const struct lg_str *nm = name_of(items, e - 1);
        if (nm->len == len && memcmp(nm->ptr, s, (size_t)len) == 0)
            return &tab[h];
        h = (h + 1) & mask;
    }
}

static const struct lg_str *gg_kv_name(const void *items, uint32_t i)
{
    return &((const struct lg_gguf_kv *)items)[i].key;
}

static const struct lg_str *gg_tensor_name(const void *items, uint32_t i)
{
    return &((const struct lg_gguf_tensor *)items)[i].name;
}

/* ---- header, key-value pairs, tensor infos ---- */

static enum lg_status gg_parse_kvs(struct gg_parser *p, struct lg_gguf *g)
{
    struct gg_priv *pv = p->pv;
    enum lg_status st;
    char nm[GG_NAME_SHOW + 8];
    if (g->n_kv) {
        g->kv = gg_alloc(pv, g->n_kv * sizeof *g->kv);
        if (!g->kv)
            return gg_nomem(p, "kv table", g->n_kv * sizeof *g->kv);
    }
    if ((st = gg_index_create(p, g->n_kv, &pv->kv_index, &pv->kv_mask)))
        return st;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct lg_gguf_kv *kv = &g->kv[i];
        memset(kv, 0, sizeof *kv);
        kv->offset = p->pos;
        snprintf(p->ctx, sizeof p->ctx, "kv #%llu", (unsigned long long)i);
        if ((st = gg_string(p, &kv->key, GG_MAX_KEY_BYTES, "key", GG_NO_IDX)))
            return st;
        if (kv->key.len == 0)
            return gg_fail(p, LG_ERR_FORMAT, kv->offset, "key", "empty key");
        if (memchr(kv->key.ptr, 0, (size_t)kv->key.len))
            return gg_fail(p, LG_ERR_FORMAT, kv->offset, "key", "key contains a NUL byte");
        snprintf(p->ctx, sizeof p->ctx, "kv #%llu '%s'", (unsigned long long)i,
                 gg_show(nm, kv->key.ptr, kv->key.len));
        uint32_t *slot = gg_index_slot(pv->kv_index, pv->kv_mask, pv->seed, kv->key.ptr,
                                       kv->key.len, gg_kv_name, g->kv);
        if (*slot)
            return gg_fail(p, LG_ERR_FORMAT, kv->offset, "key",
                           "duplicate key (first at byte %llu)",
                           (unsigned long long)g->kv[*slot - 1].offset);
        uint64_t at = p->pos;
        uint32_t type;
        if ((st = gg_u32(p, &type, "value type")))
            return st;
        if (type >= LG_GGUF_TYPE_COUNT)
            return gg_fail(p, LG_ERR_FORMAT, at, "value type", "unknown value type %u", type);
        if ((st = gg_value(p, (enum lg_gguf_type)type, &kv->val, 0, "value")))
            return st;
        *slot = (uint32_t)i + 1;
    }
    p->ctx[0] = '\0';
    return LG_OK;
}

static enum lg_status gg_alignment(struct gg_parser *p, struct lg_gguf *g)
{
    g->alignment = LG_GGUF_DEFAULT_ALIGNMENT;
    const struct lg_gguf_kv *kv = lg_gguf_find_kv(g, "general.alignment");
    if (!kv)
        return LG_OK;
    snprintf(p->ctx, sizeof p->ctx, "kv 'general.alignment'");
    if (kv->val.type != LG_GGUF_TYPE_UINT32)
        return gg_fail(p, LG_ERR_FORMAT, kv->offset, "", "type is %s, expected u32",
                       lg_gguf_type_name(kv->val.type));
    uint64_t a = kv->val.v.u64;
    if (a == 0 || (a & (a - 1)) != 0 || a > GG_MAX_ALIGNMENT)
        return gg_fail(p, LG_ERR_FORMAT, kv->offset, "",
                       "alignment %llu is not a power of two in 1..%d", (unsigned long long)a,
                       (int)GG_MAX_ALIGNMENT);
    g->alignment = (uint32_t)a;
    p->ctx[0] = '\0';
    return LG_OK;
}

static enum lg_status gg_parse_tensor_infos(struct gg_parser *p, struct lg_gguf *g,
                                            uint64_t *info_off)
{
    struct gg_priv *pv = p->pv;
    enum lg_status st;
    char nm[GG_NAME_SHOW + 8];
    if ((st = gg_index_create(p, g->n_tensors, &pv->t_index, &pv->t_mask)))
        return st;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct lg_gguf_tensor *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        info_off[i] = p->pos;
        snprintf(p->ctx, sizeof p->ctx, "tensor #%llu", (unsigned long long)i);
        if ((st = gg_string(p, &t->name, GG_MAX_KEY_BYTES, "name", GG_NO_IDX)))
            return st;
        if (t->name.len == 0)
            return gg_fail(p, LG_ERR_FORMAT, info_off[i], "name", "empty tensor name");
        if (memchr(t->name.ptr, 0, (size_t)t->name.len))
            return gg_fail(p, LG_ERR_FORMAT, info_off[i], "name",
                           "tensor name contains a NUL byte");
        snprintf(p->ctx, sizeof p->ctx, "tensor '%s' (#%llu)",
                 gg_show(nm, t->name.ptr, t->name.len), (unsigned long long)i);
        uint32_t *slot = gg_index_slot(pv->t_index, pv->t_mask, pv->seed, t->name.ptr, t->name.len,
                                       gg_tensor_name, g->tensors);
        if (*slot)
            return gg_fail(p, LG_ERR_FORMAT, info_off[i], "name",
                           "duplicate tensor name (first at byte %llu)",
                           (unsigned long long)info_off[*slot - 1]);
        *slot = (uint32_t)i + 1;
        uint64_t at = p->pos;
        if ((st = gg_u32(p, &t->n_dims, "n_dims")))
            return st;
        if (t->n_dims < 1 || t->n_dims > LG_GGUF_MAX_DIMS)
            return gg_fail(p, LG_ERR_FORMAT, at, "n_dims", "%u dimensions (allowed 1..%d)",
                           t->n_dims, (int)LG_GGUF_MAX_DIMS);
        uint64_t n_elems = 1;
        for (uint32_t d = 0; d < LG_GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            at = p->pos;
            if ((st = gg_u64(p, &t->ne[d], "ne")))
                return st;
            if (t->ne[d] >= GG_MAX_SIZE || __builtin_mul_overflow(n_elems, t->ne[d], &n_elems) ||
                n_elems >= GG_MAX_SIZE)
                return gg_fail(p, LG_ERR_FORMAT, at, "ne",
                               "dimension %u (%llu) makes the element count overflow 2^62", d,
                               (unsigned long long)t->ne[d]);
        }
        at = p->pos;
        if ((st = gg_u32(p, &t->type, "type")))
            return st;
        const struct lg_qtype_info *qi = lg_qtype_get(t->type);
        if (!qi)
            return gg_fail(p, LG_ERR_UNSUPPORTED, at, "type", "unknown tensor type %u", t->type);
        if (qi->block_size == 0 || t->ne[0] % qi->block_size != 0)
            return gg_fail(p, LG_ERR_FORMAT, at, "type",
                           "ne[0] = %llu is not a multiple of the %s block size %u",
                           (unsigned long long)t->ne[0], qi->name, qi->block_size);
        uint64_t row, rows = n_elems / (t->ne[0] ? t->ne[0] : 1);
        if (t->ne[0] == 0)
            rows = 0;
        if (lg_qtype_row_bytes(t->type, t->ne[0], &row) != LG_OK ||
            __builtin_mul_overflow(row, rows, &t->nbytes) || t->nbytes >= GG_MAX_SIZE)
            return gg_fail(p, LG_ERR_FORMAT, at, "type", "%s tensor byte size overflows 2^62",
                           qi->name);
        /* the running total is checked too: two tensors just below 2^62 each must not wrap
         * the sum (CVE-2026-27940 bypassed a per-tensor check that way) */
        if (__builtin_add_overflow(p->total_bytes, t->nbytes, &p->total_bytes) ||
            p->total_bytes >= GG_MAX_SIZE)
            return gg_fail(p, LG_ERR_FORMAT, at, "type",
                           "tensor bytes so far sum to 2^62 or more (total overflow)");
        at = p->pos;
        if ((st = gg_u64(p, &t->offset, "offset")))
            return st;
        if (t->offset >= GG_MAX_SIZE)
            return gg_fail(p, LG_ERR_FORMAT, at, "offset", "offset %llu is not below 2^62",
                           (unsigned long long)t->offset);
    }
    p->ctx[0] = '\0';
    return LG_OK;
}

/* qsort has no context argument in C11: sort (offset, end, index) triples instead. */
struct gg_span {
    uint64_t offset, end;
    uint32_t idx;
};

static int gg_span_cmp(const void *a, const void *b)
{
    const struct gg_span *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Data section placement: every range aligned, inside the section and the file, disjoint. */
static enum lg_status gg_place_tensors(struct gg_parser *p, struct lg_gguf *g,
                                       const uint64_t *info_off)
{
    char nm[GG_NAME_SHOW + 8];
    uint64_t a = g->alignment;
    uint64_t data_off = (p->pos + a - 1) / a * a; /* pos < 2^64 - 2^20: cannot overflow */
    g->data_offset = data_off;
    uint64_t data_size = data_off <= p->size ? p->size - data_off : 0;
    uint64_t total = p->total_bytes, n_spans = 0;
    p->ctx[0] = '\0';
    struct gg_span *spans = NULL;
    if (g->n_tensors) {
        spans = gg_alloc(p->pv, g->n_tensors * sizeof *spans);
        if (!spans)
            return gg_nomem(p, "tensor spans", g->n_tensors * sizeof *spans);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct lg_gguf_tensor *t = &g->tensors[i];
        snprintf(p->ctx, sizeof p->ctx, "tensor '%s' (#%llu)",
                 gg_show(nm, t->name.ptr, t->name.len), (unsigned long long)i);
        if (t->offset % a != 0)
            return gg_fail(p, LG_ERR_FORMAT, info_off[i], "", "offset %llu is not aligned to %llu",
                           (unsigned long long)t->offset, (unsigned long long)a);
        uint64_t end;
        if (__builtin_add_overflow(t->offset, t->nbytes, &end) || end >= GG_MAX_SIZE)
            return gg_fail(p, LG_ERR_FORMAT, info_off[i], "",
                           "offset %llu + %llu bytes overflows 2^62", (unsigned long long)t->offset,
                           (unsigned long long)t->nbytes);
        if (end > data_size)
            return gg_fail(p, LG_ERR_FORMAT, info_off[i], "",
                           "data [%llu, %llu) ends past the end of the file (%llu bytes; data "
                           "section at byte %llu has %llu bytes)",
                           (unsigned long long)t->offset, (unsigned long long)end,
                           (unsigned long long)p->size, (unsigned long long)data_off,
                           (unsigned long long)data_size);
        t->data = t->nbytes ? p->base + data_off + t->offset : NULL;
        if (t->nbytes) {
            spans[n_spans].offset = t->offset;
            spans[n_spans].end = end;
            spans[n_spans].idx = (uint32_t)i;
            n_spans++;
        }
    }
    if (n_spans > 1)
        qsort(spans, (size_t)n_spans, sizeof *spans, gg_span_cmp);
    for (uint64_t k = 1; k < n_spans; k++) {
        if (spans[k].offset < spans[k - 1].end) {
            const struct lg_gguf_tensor *t = &g->tensors[spans[k].idx];
            const struct lg_gguf_tensor *u = &g->tensors[spans[k - 1].idx];
            char nm2[GG_NAME_SHOW + 8];
            snprintf(p->ctx, sizeof p->ctx, "tensor '%s' (#%u)",
                     gg_show(nm, t->name.ptr, t->name.len), spans[k].idx);
            return gg_fail(p, LG_ERR_FORMAT, info_off[spans[k].idx], "",
                           "data [%llu, %llu) overlaps tensor '%s' [%llu, %llu)",
                           (unsigned long long)spans[k].offset, (unsigned long long)spans[k].end,
                           gg_show(nm2, u->name.ptr, u->name.len),
                           (unsigned long long)spans[k - 1].offset,
                           (unsigned long long)spans[k - 1].end);
        }
    }
    p->ctx[0] = '\0';
    if (total > data_size) /* implied by the checks above; kept as the "check totals" rule */
        return gg_fail(p, LG_ERR_INTERNAL, data_off, "data section",
                       "tensors need %llu bytes, the file has %llu", (unsigned long long)total,
                       (unsigned long long)data_size);
    return LG_OK;
}

static enum lg_status gg_parse(struct gg_parser *p, struct lg_gguf *g)
{
    enum lg_status st;
    uint64_t at;
    p->ctx[0] = '\0';
    if ((st = gg_need(p, 4, "magic")))
        return st;
    if (memcmp(p->base, "GGUF", 4) != 0)
        return gg_fail(p, LG_ERR_FORMAT, 0, "magic", "not a GGUF file (magic %02x %02x %02x %02x)",
                       p->base[0], p->base[1], p->base[2], p->base[3]);
    p->pos = 4;
    if ((st = gg_u32(p, &g->version, "version")))
        return st;
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
        if (sw == 2 || sw == 3)
            return gg_fail(p, LG_ERR_UNSUPPORTED, 4, "version",
                           "big-endian GGUF (version %u byte-swapped) is not supported", sw);
        return gg_fail(p, LG_ERR_VERSION, 4, "version",
                       "version %u is not supported (only 2 and 3)", v);
    }
    at = p->pos;
    if ((st = gg_u64(p, &g->n_tensors, "n_tensors")))
        return st;
    if (g->n_tensors > GG_MAX_TENSORS)
        return gg_fail(p, LG_ERR_FORMAT, at, "n_tensors", "%llu tensors exceed the cap of %d",
                       (unsigned long long)g->n_tensors, (int)GG_MAX_TENSORS);
    uint64_t at_kv = p->pos;
    if ((st = gg_u64(p, &g->n_kv, "n_kv")))
        return st;
    if (g->n_kv > GG_MAX_KV)
        return gg_fail(p, LG_ERR_FORMAT, at_kv, "n_kv", "%llu key-value pairs exceed the cap of %d",
                       (unsigned long long)g->n_kv, (int)GG_MAX_KV);
    /* smallest kv: 8 + 1 (key) + 4 (type) + 1 (u8); smallest tensor info: 8 + 1 + 4 + 8 + 4 + 8 */
    if (g->n_kv > gg_left(p) / 14)
        return gg_fail(p, LG_ERR_FORMAT, at_kv, "n_kv",
                       "%llu key-value pairs cannot fit in the %llu bytes left",
                       (unsigned long long)g->n_kv, (unsigned long long)gg_left(p));
    if (g->n_tensors > (gg_left(p) - g->n_kv * 14) / 33)
        return gg_fail(p, LG_ERR_FORMAT, at, "n_tensors",
                       "%llu tensor infos cannot fit in the %llu bytes left",
                       (unsigned long long)g->n_tensors, (unsigned long long)gg_left(p));
    if ((st = gg_parse_kvs(p, g)))
        return st;
    if ((st = gg_alignment(p, g)))
        return st;
    uint64_t *info_off = NULL;
    if (g->n_tensors) {
        g->tensors = gg_alloc(p->pv, g->n_tensors * sizeof *g->tensors);
        info_off = gg_alloc(p->pv, g->n_tensors * sizeof *info_off);
        if (!g->tensors || !info_off)
            return gg_nomem(p, "tensor table", g->n_tensors * sizeof *g->tensors);
    }
    if ((st = gg_parse_tensor_infos(p, g, info_off)))
        return st;
    return gg_place_tensors(p, g, info_off);
}

/* ---- open / close ---- */

static enum lg_status gg_open_mem(const uint8_t *data, size_t size, void *map, struct lg_gguf **out,
                                  struct lg_err *err)
{
    *out = NULL;
    struct lg_gguf *g = calloc(1, sizeof *g);
    struct gg_priv *pv = calloc(1, sizeof *pv);
    if (!g || !pv) {
        free(g);
        free(pv);
        return lg_err_set(err, LG_ERR_NOMEM, "gguf: out of memory");
    }
    g->priv = pv;
    g->base = data;
    g->size = size;
    pv->map = map;
    pv->map_size = size;
    pv->alloc_budget = (uint64_t)size + GG_ALLOC_SLACK;
    pv->seed = gg_seed();
    struct gg_parser p = {.base = data, .size = size, .pos = 0, .err = err, .pv = pv};
    enum lg_status st = gg_parse(&p, g);
    if (st != LG_OK) {
        lg_gguf_close(g);
        return st;
    }
    *out = g;
    return LG_OK;
}

enum lg_status lg_gguf_open_buffer(const void *data, size_t size, struct lg_gguf **out,
                                   struct lg_err *err)
{
    if (!out)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "gguf: NULL out");
    *out = NULL;
    if (!data && size)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "gguf: NULL buffer");
    static const uint8_t empty[1];
    return gg_open_mem(data ? data : empty, size, NULL, out, err);
}

enum lg_status lg_gguf_open(const char *path, struct lg_gguf **out, struct lg_err *err)
{
    if (!out || !path)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "gguf: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lg_err_set(err, errno == ENOENT ? LG_ERR_NOT_FOUND : LG_ERR_IO,
                          "gguf: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lg_err_set(err, LG_ERR_IO, "gguf: cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lg_err_set(err, LG_ERR_IO, "gguf: %s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return lg_err_set(err, LG_ERR_FORMAT, "gguf: magic at byte 0: %s is empty", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return lg_err_set(err, LG_ERR_IO, "gguf: cannot map %s: %s", path, strerror(e));
    enum lg_status rc = gg_open_mem(map, size, map, out, err);
    /* on failure gg_open_mem closed g, which unmapped map */
    return rc;
}

void lg_gguf_close(struct lg_gguf *g)
{
    if (!g)
        return;
    struct gg_priv *pv = g->priv;
    if (pv) {
        if (pv->map)
            munmap(pv->map, pv->map_size);
        gg_arena_free(pv);
        free(pv);
    }
    free(g);
}

bool lg_gguf_is_mapped(const struct lg_gguf *g, const void *p, size_t n)
{
    if (!g || !g->priv || !p)
        return false;
    const struct gg_priv *pv = g->priv;
    if (!pv->map)
        return false;
    const uintptr_t lo = (uintptr_t)pv->map, a = (uintptr_t)p;
    if (a < lo || a - lo >= pv->map_size)
        return false;
    return n <= pv->map_size - (a - lo); /* no a + n: it could wrap */
}

/* ---- lookups and getters ---- */

const struct lg_gguf_kv *lg_gguf_find_kv(const struct lg_gguf *g, const char *key)
{
    if (!g || !key || !g->priv)
        return NULL;
    const struct gg_priv *pv = g->priv;
    if (!pv->kv_index)
        return NULL;
    uint32_t *slot =
        gg_index_slot(pv->kv_index, pv->kv_mask, pv->seed, key, strlen(key), gg_kv_name, g->kv);
    return *slot ? &g->kv[*slot - 1] : NULL;
}

const struct lg_gguf_tensor *lg_gguf_find_tensor(const struct lg_gguf *g, const char *name)
{
    if (!g || !name || !g->priv)
        return NULL;
    const struct gg_priv *pv = g->priv;
    if (!pv->t_index)
        return NULL;
    uint32_t *slot = gg_index_slot(pv->t_index, pv->t_mask, pv->seed, name, strlen(name),
                                   gg_tensor_name, g->tensors);
    return *slot ? &g->tensors[*slot - 1] : NULL;
}

static enum lg_status gg_lookup(const struct lg_gguf *g, const char *key,
                                const struct lg_gguf_kv **kv, struct lg_err *err)
{
    *kv = lg_gguf_find_kv(g, key);
    if (!*kv)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "gguf: key '%s' not found", key ? key : "");
    return LG_OK;
}

static enum lg_status gg_wrong_type(const struct lg_gguf_kv *kv, const char *key, const char *want,
                                    struct lg_err *err)
{
    return lg_err_set(err, LG_ERR_FORMAT, "gguf: key '%s' at byte %llu: type is %s, expected %s",
                      key, (unsigned long long)kv->offset, lg_gguf_type_name(kv->val.type), want);
}

static bool gg_is_uint(enum lg_gguf_type t)
{
    return t == LG_GGUF_TYPE_UINT8 || t == LG_GGUF_TYPE_UINT16 || t == LG_GGUF_TYPE_UINT32 ||
           t == LG_GGUF_TYPE_UINT64;
}

static bool gg_is_sint(enum lg_gguf_type t)
{
    return t == LG_GGUF_TYPE_INT8 || t == LG_GGUF_TYPE_INT16 || t == LG_GGUF_TYPE_INT32 ||
           t == LG_GGUF_TYPE_INT64;
}

enum lg_status lg_gguf_get_u32(const struct lg_gguf *g, const char *key, uint32_t *out,
                               struct lg_err *err)
{
    const struct lg_gguf_kv *kv;
    enum lg_status st = gg_lookup(g, key, &kv, err);
    if (st)
        return st;
    enum lg_gguf_type t = kv->val.type;
    if (gg_is_uint(t) && kv->val.v.u64 <= UINT32_MAX) {
        *out = (uint32_t)kv->val.v.u64;
        return LG_OK;
    }
    if (gg_is_sint(t) && kv->val.v.i64 >= 0 && kv->val.v.i64 <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)kv->val.v.i64;
        return LG_OK;
    }
    if (gg_is_uint(t) || gg_is_sint(t))
        return lg_err_set(
            err, LG_ERR_FORMAT,
            "gguf: key '%s' at byte %llu: value %s%llu does "
            "not fit in u32",
            key, (unsigned long long)kv->offset, gg_is_sint(t) && kv->val.v.i64 < 0 ? "-" : "",
            gg_is_sint(t) && kv->val.v.i64 < 0 ? (unsigned long long)(-(kv->val.v.i64 + 1)) + 1
                                               : (unsigned long long)kv->val.v.u64);
    return gg_wrong_type(kv, key, "an integer", err);
}

enum lg_status lg_gguf_get_i64(const struct lg_gguf *g, const char *key, int64_t *out,
                               struct lg_err *err)
{
    const struct lg_gguf_kv *kv;
    enum lg_status st = gg_lookup(g, key, &kv, err);
    if (st)
        return st;
    enum lg_gguf_type t = kv->val.type;
    if (gg_is_sint(t)) {
        *out = kv->val.v.i64;
        return LG_OK;
    }
    if (gg_is_uint(t)) {
        if (kv->val.v.u64 > (uint64_t)INT64_MAX)
            return lg_err_set(err, LG_ERR_FORMAT,
                              "gguf: key '%s' at byte %llu: value %llu does not fit in i64", key,
                              (unsigned long long)kv->offset, (unsigned long long)kv->val.v.u64);
        *out = (int64_t)kv->val.v.u64;
        return LG_OK;
    }
    return gg_wrong_type(kv, key, "an integer", err);
}

enum lg_status lg_gguf_get_f32(const struct lg_gguf *g, const char *key, float *out,
                               struct lg_err *err)
{
    const struct lg_gguf_kv *kv;
    enum lg_status st = gg_lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->val.type != LG_GGUF_TYPE_FLOAT32 && kv->val.type != LG_GGUF_TYPE_FLOAT64)
        return gg_wrong_type(kv, key, "f32 or f64", err);
    *out = (float)kv->val.v.f64;
    return LG_OK;
}

enum lg_status lg_gguf_get_bool(const struct lg_gguf *g, const char *key, bool *out,
                                struct lg_err *err)
{
    const struct lg_gguf_kv *kv;
    enum lg_status st = gg_lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->val.type != LG_GGUF_TYPE_BOOL)
        return gg_wrong_type(kv, key, "bool", err);
    *out = kv->val.v.u64 != 0;
    return LG_OK;
}

enum lg_status lg_gguf_get_str(const struct lg_gguf *g, const char *key, struct lg_str *out,
                               struct lg_err *err)
{
    const struct lg_gguf_kv *kv;
    enum lg_status st = gg_lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->val.type != LG_GGUF_TYPE_STRING)
        return gg_wrong_type(kv, key, "string", err);
    *out = kv->val.v.str;
    return LG_OK;
}

enum lg_status lg_gguf_get_arr(const struct lg_gguf *g, const char *key,
                               enum lg_gguf_type elem_type, const struct lg_gguf_value **out,
                               struct lg_err *err)
{
    const struct lg_gguf_kv *kv;
    enum lg_status st = gg_lookup(g, key, &kv, err);
    if (st)
        return st;
    if (kv->val.type != LG_GGUF_TYPE_ARRAY)
        return gg_wrong_type(kv, key, "array", err);
    if (kv->val.v.arr.elem_type != elem_type)
        return lg_err_set(err, LG_ERR_FORMAT,
                          "gguf: key '%s' at byte %llu: array of %s, expected array of %s", key,
                          (unsigned long long)kv->offset,
                          lg_gguf_type_name(kv->val.v.arr.elem_type), lg_gguf_type_name(elem_type));
    *out = &kv->val;
    return LG_OK;
}

int64_t lg_gguf_arr_i64(const struct lg_gguf_value *arr, uint64_t i)
{
    if (!arr || arr->type != LG_GGUF_TYPE_ARRAY || i >= arr->v.arr.n)
        return 0;
    enum lg_gguf_type t = arr->v.arr.elem_type;
    size_t sz = lg_gguf_type_size(t);
    if (sz == 0)
        return 0;
    struct lg_gguf_value v;
    gg_decode_scalar(t, arr->v.arr.data + i * sz, &v);
    if (gg_is_sint(t))
        return v.v.i64;
    if (t == LG_GGUF_TYPE_FLOAT32 || t == LG_GGUF_TYPE_FLOAT64)
        return (v.v.f64 >= -9.2e18 && v.v.f64 <= 9.2e18) ? (int64_t)v.v.f64 : 0;
    return (int64_t)v.v.u64;
}

double lg_gguf_arr_f64(const struct lg_gguf_value *arr, uint64_t i)
{
    if (!arr || arr->type != LG_GGUF_TYPE_ARRAY || i >= arr->v.arr.n)
        return 0;
    enum lg_gguf_type t = arr->v.arr.elem_type;
    size_t sz = lg_gguf_type_size(t);
    if (sz == 0)
        return 0;
    struct lg_gguf_value v;
    gg_decode_scalar(t, arr->v.arr.data + i * sz, &v);
    if (gg_is_sint(t))
        return (double)v.v.i64;
    if (t == LG_GGUF_TYPE_FLOAT32 || t == LG_GGUF_TYPE_FLOAT64)
        return v.v.f64;
    return (double)v.v.u64;
}
