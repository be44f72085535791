/* test_cov_gguf.c: GGUF reader and writer paths that test_gguf.c and the malformed corpus
 * leave unexercised (hardening goal G22: branch coverage of src/gguf; `make coverage`).
 *
 *  - typed getters over every scalar type (widening, "does not fit", negative values in the
 *    message, wrong type), array element access over every element type, out-of-range
 *    indexes, NULL arguments; type and file-type names out of range;
 *  - lg_gguf_writer_copy_kv of every value type, nested arrays included, through a write and
 *    a re-open that must give back the same values;
 *  - crafted files: big-endian (v2 and v3), zero-size tensors, overlapping spans with equal
 *    offsets and equal ends, a name that needs quoting, the nested-array element cap;
 *  - writer edges: bad arguments, size overflows, a general.alignment of the wrong type,
 *    write(2) failing (RLIMIT_FSIZE) in the header, the padding and the data, a rename onto
 *    a directory, a fill callback failing with and without a message;
 *  - allocation failure (not under ASan, which owns malloc): a countdown allocator fails the
 *    Nth allocation call for N = 1, 2 ... over write + open + read + copy; each run must end
 *    in LG_OK or LG_ERR_NOMEM with a message, and leave no block allocated.
 * Every file is made here, in a private temporary directory. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"

#include "alloc_countdown.h"

/* ---- a little-endian byte builder for hand-made files ------------------------------------ */

struct bb {
    uint8_t *p;
    size_t n, cap;
};

static void bb_put(struct bb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            fprintf(stderr, "test_cov_gguf: out of memory\n");
            exit(2);
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bb_le(struct bb *b, uint64_t v, unsigned n)
{
    uint8_t t[8];
    for (unsigned i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, t, n);
}

static void bb_zeros(struct bb *b, size_t n)
{
    while (n--)
        bb_le(b, 0, 1);
}

static void bb_str(struct bb *b, const char *s)
{
    bb_le(b, strlen(s), 8);
    bb_put(b, s, strlen(s));
}

static void bb_key(struct bb *b, const char *key, enum lg_gguf_type t)
{
    bb_str(b, key);
    bb_le(b, (uint64_t)t, 4);
}

/* key: an array of two integer-coded elements of type elt, each `width` bytes little-endian */
static void bb_arr2(struct bb *b, const char *key, enum lg_gguf_type elt, uint64_t v0,
                    uint64_t v1, unsigned width)
{
    bb_key(b, key, LG_GGUF_TYPE_ARRAY);
    bb_le(b, elt, 4);
    bb_le(b, 2, 8);
    bb_le(b, v0, width);
    bb_le(b, v1, width);
}

static void bb_pad(struct bb *b, size_t a)
{
    while (b->n % a)
        bb_le(b, 0, 1);
}

static void bb_header(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_le(b, version, 4);
    bb_le(b, n_tensors, 8);
    bb_le(b, n_kv, 8);
}

static void bb_tensor(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    bb_str(b, name);
    bb_le(b, n_dims, 4);
    for (uint32_t d = 0; d < n_dims; d++)
        bb_le(b, ne[d], 8);
    bb_le(b, type, 4);
    bb_le(b, offset, 8);
}

static char g_dir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static bool has(const char *msg, const char *needle)
{
    return msg && strstr(msg, needle) != NULL;
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_names(void)
{
    CHECK_EQ_STR(lg_gguf_type_name((enum lg_gguf_type)99), "unknown");
    CHECK_EQ_INT(lg_gguf_type_size((enum lg_gguf_type)99), 0);
    CHECK_EQ_INT(lg_gguf_type_size(LG_GGUF_TYPE_STRING), 0);
    CHECK_EQ_INT(lg_gguf_type_size(LG_GGUF_TYPE_FLOAT64), 8);
    CHECK_EQ_STR(lg_gguf_file_type_name(15), "MOSTLY_Q4_K_M");
    CHECK_EQ_STR(lg_gguf_file_type_name(1024), "GUESSED");
    CHECK(lg_gguf_file_type_name(4) == NULL);    /* a hole: removed upstream */
    CHECK(lg_gguf_file_type_name(1023) == NULL); /* past the table, not GUESSED */
    CHECK(lg_gguf_file_type_name(39) == NULL);
    struct lg_str s = {"abc", 3}, e = {NULL, 0};
    CHECK(lg_str_eq(s, "abc"));
    CHECK(!lg_str_eq(s, "abd"));
    CHECK(!lg_str_eq(s, "ab"));
    CHECK(lg_str_eq(e, ""));
}

/* ---- every value type: getters, array access, copy_kv round trip -------------------------- */

/* A file with one key per scalar type, one array per element type and a nested array. */
static void build_all_types(struct bb *b)
{
    bb_header(b, 3, 0, 29);
    bb_key(b, "u8", LG_GGUF_TYPE_UINT8);
    bb_le(b, 200, 1);
    bb_key(b, "i8", LG_GGUF_TYPE_INT8);
    bb_le(b, (uint8_t)-5, 1);
    bb_key(b, "i8p", LG_GGUF_TYPE_INT8);
    bb_le(b, 5, 1);
    bb_key(b, "u16", LG_GGUF_TYPE_UINT16);
    bb_le(b, 65535, 2);
    bb_key(b, "i16", LG_GGUF_TYPE_INT16);
    bb_le(b, (uint16_t)-300, 2);
    bb_key(b, "u32", LG_GGUF_TYPE_UINT32);
    bb_le(b, 4000000000u, 4);
    bb_key(b, "i32", LG_GGUF_TYPE_INT32);
    bb_le(b, (uint32_t)-7, 4);
    bb_key(b, "u64", LG_GGUF_TYPE_UINT64);
    bb_le(b, (uint64_t)1 << 40, 8);
    bb_key(b, "u64huge", LG_GGUF_TYPE_UINT64);
    bb_le(b, ((uint64_t)1 << 63) + 1, 8);
    bb_key(b, "u64small", LG_GGUF_TYPE_UINT64);
    bb_le(b, 77, 8);
    bb_key(b, "i64", LG_GGUF_TYPE_INT64);
    bb_le(b, (uint64_t)INT64_MIN, 8);
    bb_key(b, "i64big", LG_GGUF_TYPE_INT64);
    bb_le(b, (uint64_t)1 << 33, 8);
    float f = 0.25f;
    uint32_t fu;
    memcpy(&fu, &f, 4);
    bb_key(b, "f32", LG_GGUF_TYPE_FLOAT32);
    bb_le(b, fu, 4);
    double d = -0.5;
    uint64_t du;
    memcpy(&du, &d, 8);
    bb_key(b, "f64", LG_GGUF_TYPE_FLOAT64);
    bb_le(b, du, 8);
    bb_key(b, "bool", LG_GGUF_TYPE_BOOL);
    bb_le(b, 1, 1);
    bb_key(b, "str", LG_GGUF_TYPE_STRING);
    bb_str(b, "h\xc3\xa9llo");
    /* arrays: one per scalar element type, two elements each */
    bb_arr2(b, "a.u8", LG_GGUF_TYPE_UINT8, 1, 255, 1);
    bb_arr2(b, "a.i8", LG_GGUF_TYPE_INT8, (uint8_t)-1, 127, 1);
    bb_arr2(b, "a.u16", LG_GGUF_TYPE_UINT16, 65535, 2, 2);
    bb_arr2(b, "a.i16", LG_GGUF_TYPE_INT16, (uint16_t)-2, 3, 2);
    bb_arr2(b, "a.u32", LG_GGUF_TYPE_UINT32, 4000000000u, 4, 4);
    bb_arr2(b, "a.i32", LG_GGUF_TYPE_INT32, (uint32_t)-4, 5, 4);
    bb_arr2(b, "a.u64", LG_GGUF_TYPE_UINT64, UINT64_MAX, 6, 8);
    bb_arr2(b, "a.i64", LG_GGUF_TYPE_INT64, (uint64_t)-6, 7, 8);
    bb_key(b, "a.f32", LG_GGUF_TYPE_ARRAY);
    bb_le(b, LG_GGUF_TYPE_FLOAT32, 4);
    bb_le(b, 2, 8);
    f = 1.75f;
    memcpy(&fu, &f, 4);
    bb_le(b, fu, 4);
    f = 1e30f; /* outside int64: arr_i64 gives 0 */
    memcpy(&fu, &f, 4);
    bb_le(b, fu, 4);
    bb_key(b, "a.f64", LG_GGUF_TYPE_ARRAY);
    bb_le(b, LG_GGUF_TYPE_FLOAT64, 4);
    bb_le(b, 2, 8);
    d = -2.5;
    memcpy(&du, &d, 8);
    bb_le(b, du, 8);
    d = -1e19;
    memcpy(&du, &d, 8);
    bb_le(b, du, 8);
    bb_arr2(b, "a.bool", LG_GGUF_TYPE_BOOL, 1, 0, 1);
    bb_key(b, "a.str", LG_GGUF_TYPE_ARRAY);
    bb_le(b, LG_GGUF_TYPE_STRING, 4);
    bb_le(b, 2, 8);
    bb_str(b, "x");
    bb_str(b, "");
    /* [[1, 2], [["s"]]] would need one element type per array: [[u16 1, 2], []] of arrays,
     * then an array of arrays of strings */
    bb_key(b, "a.nested", LG_GGUF_TYPE_ARRAY);
    bb_le(b, LG_GGUF_TYPE_ARRAY, 4);
    bb_le(b, 2, 8);
    bb_le(b, LG_GGUF_TYPE_UINT16, 4);
    bb_le(b, 2, 8);
    bb_le(b, 1, 2);
    bb_le(b, 2, 2);
    bb_le(b, LG_GGUF_TYPE_ARRAY, 4);
    bb_le(b, 1, 8);
    bb_le(b, LG_GGUF_TYPE_STRING, 4);
    bb_le(b, 1, 8);
    bb_str(b, "s");
    bb_key(b, "a.empty", LG_GGUF_TYPE_ARRAY);
    bb_le(b, LG_GGUF_TYPE_UINT32, 4);
    bb_le(b, 0, 8);
}

static bool same_str(struct lg_str a, struct lg_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0);
}

static bool same_value(const struct lg_gguf_value *a, const struct lg_gguf_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case LG_GGUF_TYPE_STRING:
        return same_str(a->v.str, b->v.str);
    case LG_GGUF_TYPE_FLOAT32:
    case LG_GGUF_TYPE_FLOAT64:
        return a->v.f64 == b->v.f64;
    case LG_GGUF_TYPE_ARRAY: {
        enum lg_gguf_type et = a->v.arr.elem_type;
        if (et != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n)
            return false;
        for (uint64_t i = 0; i < a->v.arr.n; i++) {
            if (et == LG_GGUF_TYPE_STRING) {
                if (!same_str(a->v.arr.strs[i], b->v.arr.strs[i]))
                    return false;
            } else if (et == LG_GGUF_TYPE_ARRAY) {
                if (!same_value(&a->v.arr.arrs[i], &b->v.arr.arrs[i]))
                    return false;
            }
        }
        size_t sz = lg_gguf_type_size(et);
        return sz == 0 || a->v.arr.n == 0 ||
               memcmp(a->v.arr.data, b->v.arr.data, (size_t)a->v.arr.n * sz) == 0;
    }
    default:
        return a->v.u64 == b->v.u64;
    }
}

static void test_getters(void)
{
    struct bb b = {0};
    build_all_types(&b);
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    enum lg_status st = lg_gguf_open_buffer(b.p, b.n, &g, &err);
    CHECK_MSG(st == LG_OK, "%s", err.msg);
    if (st != LG_OK) {
        free(b.p);
        return;
    }
    CHECK_EQ_INT(g->n_kv, 29);

    uint32_t u = 0;
    CHECK(lg_gguf_get_u32(g, "u8", &u, &err) == LG_OK && u == 200);
    CHECK(lg_gguf_get_u32(g, "u16", &u, &err) == LG_OK && u == 65535);
    CHECK(lg_gguf_get_u32(g, "u32", &u, &err) == LG_OK && u == 4000000000u);
    CHECK(lg_gguf_get_u32(g, "i8p", &u, &err) == LG_OK && u == 5);
    CHECK(lg_gguf_get_u32(g, "u64small", &u, &err) == LG_OK && u == 77);
    CHECK(lg_gguf_get_u32(g, "i8", &u, &err) == LG_ERR_FORMAT && has(err.msg, "value -5 does "));
    CHECK(lg_gguf_get_u32(g, "i32", &u, &err) == LG_ERR_FORMAT && has(err.msg, "value -7 "));
    CHECK(lg_gguf_get_u32(g, "i64", &u, &err) == LG_ERR_FORMAT &&
          has(err.msg, "value -9223372036854775808 does not fit in u32"));
    CHECK(lg_gguf_get_u32(g, "i64big", &u, &err) == LG_ERR_FORMAT &&
          has(err.msg, "value 8589934592 "));
    CHECK(lg_gguf_get_u32(g, "u64", &u, &err) == LG_ERR_FORMAT && has(err.msg, "1099511627776"));
    CHECK(lg_gguf_get_u32(g, "f32", &u, &err) == LG_ERR_FORMAT &&
          has(err.msg, "type is f32, expected an integer"));
    CHECK(lg_gguf_get_u32(g, "nope", &u, &err) == LG_ERR_NOT_FOUND && has(err.msg, "'nope'"));
    CHECK(lg_gguf_get_u32(g, NULL, &u, &err) == LG_ERR_NOT_FOUND);

    int64_t i = 0;
    CHECK(lg_gguf_get_i64(g, "i16", &i, &err) == LG_OK && i == -300);
    CHECK(lg_gguf_get_i64(g, "i64", &i, &err) == LG_OK && i == INT64_MIN);
    CHECK(lg_gguf_get_i64(g, "u64", &i, &err) == LG_OK && i == (int64_t)1 << 40);
    CHECK(lg_gguf_get_i64(g, "u64huge", &i, &err) == LG_ERR_FORMAT &&
          has(err.msg, "9223372036854775809 does not fit in i64"));
    CHECK(lg_gguf_get_i64(g, "str", &i, &err) == LG_ERR_FORMAT && has(err.msg, "type is string"));
    CHECK(lg_gguf_get_i64(g, "nope", &i, &err) == LG_ERR_NOT_FOUND);

    float f = 0;
    CHECK(lg_gguf_get_f32(g, "f32", &f, &err) == LG_OK && f == 0.25f);
    CHECK(lg_gguf_get_f32(g, "f64", &f, &err) == LG_OK && f == -0.5f);
    CHECK(lg_gguf_get_f32(g, "u8", &f, &err) == LG_ERR_FORMAT && has(err.msg, "expected f32 or f64"));
    CHECK(lg_gguf_get_f32(g, "nope", &f, &err) == LG_ERR_NOT_FOUND);
    bool bv = false;
    CHECK(lg_gguf_get_bool(g, "bool", &bv, &err) == LG_OK && bv);
    CHECK(lg_gguf_get_bool(g, "u8", &bv, &err) == LG_ERR_FORMAT && has(err.msg, "expected bool"));
    CHECK(lg_gguf_get_bool(g, "nope", &bv, &err) == LG_ERR_NOT_FOUND);
    struct lg_str s = {0};
    CHECK(lg_gguf_get_str(g, "str", &s, &err) == LG_OK && lg_str_eq(s, "h\xc3\xa9llo"));
    CHECK(lg_gguf_get_str(g, "bool", &s, &err) == LG_ERR_FORMAT && has(err.msg, "type is bool"));
    CHECK(lg_gguf_get_str(g, "nope", &s, &err) == LG_ERR_NOT_FOUND);

    const struct lg_gguf_value *a = NULL;
    CHECK(lg_gguf_get_arr(g, "u8", LG_GGUF_TYPE_UINT8, &a, &err) == LG_ERR_FORMAT &&
          has(err.msg, "expected array"));
    CHECK(lg_gguf_get_arr(g, "a.i16", LG_GGUF_TYPE_UINT8, &a, &err) == LG_ERR_FORMAT &&
          has(err.msg, "array of i16, expected array of u8"));
    CHECK(lg_gguf_get_arr(g, "nope", LG_GGUF_TYPE_UINT8, &a, &err) == LG_ERR_NOT_FOUND);

    /* element access: {key, i64 of [0], [1]; f64 of [0], [1]} */
    static const struct {
        const char *key;
        int64_t i0, i1;
        double f0, f1;
    } want[] = {
        {"a.u8", 1, 255, 1, 255},
        {"a.i8", -1, 127, -1, 127},
        {"a.u16", 65535, 2, 65535, 2},
        {"a.i16", -2, 3, -2, 3},
        {"a.u32", 4000000000ll, 4, 4e9, 4},
        {"a.i32", -4, 5, -4, 5},
        {"a.u64", -1, 6, 18446744073709551615.0, 6}, /* > INT64_MAX: two's complement */
        {"a.i64", -6, 7, -6, 7},
        {"a.f32", 1, 0, 1.75, 1e30f},                /* 1e30 is outside int64: 0 */
        {"a.f64", -2, 0, -2.5, -1e19},
        {"a.bool", 1, 0, 1, 0},
        {"a.str", 0, 0, 0, 0},                       /* not scalars: 0 */
        {"a.nested", 0, 0, 0, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const struct lg_gguf_kv *kv = lg_gguf_find_kv(g, want[k].key);
        CHECK_MSG(kv && kv->val.type == LG_GGUF_TYPE_ARRAY, "%s", want[k].key);
        if (!kv)
            continue;
        const struct lg_gguf_value *v = &kv->val;
        CHECK_MSG(lg_gguf_arr_i64(v, 0) == want[k].i0, "%s[0]: %lld", want[k].key,
                  (long long)lg_gguf_arr_i64(v, 0));
        CHECK_MSG(lg_gguf_arr_i64(v, 1) == want[k].i1, "%s[1]: %lld", want[k].key,
                  (long long)lg_gguf_arr_i64(v, 1));
        CHECK_MSG(lg_gguf_arr_f64(v, 0) == want[k].f0, "%s[0]: %g", want[k].key,
                  lg_gguf_arr_f64(v, 0));
        CHECK_MSG(lg_gguf_arr_f64(v, 1) == want[k].f1, "%s[1]: %g", want[k].key,
                  lg_gguf_arr_f64(v, 1));
        CHECK(lg_gguf_arr_i64(v, 2) == 0 && lg_gguf_arr_f64(v, 2) == 0); /* past the end */
    }
    const struct lg_gguf_kv *scalar = lg_gguf_find_kv(g, "u8");
    CHECK(scalar && lg_gguf_arr_i64(&scalar->val, 0) == 0 && lg_gguf_arr_f64(&scalar->val, 0) == 0);
    CHECK(lg_gguf_arr_i64(NULL, 0) == 0 && lg_gguf_arr_f64(NULL, 0) == 0);
    const struct lg_gguf_kv *nest = lg_gguf_find_kv(g, "a.nested");
    if (nest) {
        const struct lg_gguf_value *inner = &nest->val.v.arr.arrs[0];
        CHECK(inner->v.arr.elem_type == LG_GGUF_TYPE_UINT16 && lg_gguf_arr_i64(inner, 1) == 2);
        const struct lg_gguf_value *deep = &nest->val.v.arr.arrs[1].v.arr.arrs[0];
        CHECK(deep->v.arr.elem_type == LG_GGUF_TYPE_STRING && deep->v.arr.n == 1 &&
              lg_str_eq(deep->v.arr.strs[0], "s"));
    }

    /* lookups with bad arguments; no tensors at all */
    CHECK(lg_gguf_find_kv(NULL, "u8") == NULL);
    CHECK(lg_gguf_find_kv(g, NULL) == NULL);
    CHECK(lg_gguf_find_tensor(NULL, "t") == NULL);
    CHECK(lg_gguf_find_tensor(g, NULL) == NULL);
    CHECK(lg_gguf_find_tensor(g, "t") == NULL);
    CHECK(!lg_gguf_is_mapped(g, b.p, 1)); /* a borrowed buffer is not a file mapping */

    /* copy every pair into a writer, write, re-open: the same values come back */
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    CHECK(w != NULL);
    for (uint64_t k = 0; w && k < g->n_kv; k++)
        CHECK_MSG(lg_gguf_writer_copy_kv(w, &g->kv[k]) == LG_OK, "copy %.*s",
                  (int)g->kv[k].key.len, g->kv[k].key.ptr);
    const char *path = tmp_path("all_types.gguf");
    st = w ? lg_gguf_writer_write(w, path, NULL, NULL, &err) : LG_ERR_NOMEM;
    CHECK_MSG(st == LG_OK, "%s", err.msg);
    struct lg_gguf *g2 = NULL;
    if (st == LG_OK) {
        st = lg_gguf_open(path, &g2, &err);
        CHECK_MSG(st == LG_OK, "%s", err.msg);
    }
    if (g2) {
        CHECK_EQ_INT(g2->n_kv, g->n_kv);
        for (uint64_t k = 0; k < g->n_kv && k < g2->n_kv; k++)
            CHECK_MSG(same_str(g->kv[k].key, g2->kv[k].key) &&
                          same_value(&g->kv[k].val, &g2->kv[k].val),
                      "kv %llu (%.*s) differs after copy", (unsigned long long)k,
                      (int)g->kv[k].key.len, g->kv[k].key.ptr);
        const struct lg_gguf_kv *kv = lg_gguf_find_kv(g2, "u8");
        CHECK(kv && lg_gguf_is_mapped(g2, kv->key.ptr, (size_t)kv->key.len));
        CHECK(!lg_gguf_is_mapped(g2, b.p, 1));
        CHECK(!lg_gguf_is_mapped(g2, g2->base, (size_t)g2->size + 1));
        CHECK(!lg_gguf_is_mapped(g2, NULL, 1));
        CHECK(!lg_gguf_is_mapped(NULL, g2->base, 1));
    }
    lg_gguf_close(g2);

    /* copy_kv refuses what it cannot write */
    struct lg_gguf_kv bad = g->kv[0];
    CHECK(lg_gguf_writer_copy_kv(NULL, &bad) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_copy_kv(w, NULL) == LG_ERR_INVALID_ARG);
    bad.key.len = 0;
    CHECK(lg_gguf_writer_copy_kv(w, &bad) == LG_ERR_INVALID_ARG);
    bad = g->kv[0];
    bad.key.len = 64 * 1024 + 1;
    CHECK(lg_gguf_writer_copy_kv(w, &bad) == LG_ERR_INVALID_ARG);
    bad = g->kv[0];
    bad.val.type = LG_GGUF_TYPE_COUNT;
    CHECK(lg_gguf_writer_copy_kv(w, &bad) == LG_ERR_INVALID_ARG);
    lg_gguf_writer_destroy(w);
    lg_gguf_close(g);
    free(b.p);
}

/* ---- crafted files ------------------------------------------------------------------------ */

static enum lg_status open_bb(const struct bb *b, struct lg_err *err)
{
    struct lg_gguf *g = NULL;
    enum lg_status st = lg_gguf_open_buffer(b->p, b->n, &g, err);
    CHECK(st == LG_OK ? g != NULL : g == NULL);
    lg_gguf_close(g);
    return st;
}

static void test_crafted(void)
{
    struct lg_err err = {0};
    /* big-endian files: both supported versions byte-swapped */
    for (uint32_t v = 2; v <= 3; v++) {
        struct bb b = {0};
        bb_put(&b, "GGUF", 4);
        bb_le(&b, (uint64_t)v << 24, 4);
        bb_zeros(&b, 16);
        CHECK_MSG(open_bb(&b, &err) == LG_ERR_UNSUPPORTED && has(err.msg, "big-endian"), "v%u: %s",
                  v, err.msg);
        free(b.p);
    }
    {
        struct bb b = {0};
        bb_header(&b, 4, 0, 0);
        CHECK(open_bb(&b, &err) == LG_ERR_VERSION && has(err.msg, "version 4"));
        free(b.p);
    }

    /* zero-size tensors (ne[0] = 0, and an inner 0) take no data and have data NULL */
    {
        struct bb b = {0};
        bb_header(&b, 3, 3, 0);
        uint64_t ne0[2] = {0, 3}, ne1[2] = {32, 0}, ne2[1] = {4};
        bb_tensor(&b, "empty_rows", 2, ne0, LG_QTYPE_Q8_0, 0);
        bb_tensor(&b, "empty_cols", 2, ne1, LG_QTYPE_F32, 0);
        bb_tensor(&b, "four", 1, ne2, LG_QTYPE_F32, 0);
        bb_pad(&b, 32);
        bb_zeros(&b, 16);
        struct lg_gguf *g = NULL;
        enum lg_status st = lg_gguf_open_buffer(b.p, b.n, &g, &err);
        CHECK_MSG(st == LG_OK, "%s", err.msg);
        if (g) {
            const struct lg_gguf_tensor *t0 = lg_gguf_find_tensor(g, "empty_rows");
            const struct lg_gguf_tensor *t1 = lg_gguf_find_tensor(g, "empty_cols");
            const struct lg_gguf_tensor *t2 = lg_gguf_find_tensor(g, "four");
            CHECK(t0 && t0->nbytes == 0 && t0->data == NULL);
            CHECK(t1 && t1->nbytes == 0 && t1->data == NULL);
            CHECK(t2 && t2->nbytes == 16 && t2->data == g->base + g->data_offset);
        }
        lg_gguf_close(g);
        free(b.p);
    }

    /* overlapping spans: equal offsets with different ends, and two identical spans */
    for (int same_end = 0; same_end <= 1; same_end++) {
        struct bb b = {0};
        bb_header(&b, 3, 3, 0);
        uint64_t ne_a[1] = {8}, ne_b[1] = {same_end ? 8 : 16}, ne_c[1] = {8};
        bb_tensor(&b, "a", 1, ne_a, LG_QTYPE_F32, 64);
        bb_tensor(&b, "b", 1, ne_b, LG_QTYPE_F32, 64);
        bb_tensor(&b, "c", 1, ne_c, LG_QTYPE_F32, 0);
        bb_pad(&b, 32);
        bb_zeros(&b, 128);
        CHECK_MSG(open_bb(&b, &err) == LG_ERR_FORMAT && has(err.msg, "overlaps tensor"), "%s",
                  err.msg);
        free(b.p);
    }

    /* a name with a quote, a control byte and more than 48 bytes is shown sanitised */
    {
        char name[80];
        memset(name, 'n', sizeof name - 1);
        name[sizeof name - 1] = '\0';
        name[2] = '\'';
        name[3] = '\x01';
        struct bb b = {0};
        bb_header(&b, 3, 1, 0);
        uint64_t ne[1] = {4};
        bb_tensor(&b, name, 1, ne, LG_QTYPE_F32, 3); /* misaligned */
        bb_pad(&b, 32);
        bb_zeros(&b, 16);
        CHECK_MSG(open_bb(&b, &err) == LG_ERR_FORMAT && has(err.msg, "tensor 'nn??nnn") &&
                      has(err.msg, "n...'") && has(err.msg, "not aligned"),
                  "%s", err.msg);
        free(b.p);
    }

    /* nested arrays: 2^20 + 1 inner arrays in one file exceed the total element cap */
    {
        struct bb b = {0};
        uint64_t n = (uint64_t)LG_GGUF_MAX_NESTED_ELEMS + 1;
        bb_header(&b, 3, 0, 1);
        bb_key(&b, "deep", LG_GGUF_TYPE_ARRAY);
        bb_le(&b, LG_GGUF_TYPE_ARRAY, 4);
        bb_le(&b, n, 8);
        uint8_t empty[12] = {LG_GGUF_TYPE_UINT8};
        for (uint64_t k = 0; k < n; k++)
            bb_put(&b, empty, sizeof empty);
        CHECK_MSG(open_bb(&b, &err) == LG_ERR_FORMAT && has(err.msg, "nested arrays hold more"),
                  "%s", err.msg);
        /* exactly the cap passes the element check, and then the allocation budget (file
         * size + 16 MiB) refuses the 2^20 parsed values: out of memory, not malformed */
        b.n = 0;
        bb_header(&b, 3, 0, 1);
        bb_key(&b, "deep", LG_GGUF_TYPE_ARRAY);
        bb_le(&b, LG_GGUF_TYPE_ARRAY, 4);
        bb_le(&b, n - 1, 8);
        for (uint64_t k = 0; k + 1 < n; k++)
            bb_put(&b, empty, sizeof empty);
        CHECK_MSG(open_bb(&b, &err) == LG_ERR_NOMEM && has(err.msg, "exceeds the budget"), "%s",
                  err.msg);
        free(b.p);
    }

    /* argument and path errors */
    struct lg_gguf *g = (struct lg_gguf *)&err; /* must be overwritten with NULL */
    CHECK(lg_gguf_open_buffer(NULL, 16, &g, &err) != LG_OK && g == NULL);
    CHECK(lg_gguf_open_buffer("GGUF", 4, NULL, &err) != LG_OK);
    CHECK(lg_gguf_open(NULL, &g, &err) != LG_OK);
    CHECK(lg_gguf_open(tmp_path("x.gguf"), NULL, &err) != LG_OK);
    CHECK(lg_gguf_open(tmp_path("missing.gguf"), &g, &err) == LG_ERR_NOT_FOUND && g == NULL &&
          has(err.msg, "missing.gguf"));
    CHECK(lg_gguf_open(g_dir, &g, &err) != LG_OK && g == NULL && has(err.msg, "gguf"));
    FILE *f = fopen(tmp_path("empty.gguf"), "wb");
    if (f)
        fclose(f);
    CHECK(lg_gguf_open(tmp_path("empty.gguf"), &g, &err) == LG_ERR_FORMAT && g == NULL);
    lg_gguf_close(NULL);
}

/* ---- writer edges ------------------------------------------------------------------------- */

static enum lg_status fill_zero(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    memset(dst, 0x5a, (size_t)nbytes);
    return LG_OK;
}

static enum lg_status fill_quiet_fail(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    return LG_ERR_CANCELLED; /* no message: the writer names the status */
}

static enum lg_status fill_loud_fail(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    return lg_err_set(err, LG_ERR_IO, "source went away");
}

static void count_progress(void *user, uint64_t done, uint64_t total)
{
    uint64_t *last = user;
    CHECK(done <= total && done >= last[0]);
    last[0] = done;
    last[1] = total;
    last[2]++;
}

/* Writes w to name with RLIMIT_FSIZE set to limit bytes; returns the status. */
static enum lg_status write_limited(struct lg_gguf_writer *w, const char *name, rlim_t limit,
                                    struct lg_err *err)
{
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = limit;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    enum lg_status st = lg_gguf_writer_write(w, tmp_path(name), NULL, NULL, err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    return st;
}

static void test_writer_edges(void)
{
    struct lg_err err = {0};
    static char longkey[64 * 1024 + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    CHECK(lg_gguf_writer_add_u32(NULL, "a", 1) == LG_ERR_INVALID_ARG);
    lg_gguf_writer_set_alignment(NULL, 64);
    lg_gguf_writer_destroy(NULL);

    struct lg_gguf_writer *w = lg_gguf_writer_create();
    CHECK(w != NULL);
    if (!w)
        return;
    CHECK(lg_gguf_writer_add_u32(w, longkey, 1) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_u32(w, "", 1) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_u32(w, NULL, 1) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_str(w, "s", NULL) == LG_ERR_INVALID_ARG);
    uint8_t bytes[4] = {1, 2, 3, 4};
    CHECK(lg_gguf_writer_add_arr(w, "a", LG_GGUF_TYPE_STRING, bytes, 1) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_arr(w, "a", LG_GGUF_TYPE_UINT8, NULL, 1) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_arr(w, "a", LG_GGUF_TYPE_UINT64, bytes, SIZE_MAX / 4) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_arr(w, "a.empty", LG_GGUF_TYPE_UINT8, NULL, 0) == LG_OK);
    const char *strs[3] = {"x", NULL, "z"};
    CHECK(lg_gguf_writer_add_str_arr(w, "sa", strs, 3) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_str_arr(w, "sa", NULL, 2) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_str_arr(w, "sa", NULL, 0) == LG_OK);
    CHECK(lg_gguf_writer_add_i32(w, "i", -3) == LG_OK);
    CHECK(lg_gguf_writer_add_i32(w, "i", 9) == LG_OK); /* replaces in place */

    uint64_t ne[4] = {8, 2, 1, 1};
    float data[16] = {0};
    CHECK(lg_gguf_writer_add_tensor(NULL, "t", LG_QTYPE_F32, 1, ne, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, NULL, LG_QTYPE_F32, 1, ne, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, "", LG_QTYPE_F32, 1, ne, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, longkey, LG_QTYPE_F32, 1, ne, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 0, ne, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 5, ne, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 1, NULL, data, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 1, ne, NULL, NULL, NULL) ==
          LG_ERR_INVALID_ARG);
    uint64_t ne_ovf[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40};      /* elements overflow */
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 2, ne_ovf, data, NULL, NULL) ==
          LG_ERR_RANGE);
    uint64_t ne_big[2] = {(uint64_t)1 << 31, (uint64_t)1 << 30};      /* 2^63 bytes */
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 2, ne_big, data, NULL, NULL) ==
          LG_ERR_RANGE);
    uint64_t ne_wrap[2] = {(uint64_t)1 << 32, (uint64_t)1 << 31};     /* bytes wrap 2^64 */
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 2, ne_wrap, data, NULL, NULL) ==
          LG_ERR_RANGE);
    uint64_t ne_q[1] = {33};                                          /* not whole blocks */
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_Q8_0, 1, ne_q, data, NULL, NULL) != LG_OK);
    CHECK(lg_gguf_writer_add_tensor(w, "t", 9999, 1, ne, data, NULL, NULL) != LG_OK);
    uint64_t ne_zero[2] = {0, 4};
    CHECK(lg_gguf_writer_add_tensor(w, "zero", LG_QTYPE_F32, 2, ne_zero, NULL, fill_zero, NULL) ==
          LG_OK);
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 2, ne, data, NULL, NULL) == LG_OK);
    CHECK(lg_gguf_writer_add_tensor(w, "t", LG_QTYPE_F32, 2, ne, data, NULL, NULL) == LG_ERR_EXISTS);
    CHECK(lg_gguf_writer_add_tensor(w, "filled", LG_QTYPE_F32, 1, ne, NULL, fill_zero, NULL) ==
          LG_OK);

    /* a 1 MiB alignment: the padding after the header takes more than one write */
    lg_gguf_writer_set_alignment(w, 1u << 20);
    uint64_t prog[3] = {0, 0, 0};
    const char *path = tmp_path("edges.gguf");
    enum lg_status st = lg_gguf_writer_write(w, path, count_progress, prog, &err);
    CHECK_MSG(st == LG_OK, "%s", err.msg);
    CHECK(prog[2] == 4 && prog[0] == prog[1] && prog[1] == 3u << 20); /* header, 3 tensors */
    struct lg_gguf *g = NULL;
    if (st == LG_OK && lg_gguf_open(path, &g, &err) == LG_OK) {
        int64_t iv = 0;
        CHECK(lg_gguf_get_i64(g, "i", &iv, &err) == LG_OK && iv == 9);
        CHECK(g->alignment == 1u << 20 && g->data_offset == 1u << 20);
        const struct lg_gguf_tensor *z = lg_gguf_find_tensor(g, "zero");
        const struct lg_gguf_tensor *fl = lg_gguf_find_tensor(g, "filled");
        CHECK(z && z->nbytes == 0 && z->data == NULL);
        CHECK(fl && fl->nbytes == 32 && ((const uint8_t *)fl->data)[31] == 0x5a);
        const struct lg_gguf_value *sa = NULL;
        CHECK(lg_gguf_get_arr(g, "sa", LG_GGUF_TYPE_STRING, &sa, &err) == LG_OK && sa->v.arr.n == 0);
        CHECK(lg_gguf_is_mapped(g, fl->data, 32));
        CHECK(!lg_gguf_is_mapped(g, fl->data, SIZE_MAX));
    } else {
        CHECK_MSG(0, "re-open: %s", err.msg);
    }
    lg_gguf_close(g);

    /* write(2) fails: in the header (limit 16 bytes), in the padding after it (64 KiB), in a
     * tensor's data (1 MiB + 8) and in the padding after it (1 MiB + 72); neither the file
     * nor its temporary is left behind */
    static const rlim_t limits[] = {16, 64 * 1024, (1u << 20) + 8, (1u << 20) + 72};
    struct stat sb;
    for (int k = 0; k < 4; k++) {
        char nm[32], tmpnm[64];
        snprintf(nm, sizeof nm, "lim%d.gguf", k);
        snprintf(tmpnm, sizeof tmpnm, "%s.tmp.%ld", nm, (long)getpid());
        st = write_limited(w, nm, limits[k], &err);
        CHECK_MSG(st == LG_ERR_IO && has(err.msg, "writing") && has(err.msg, "too large"),
                  "limit %llu: %s", (unsigned long long)limits[k], err.msg);
        CHECK(stat(tmp_path(nm), &sb) != 0 && stat(tmp_path(tmpnm), &sb) != 0);
    }

    /* rename onto a directory fails after the data is written; cannot create in a missing dir */
    mkdir(tmp_path("adir"), 0755);
    CHECK(lg_gguf_writer_write(w, tmp_path("adir"), NULL, NULL, &err) == LG_ERR_IO &&
          has(err.msg, "rename"));
    CHECK(lg_gguf_writer_write(w, tmp_path("no/such/dir.gguf"), NULL, NULL, &err) == LG_ERR_IO &&
          has(err.msg, "cannot create"));
    CHECK(lg_gguf_writer_write(w, NULL, NULL, NULL, &err) == LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_write(NULL, path, NULL, NULL, &err) == LG_ERR_INVALID_ARG);

    /* fill callbacks failing, with and without a message of their own */
    CHECK(lg_gguf_writer_add_tensor(w, "quiet", LG_QTYPE_F32, 1, ne, NULL, fill_quiet_fail,
                                    NULL) == LG_OK);
    st = lg_gguf_writer_write(w, tmp_path("quiet.gguf"), NULL, NULL, &err);
    CHECK_MSG(st == LG_ERR_CANCELLED && has(err.msg, "tensor 'quiet': ") &&
                  has(err.msg, lg_status_str(LG_ERR_CANCELLED)),
              "%s", err.msg);
    CHECK(stat(tmp_path("quiet.gguf"), &sb) != 0);
    lg_gguf_writer_destroy(w);
    w = lg_gguf_writer_create();
    if (!w)
        return;
    CHECK(lg_gguf_writer_add_tensor(w, "loud", LG_QTYPE_F32, 1, ne, NULL, fill_loud_fail, NULL) ==
          LG_OK);
    st = lg_gguf_writer_write(w, tmp_path("loud.gguf"), NULL, NULL, &err);
    CHECK(st == LG_ERR_IO && has(err.msg, "tensor 'loud': source went away"));
    lg_gguf_writer_destroy(w);

    /* general.alignment of the wrong type or value */
    w = lg_gguf_writer_create();
    if (!w)
        return;
    CHECK(lg_gguf_writer_add_u64(w, "general.alignment", 64) == LG_OK);
    CHECK(lg_gguf_writer_write(w, path, NULL, NULL, &err) == LG_ERR_INVALID_ARG &&
          has(err.msg, "must be u32"));
    CHECK(lg_gguf_writer_add_i32(w, "general.alignment", 64) == LG_OK);
    CHECK(lg_gguf_writer_write(w, path, NULL, NULL, &err) == LG_ERR_INVALID_ARG &&
          has(err.msg, "must be u32"));
    CHECK(lg_gguf_writer_add_u32(w, "general.alignment", 0x01000040) == LG_OK); /* high byte set */
    CHECK(lg_gguf_writer_write(w, path, NULL, NULL, &err) == LG_ERR_INVALID_ARG &&
          has(err.msg, "16777280 is not a power of two"));
    static const uint32_t bad_align[] = {0, 3, 96, 1u << 21};
    for (size_t k = 0; k < sizeof bad_align / sizeof bad_align[0]; k++) {
        lg_gguf_writer_set_alignment(w, bad_align[k]);
        CHECK_MSG(lg_gguf_writer_write(w, path, NULL, NULL, &err) == LG_ERR_INVALID_ARG,
                  "alignment %u", bad_align[k]);
    }
    lg_gguf_writer_destroy(w);

    /* five tensors just under 2^62 bytes each: their offsets overflow before any byte is
     * written */
    w = lg_gguf_writer_create();
    if (!w)
        return;
    uint64_t ne_huge[2] = {(uint64_t)1 << 30, ((uint64_t)1 << 30) - 1};
    for (int k = 0; k < 5; k++) {
        char nm[16];
        snprintf(nm, sizeof nm, "h%d", k);
        CHECK(lg_gguf_writer_add_tensor(w, nm, LG_QTYPE_F32, 2, ne_huge, NULL, fill_zero, NULL) ==
              LG_OK);
    }
    CHECK(lg_gguf_writer_write(w, tmp_path("huge.gguf"), NULL, NULL, &err) == LG_ERR_RANGE &&
          has(err.msg, "overflows"));
    CHECK(stat(tmp_path("huge.gguf"), &sb) != 0);
    lg_gguf_writer_destroy(w);
}

/* ---- allocation failure ------------------------------------------------------------------- */

#ifndef COV_ASAN
/* write + open + read + copy; LG_OK or the first error status. */
static enum lg_status oom_path(struct lg_err *err)
{
    enum lg_status st = LG_ERR_NOMEM;
    struct lg_gguf *g = NULL;
    struct lg_gguf_writer *w2 = NULL;
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    if (!w)
        return lg_err_set(err, LG_ERR_NOMEM, "writer_create");
    static const char *const strs[] = {"a", "bb", "ccc"};
    static const uint16_t u16s[3] = {1, 2, 3};
    static float data[64];
    char key[32];
    /* more than 16 pairs and 64 tensors: the writer's arrays grow */
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof key, "k.%d", k);
        if ((st = lg_gguf_writer_add_u32(w, key, (uint32_t)k)))
            goto done;
    }
    if ((st = lg_gguf_writer_add_str(w, "s", "text")) ||
        (st = lg_gguf_writer_add_str_arr(w, "sa", strs, 3)) ||
        (st = lg_gguf_writer_add_arr(w, "a", LG_GGUF_TYPE_UINT16, u16s, 3)))
        goto done;
    lg_gguf_writer_set_alignment(w, 64);
    uint64_t ne[1] = {64};
    for (int k = 0; k < 70; k++) {
        snprintf(key, sizeof key, "t.%d", k);
        if ((st = lg_gguf_writer_add_tensor(w, key, LG_QTYPE_F32, 1, ne, k % 2 ? data : NULL,
                                            k % 2 ? NULL : fill_zero, NULL)))
            goto done;
    }
    const char *path = tmp_path("oom.gguf");
    if ((st = lg_gguf_writer_write(w, path, NULL, NULL, err)))
        goto done;
    if ((st = lg_gguf_open(path, &g, err)))
        goto done;
    uint32_t u;
    if ((st = lg_gguf_get_u32(g, "k.19", &u, err)))
        goto done;
    if (u != 19 || !lg_gguf_find_tensor(g, "t.69")) {
        st = lg_err_set(err, LG_ERR_INTERNAL, "wrong content after a recovered run");
        goto done;
    }
    if (!(w2 = lg_gguf_writer_create())) {
        st = lg_err_set(err, LG_ERR_NOMEM, "writer_create");
        goto done;
    }
    for (uint64_t k = 0; k < g->n_kv; k++)
        if ((st = lg_gguf_writer_copy_kv(w2, &g->kv[k])))
            goto done;
    st = lg_gguf_writer_write(w2, tmp_path("oom2.gguf"), NULL, NULL, err);
done:
    if (st == LG_ERR_NOMEM && !err->msg[0])
        lg_err_set(err, LG_ERR_NOMEM, "(an add_* call said NOMEM)");
    lg_gguf_writer_destroy(w2);
    lg_gguf_close(g);
    lg_gguf_writer_destroy(w);
    return st;
}

static void test_oom(void)
{
    struct lg_err err = {0};
    long base = atomic_load(&af_live);
    CHECK_MSG(oom_path(&err) == LG_OK, "unarmed run: %s", err.msg);
    CHECK_EQ_INT(atomic_load(&af_live), base);
    int n_runs = 0, n_nomem = 0, n_bad = 0;
    for (long n = 1; n < 100000; n++) {
        memset(&err, 0, sizeof err);
        base = atomic_load(&af_live);
        atomic_store(&af_calls, 0);
        atomic_store(&af_hit, false);
        atomic_store(&af_fail_at, n);
        enum lg_status st = oom_path(&err);
        atomic_store(&af_fail_at, 0);
        long live = atomic_load(&af_live);
        n_runs++;
        if (!atomic_load(&af_hit)) {
            CHECK_MSG(st == LG_OK, "N=%ld: %s", n, err.msg);
            break;
        }
        if (st == LG_ERR_NOMEM)
            n_nomem++;
        if ((st != LG_OK && st != LG_ERR_NOMEM) || live != base) {
            if (n_bad++ < 10)
                fprintf(stderr, "FAIL oom N=%ld: status %s (%s), %ld blocks leaked\n", n,
                        lg_status_str(st), err.msg, live - base);
        }
    }
    CHECK_EQ_INT(n_bad, 0);
    CHECK_MSG(n_runs > 50 && n_nomem > 20, "%d runs, %d NOMEM", n_runs, n_nomem);
    printf("test_cov_gguf: allocation failure: %d runs, %d ended in LG_ERR_NOMEM\n", n_runs,
           n_nomem);
}
#endif

int main(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/lg-cov-gguf-XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_names();
    test_getters();
    test_crafted();
    test_writer_edges();
#ifndef COV_ASAN
    test_oom();
#endif
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_cov_gguf: could not remove %s\n", g_dir);
    return lg_test_done("test_cov_gguf");
}
