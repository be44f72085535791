/* test_gguf.c: GGUF reader and writer.
 *
 * Files are built two ways: with the writer (round trips of every value type, nested arrays,
 * alignment, tensor data by pointer and by callback) and by hand, byte by byte (v2 files,
 * layouts the writer never produces, and malformed headers). The malformed-file corpus is
 * covered by test_gguf_corpus.c.
 *
 * With LG_GGUF_SAMPLE_OUT=PATH set, the test also writes its sample file to PATH (used by
 * tests/py/test_gguf_interop.py to check that gguf-py reads what we write).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"

/* ---- a byte builder for hand-made files ---- */

struct bb {
    uint8_t *p;
    size_t len, cap;
};

static void bb_put(struct bb *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort(); /* test harness: out of memory is fatal */
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void bb_le(struct bb *b, uint64_t v, unsigned n)
{
    uint8_t t[8];
    for (unsigned i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, t, n);
}

static void bb_u32(struct bb *b, uint32_t v)
{
    bb_le(b, v, 4);
}
static void bb_u64(struct bb *b, uint64_t v)
{
    bb_le(b, v, 8);
}

static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static void bb_pad(struct bb *b, size_t a)
{
    while (b->len % a)
        bb_put(b, "", 1);
}

static void bb_header(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void bb_tensor(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

static char g_tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", g_tmpdir, name);
    return buf;
}

/* ---- writer → reader round trip ---- */

static struct lg_gguf_kv mk_kv(const char *key, struct lg_gguf_value v)
{
    struct lg_gguf_kv kv = {.key = {key, strlen(key)}, .val = v, .offset = 0};
    return kv;
}

struct fill_ctx {
    int calls;
    uint8_t seed;
};

static enum lg_status fill_bytes(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    struct fill_ctx *c = user;
    c->calls++;
    for (uint64_t i = 0; i < nbytes; i++)
        ((uint8_t *)dst)[i] = (uint8_t)(c->seed + i * 7);
    return LG_OK;
}

static enum lg_status fill_fail(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    return lg_err_set(err, LG_ERR_IO, "source went away");
}

struct prog {
    int calls;
    uint64_t last_done, last_total;
    int monotonic;
};

static void on_progress(void *user, uint64_t done, uint64_t total)
{
    struct prog *p = user;
    if (done < p->last_done)
        p->monotonic = 0;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

static float g_f32[4 * 3];
static uint16_t g_f16[64];
static uint8_t g_q8[2 * 34 * 2]; /* Q8_0: ne = {64, 2}: 2 blocks per row, 2 rows */

/* Builds the sample writer (all value types, nested arrays, 4 tensors, alignment 64). */
static struct lg_gguf_writer *make_sample(struct fill_ctx *fc)
{
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    CHECK(w != NULL);
    if (!w)
        return NULL;
    for (int i = 0; i < 12; i++)
        g_f32[i] = (float)i * 0.5f - 1.25f;
    for (int i = 0; i < 64; i++)
        g_f16[i] = (uint16_t)(0x3c00 + i * 17); /* arbitrary bit patterns */
    for (size_t i = 0; i < sizeof g_q8; i++)
        g_q8[i] = (uint8_t)(i * 13 + 1);
    lg_gguf_writer_set_alignment(w, 64);
    CHECK_EQ_INT(lg_gguf_writer_add_str(w, "general.architecture", "gemma3"), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_u32(w, "t.u32", 4000000000u), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_i32(w, "t.i32", -123456), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_u64(w, "t.u64", 0xfedcba9876543210ull), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_f32(w, "t.f32", 1e-6f), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_bool(w, "t.bool", true), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_str(w, "t.str", "héllo wörld"), LG_OK);
    /* replaced value keeps its place */
    CHECK_EQ_INT(lg_gguf_writer_add_u32(w, "t.replaced", 1), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_u32(w, "t.replaced", 2), LG_OK);
    /* the other scalar types through copy_kv */
    struct lg_gguf_value v;
    struct lg_gguf_kv kv;
    memset(&v, 0, sizeof v);
    v.type = LG_GGUF_TYPE_UINT8, v.v.u64 = 200;
    kv = mk_kv("t.u8", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    v.type = LG_GGUF_TYPE_INT8, v.v.i64 = -100;
    kv = mk_kv("t.i8", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    v.type = LG_GGUF_TYPE_UINT16, v.v.u64 = 65000;
    kv = mk_kv("t.u16", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    v.type = LG_GGUF_TYPE_INT16, v.v.i64 = -32000;
    kv = mk_kv("t.i16", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    v.type = LG_GGUF_TYPE_INT64, v.v.i64 = -5000000000ll;
    kv = mk_kv("t.i64", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    v.type = LG_GGUF_TYPE_FLOAT64, v.v.f64 = 3.141592653589793;
    kv = mk_kv("t.f64", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    /* arrays */
    const int32_t ia[5] = {1, -2, 3, -4, 2147483647};
    CHECK_EQ_INT(lg_gguf_writer_add_arr(w, "t.arr_i32", LG_GGUF_TYPE_INT32, ia, 5), LG_OK);
    const float fa[3] = {0.25f, -8.0f, 1e30f};
    CHECK_EQ_INT(lg_gguf_writer_add_arr(w, "t.arr_f32", LG_GGUF_TYPE_FLOAT32, fa, 3), LG_OK);
    const uint8_t ba[4] = {1, 0, 0, 1};
    CHECK_EQ_INT(lg_gguf_writer_add_arr(w, "t.arr_bool", LG_GGUF_TYPE_BOOL, ba, 4), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_arr(w, "t.arr_empty", LG_GGUF_TYPE_UINT64, NULL, 0), LG_OK);
    const char *const strs[4] = {"<pad>", "", "▁the", "<0x0A>"};
    CHECK_EQ_INT(lg_gguf_writer_add_str_arr(w, "t.arr_str", strs, 4), LG_OK);
    /* nested: [[1,2,3],[],[7]] of u16 and [["a","bc"],["d"]] */
    static const uint16_t n0[3] = {1, 2, 3}, n2[1] = {7};
    struct lg_gguf_value inner[3];
    memset(inner, 0, sizeof inner);
    for (int i = 0; i < 3; i++)
        inner[i].type = LG_GGUF_TYPE_ARRAY, inner[i].v.arr.elem_type = LG_GGUF_TYPE_UINT16;
    inner[0].v.arr.n = 3, inner[0].v.arr.data = (const uint8_t *)n0;
    inner[1].v.arr.n = 0;
    inner[2].v.arr.n = 1, inner[2].v.arr.data = (const uint8_t *)n2;
    memset(&v, 0, sizeof v);
    v.type = LG_GGUF_TYPE_ARRAY, v.v.arr.elem_type = LG_GGUF_TYPE_ARRAY, v.v.arr.n = 3;
    v.v.arr.arrs = inner;
    kv = mk_kv("t.nested_u16", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);
    static const struct lg_str s0[2] = {{"a", 1}, {"bc", 2}}, s1[1] = {{"d", 1}};
    struct lg_gguf_value sin[2];
    memset(sin, 0, sizeof sin);
    sin[0].type = sin[1].type = LG_GGUF_TYPE_ARRAY;
    sin[0].v.arr.elem_type = sin[1].v.arr.elem_type = LG_GGUF_TYPE_STRING;
    sin[0].v.arr.n = 2, sin[0].v.arr.strs = s0;
    sin[1].v.arr.n = 1, sin[1].v.arr.strs = s1;
    v.v.arr.n = 2, v.v.arr.arrs = sin;
    kv = mk_kv("t.nested_str", v);
    CHECK_EQ_INT(lg_gguf_writer_copy_kv(w, &kv), LG_OK);

    const uint64_t ne_f32[2] = {4, 3}, ne_f16[1] = {64}, ne_q8[2] = {64, 2}, ne_q4k[2] = {256, 3};
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "a.f32", LG_QTYPE_F32, 2, ne_f32, g_f32, NULL, NULL),
                 LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "b.f16", LG_QTYPE_F16, 1, ne_f16, g_f16, NULL, NULL),
                 LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "c.q8_0", LG_QTYPE_Q8_0, 2, ne_q8, g_q8, NULL, NULL),
                 LG_OK);
    CHECK_EQ_INT(
        lg_gguf_writer_add_tensor(w, "d.q4_k", LG_QTYPE_Q4_K, 2, ne_q4k, NULL, fill_bytes, fc),
        LG_OK);
    return w;
}

static void test_writer_rejects(void)
{
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    const uint64_t ne[2] = {33, 1}, ne1[1] = {32};
    float buf[64] = {0};
    CHECK_EQ_INT(lg_gguf_writer_add_u32(w, "", 1), LG_ERR_INVALID_ARG);
    CHECK_EQ_INT(lg_gguf_writer_add_str(w, "k", NULL), LG_ERR_INVALID_ARG);
    CHECK_EQ_INT(lg_gguf_writer_add_arr(w, "k", LG_GGUF_TYPE_STRING, buf, 1), LG_ERR_INVALID_ARG);
    /* Q8_0 rows must be a multiple of 32 */
    CHECK(lg_gguf_writer_add_tensor(w, "x", LG_QTYPE_Q8_0, 2, ne, buf, NULL, NULL) != LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "x", LG_QTYPE_F32, 0, ne, buf, NULL, NULL),
                 LG_ERR_INVALID_ARG);
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "x", LG_QTYPE_F32, 1, ne1, NULL, NULL, NULL),
                 LG_ERR_INVALID_ARG);
    CHECK(lg_gguf_writer_add_tensor(w, "x", 4 /* hole in the type ids */, 1, ne1, buf, NULL,
                                    NULL) != LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "x", LG_QTYPE_F32, 1, ne1, buf, NULL, NULL), LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "x", LG_QTYPE_F32, 1, ne1, buf, NULL, NULL),
                 LG_ERR_EXISTS);
    /* bad alignment is refused at write time, and nothing is left behind */
    struct lg_err err = {0};
    lg_gguf_writer_set_alignment(w, 24);
    CHECK(lg_gguf_writer_write(w, tmp_path("badalign.gguf"), NULL, NULL, &err) != LG_OK);
    CHECK(strstr(err.msg, "alignment") != NULL);
    CHECK(access(tmp_path("badalign.gguf"), F_OK) != 0);
    lg_gguf_writer_set_alignment(w, 32);
    /* a failing fill callback: error propagated, no file, no temporary */
    CHECK_EQ_INT(lg_gguf_writer_add_tensor(w, "y", LG_QTYPE_F32, 1, ne1, NULL, fill_fail, NULL),
                 LG_OK);
    CHECK_EQ_INT(lg_gguf_writer_write(w, tmp_path("fillfail.gguf"), NULL, NULL, &err), LG_ERR_IO);
    CHECK(strstr(err.msg, "source went away") != NULL && strstr(err.msg, "'y'") != NULL);
    CHECK(access(tmp_path("fillfail.gguf"), F_OK) != 0);
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", tmp_path("fillfail.gguf"), (long)getpid());
    CHECK(access(tmpname, F_OK) != 0);
    /* a directory that does not exist */
    CHECK_EQ_INT(lg_gguf_writer_write(w, "/nonexistent-dir-lg/x.gguf", NULL, NULL, &err),
                 LG_ERR_IO);
    lg_gguf_writer_destroy(w);
    lg_gguf_writer_destroy(NULL);
}

static void check_sample(const struct lg_gguf *g, const struct fill_ctx *fc)
{
    struct lg_err err = {0};
    CHECK_EQ_INT(g->version, 3);
    CHECK_EQ_INT(g->alignment, 64);
    CHECK_EQ_INT(g->n_tensors, 4);
    CHECK_EQ_INT(g->data_offset % 64, 0);
    /* order of keys is insertion order; the replaced key kept its first place */
    CHECK(lg_str_eq(g->kv[0].key, "general.alignment"));
    CHECK(lg_str_eq(g->kv[1].key, "general.architecture"));
    CHECK(lg_str_eq(g->kv[8].key, "t.replaced"));
    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f32 = 0;
    bool b = false;
    struct lg_str s = {0};
    CHECK_EQ_INT(lg_gguf_get_u32(g, "t.u32", &u32, &err), LG_OK);
    CHECK_EQ_INT(u32, 4000000000u);
    CHECK_EQ_INT(lg_gguf_get_u32(g, "t.replaced", &u32, &err), LG_OK);
    CHECK_EQ_INT(u32, 2);
    CHECK_EQ_INT(lg_gguf_get_i64(g, "t.i32", &i64, &err), LG_OK);
    CHECK_EQ_INT(i64, -123456);
    CHECK_EQ_INT(lg_gguf_get_i64(g, "t.i64", &i64, &err), LG_OK);
    CHECK_EQ_INT(i64, -5000000000ll);
    CHECK_EQ_INT(lg_gguf_get_i64(g, "t.u8", &i64, &err), LG_OK);
    CHECK_EQ_INT(i64, 200);
    CHECK_EQ_INT(lg_gguf_get_i64(g, "t.i8", &i64, &err), LG_OK);
    CHECK_EQ_INT(i64, -100);
    CHECK_EQ_INT(lg_gguf_get_u32(g, "t.u16", &u32, &err), LG_OK);
    CHECK_EQ_INT(u32, 65000);
    CHECK_EQ_INT(lg_gguf_get_i64(g, "t.i16", &i64, &err), LG_OK);
    CHECK_EQ_INT(i64, -32000);
    const struct lg_gguf_kv *kv = lg_gguf_find_kv(g, "t.u64");
    CHECK(kv && kv->val.type == LG_GGUF_TYPE_UINT64 && kv->val.v.u64 == 0xfedcba9876543210ull);
    /* conversions that do not fit are format errors naming the key */
    CHECK_EQ_INT(lg_gguf_get_u32(g, "t.u64", &u32, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "'t.u64'") && strstr(err.msg, "does not fit"));
    CHECK_EQ_INT(lg_gguf_get_i64(g, "t.u64", &i64, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_gguf_get_u32(g, "t.i32", &u32, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "-123456") != NULL);
    CHECK_EQ_INT(lg_gguf_get_u32(g, "t.str", &u32, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "type is string") != NULL);
    CHECK_EQ_INT(lg_gguf_get_f32(g, "t.f32", &f32, &err), LG_OK);
    CHECK(f32 == 1e-6f);
    CHECK_EQ_INT(lg_gguf_get_f32(g, "t.f64", &f32, &err), LG_OK);
    CHECK(f32 == (float)3.141592653589793);
    kv = lg_gguf_find_kv(g, "t.f64");
    CHECK(kv && kv->val.v.f64 == 3.141592653589793);
    CHECK_EQ_INT(lg_gguf_get_f32(g, "t.u32", &f32, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_gguf_get_bool(g, "t.bool", &b, &err), LG_OK);
    CHECK(b == true);
    CHECK_EQ_INT(lg_gguf_get_bool(g, "t.u8", &b, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_gguf_get_str(g, "t.str", &s, &err), LG_OK);
    CHECK(lg_str_eq(s, "héllo wörld"));
    CHECK_EQ_INT(lg_gguf_get_str(g, "missing.key", &s, &err), LG_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "'missing.key' not found") != NULL);
    CHECK(lg_gguf_find_kv(g, "t.u3") == NULL && lg_gguf_find_kv(g, "t.u322") == NULL);

    const struct lg_gguf_value *a = NULL;
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.arr_i32", LG_GGUF_TYPE_INT32, &a, &err), LG_OK);
    CHECK(a && a->v.arr.n == 5);
    if (a && a->v.arr.n == 5) {
        CHECK_EQ_INT(lg_gguf_arr_i64(a, 1), -2);
        CHECK_EQ_INT(lg_gguf_arr_i64(a, 4), 2147483647);
        CHECK_NEAR(lg_gguf_arr_f64(a, 3), -4.0, 0);
        CHECK_EQ_INT(lg_gguf_arr_i64(a, 5), 0); /* out of range reads 0 */
    }
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.arr_i32", LG_GGUF_TYPE_UINT32, &a, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "array of i32, expected array of u32") != NULL);
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.arr_f32", LG_GGUF_TYPE_FLOAT32, &a, &err), LG_OK);
    if (a) {
        CHECK_NEAR(lg_gguf_arr_f64(a, 0), 0.25, 0);
        CHECK_NEAR(lg_gguf_arr_f64(a, 2), 1e30f, 0);
    }
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.arr_bool", LG_GGUF_TYPE_BOOL, &a, &err), LG_OK);
    if (a)
        CHECK(lg_gguf_arr_i64(a, 0) == 1 && lg_gguf_arr_i64(a, 1) == 0 &&
              lg_gguf_arr_i64(a, 3) == 1);
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.arr_empty", LG_GGUF_TYPE_UINT64, &a, &err), LG_OK);
    CHECK(a && a->v.arr.n == 0);
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.arr_str", LG_GGUF_TYPE_STRING, &a, &err), LG_OK);
    CHECK(a && a->v.arr.n == 4);
    if (a && a->v.arr.n == 4) {
        CHECK(lg_str_eq(a->v.arr.strs[0], "<pad>"));
        CHECK(lg_str_eq(a->v.arr.strs[1], ""));
        CHECK(lg_str_eq(a->v.arr.strs[2], "▁the"));
        CHECK(lg_str_eq(a->v.arr.strs[3], "<0x0A>"));
    }
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.nested_u16", LG_GGUF_TYPE_ARRAY, &a, &err), LG_OK);
    CHECK(a && a->v.arr.n == 3 && a->v.arr.arrs != NULL);
    if (a && a->v.arr.n == 3 && a->v.arr.arrs) {
        const struct lg_gguf_value *in = a->v.arr.arrs;
        CHECK(in[0].v.arr.elem_type == LG_GGUF_TYPE_UINT16 && in[0].v.arr.n == 3);
        CHECK_EQ_INT(lg_gguf_arr_i64(&in[0], 2), 3);
        CHECK_EQ_INT(in[1].v.arr.n, 0);
        CHECK_EQ_INT(in[2].v.arr.n, 1);
        CHECK_EQ_INT(lg_gguf_arr_i64(&in[2], 0), 7);
    }
    CHECK_EQ_INT(lg_gguf_get_arr(g, "t.nested_str", LG_GGUF_TYPE_ARRAY, &a, &err), LG_OK);
    if (a && a->v.arr.n == 2 && a->v.arr.arrs) {
        const struct lg_gguf_value *in = a->v.arr.arrs;
        CHECK(in[0].v.arr.elem_type == LG_GGUF_TYPE_STRING && in[0].v.arr.n == 2);
        CHECK(lg_str_eq(in[0].v.arr.strs[1], "bc"));
        CHECK(lg_str_eq(in[1].v.arr.strs[0], "d"));
    } else {
        CHECK(!"nested string array missing");
    }

    /* tensors: order, shapes, bytes, alignment, data */
    const char *names[4] = {"a.f32", "b.f16", "c.q8_0", "d.q4_k"};
    const uint64_t nbytes[4] = {48, 128, 136, 3 * 144};
    for (int i = 0; i < 4; i++) {
        const struct lg_gguf_tensor *t = lg_gguf_find_tensor(g, names[i]);
        CHECK(t == &g->tensors[i]);
        if (!t)
            continue;
        CHECK_EQ_INT(t->nbytes, nbytes[i]);
        CHECK_EQ_INT(t->offset % 64, 0);
        CHECK((const uint8_t *)t->data == g->base + g->data_offset + t->offset);
    }
    CHECK(lg_gguf_find_tensor(g, "a.f3") == NULL);
    const struct lg_gguf_tensor *t = &g->tensors[0];
    CHECK(t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 3 && t->ne[2] == 1 && t->ne[3] == 1);
    CHECK(memcmp(t->data, g_f32, sizeof g_f32) == 0);
    CHECK(memcmp(g->tensors[1].data, g_f16, sizeof g_f16) == 0);
    CHECK(memcmp(g->tensors[2].data, g_q8, sizeof g_q8) == 0);
    CHECK_EQ_INT(g->tensors[2].type, LG_QTYPE_Q8_0);
    const uint8_t *d = g->tensors[3].data;
    int ok = 1;
    for (uint64_t i = 0; i < 3 * 144; i++)
        ok &= d[i] == (uint8_t)(fc->seed + i * 7);
    CHECK(ok);
    /* the padding between tensors is zero */
    CHECK(g->tensors[1].offset == 64 && g->tensors[2].offset == 192 && g->tensors[3].offset == 384);
    CHECK(((const uint8_t *)g->tensors[0].data)[48] == 0 &&
          ((const uint8_t *)g->tensors[0].data)[63] == 0);
}

/* lg_gguf_is_mapped: true exactly for ranges inside the file mapping of g (opened from a
 * path); never for gb, opened over a buffer (here the same bytes: g's own mapping). */
static void check_is_mapped(const struct lg_gguf *g, const struct lg_gguf *gb)
{
    const uint8_t *b = g->base;
    const size_t size = (size_t)g->size;
    int n_data = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        if (!t->data)
            continue;
        CHECK(lg_gguf_is_mapped(g, t->data, (size_t)t->nbytes));
        CHECK(!lg_gguf_is_mapped(gb, t->data, (size_t)t->nbytes));
        n_data++;
    }
    CHECK(n_data > 0);
    CHECK(lg_gguf_is_mapped(g, b, size)); /* the whole file */
    CHECK(lg_gguf_is_mapped(g, b, 0));
    CHECK(lg_gguf_is_mapped(g, b + size - 1, 1));         /* the last byte */
    CHECK(!lg_gguf_is_mapped(g, b, size + 1));            /* one byte past the end */
    CHECK(!lg_gguf_is_mapped(g, b + size - 1, 2));
    CHECK(!lg_gguf_is_mapped(g, b + size, 0));            /* the end is outside */
    CHECK(!lg_gguf_is_mapped(g, b + 1, SIZE_MAX));        /* p + n would wrap */
    CHECK(!lg_gguf_is_mapped(g, &n_data, sizeof n_data)); /* the stack */
    CHECK(!lg_gguf_is_mapped(g, NULL, 0));
    CHECK(!lg_gguf_is_mapped(NULL, b, 1));
    CHECK(!lg_gguf_is_mapped(gb, gb->base, 1)); /* a borrowed buffer is never "mapped" */
}

static void test_roundtrip(void)
{
    struct fill_ctx fc = {0, 5};
    struct lg_gguf_writer *w = make_sample(&fc);
    if (!w)
        return;
    struct lg_err err = {0};
    struct prog pr = {0, 0, 0, 1};
    const char *path = tmp_path("sample.gguf");
    CHECK_EQ_INT(lg_gguf_writer_write(w, path, on_progress, &pr, &err), LG_OK);
    CHECK_EQ_INT(fc.calls, 1);
    CHECK(pr.calls == 5 && pr.monotonic && pr.last_done == pr.last_total);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == pr.last_total);
    const char *out = getenv("LG_GGUF_SAMPLE_OUT");
    if (out && *out) {
        struct fill_ctx fc2 = {0, 5};
        lg_gguf_writer_destroy(w);
        w = make_sample(&fc2);
        CHECK_EQ_INT(lg_gguf_writer_write(w, out, NULL, NULL, &err), LG_OK);
    }
    lg_gguf_writer_destroy(w);

    struct lg_gguf *g = NULL;
    CHECK_EQ_INT(lg_gguf_open(path, &g, &err), LG_OK);
    if (!g) {
        fprintf(stderr, "open: %s\n", err.msg);
        return;
    }
    check_sample(g, &fc);

    /* copy every kv into a new file: the copy reads back identical */
    struct lg_gguf_writer *w2 = lg_gguf_writer_create();
    for (uint64_t i = 0; i < g->n_kv; i++)
        CHECK_EQ_INT(lg_gguf_writer_copy_kv(w2, &g->kv[i]), LG_OK);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_EQ_INT(
            lg_gguf_writer_add_tensor(w2, name, t->type, t->n_dims, t->ne, t->data, NULL, NULL),
            LG_OK);
    }
    const char *path2 = tmp_path("copy.gguf");
    CHECK_EQ_INT(lg_gguf_writer_write(w2, path2, NULL, NULL, &err), LG_OK);
    lg_gguf_writer_destroy(w2);
    struct lg_gguf *g2 = NULL;
    CHECK_EQ_INT(lg_gguf_open(path2, &g2, &err), LG_OK);
    if (g2) {
        check_sample(g2, &fc);
        CHECK(g2->size == g->size && memcmp(g2->base, g->base, (size_t)g->size) == 0);
        lg_gguf_close(g2);
    }

    /* the same bytes through open_buffer */
    struct lg_gguf *g3 = NULL;
    CHECK_EQ_INT(lg_gguf_open_buffer(g->base, (size_t)g->size, &g3, &err), LG_OK);
    if (g3) {
        check_sample(g3, &fc);
        check_is_mapped(g, g3);
        lg_gguf_close(g3);
    }
    /* every proper prefix of the file fails cleanly (truncation at every byte) */
    int all_fail = 1, one_line = 1;
    for (uint64_t n = 0; n < g->size; n += (n < g->data_offset ? 1 : 61)) {
        struct lg_gguf *gt = NULL;
        enum lg_status rc = lg_gguf_open_buffer(g->base, (size_t)n, &gt, &err);
        if (rc == LG_OK || gt) {
            all_fail = 0;
            lg_gguf_close(gt);
        }
        if (strchr(err.msg, '\n') || strncmp(err.msg, "gguf: ", 6) != 0)
            one_line = 0;
    }
    CHECK(all_fail);
    CHECK(one_line);
    lg_gguf_close(g);
}

/* ---- hand-built files ---- */

static enum lg_status open_bb(const struct bb *b, struct lg_gguf **g, struct lg_err *err)
{
    return lg_gguf_open_buffer(b->p, b->len, g, err);
}

static void test_v2_handmade(void)
{
    struct bb b = {0};
    bb_header(&b, 2, 2, 3);
    bb_str(&b, "general.alignment");
    bb_u32(&b, LG_GGUF_TYPE_UINT32);
    bb_u32(&b, 16);
    bb_str(&b, "x.u8arr");
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u32(&b, LG_GGUF_TYPE_UINT8);
    bb_u64(&b, 3);
    bb_put(&b, "\x01\x02\xff", 3);
    bb_str(&b, "x.bool");
    bb_u32(&b, LG_GGUF_TYPE_BOOL);
    bb_put(&b, "\x00", 1);
    const uint64_t ne0[1] = {4}, ne1[3] = {2, 1, 2};
    /* tensors listed out of data order, with a gap: allowed */
    bb_tensor(&b, "second", 1, ne0, LG_QTYPE_F32, 48);
    bb_tensor(&b, "first", 3, ne1, LG_QTYPE_F16, 0);
    bb_pad(&b, 16);
    size_t data_off = b.len;
    for (int i = 0; i < 64; i++)
        bb_put(&b, &(uint8_t){(uint8_t)i}, 1);
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_OK);
    if (g) {
        CHECK_EQ_INT(g->version, 2);
        CHECK_EQ_INT(g->alignment, 16);
        CHECK_EQ_INT(g->data_offset, data_off);
        const struct lg_gguf_value *a = NULL;
        CHECK_EQ_INT(lg_gguf_get_arr(g, "x.u8arr", LG_GGUF_TYPE_UINT8, &a, &err), LG_OK);
        if (a)
            CHECK(lg_gguf_arr_i64(a, 2) == 255 &&
                  a->v.arr.data == b.p + (g->kv[1].offset + 8 + 7 + 4 + 4 + 8));
        bool bv = true;
        CHECK(lg_gguf_get_bool(g, "x.bool", &bv, &err) == LG_OK && !bv);
        const struct lg_gguf_tensor *t = lg_gguf_find_tensor(g, "first");
        CHECK(t && t->nbytes == 8 && t->n_dims == 3 && t->ne[2] == 2 && t->ne[3] == 1);
        CHECK(t && t->data == b.p + data_off);
        t = lg_gguf_find_tensor(g, "second");
        CHECK(t && t->nbytes == 16 && ((const uint8_t *)t->data)[0] == 48);
        CHECK_EQ_INT(g->kv[0].offset, 24);
        lg_gguf_close(g);
    }
    free(b.p);

    /* no tensors, no kvs: a 24-byte file is valid */
    memset(&b, 0, sizeof b);
    bb_header(&b, 3, 0, 0);
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_OK);
    if (g) {
        CHECK(g->n_kv == 0 && g->n_tensors == 0 && lg_gguf_find_kv(g, "x") == NULL &&
              lg_gguf_find_tensor(g, "x") == NULL);
        lg_gguf_close(g);
    }
    free(b.p);
}

/* Builds a small file with one kv and one tensor, letting a hook corrupt one piece. */
enum bad {
    BAD_NONE,
    BAD_VERSION1,
    BAD_BIGENDIAN,
    BAD_BOOL,
    BAD_ALIGN_TYPE,
    BAD_TENSOR_TYPE,
    BAD_MISALIGNED,
    BAD_PAST_EOF,
    BAD_DUP_KEY,
    BAD_DUP_TENSOR,
    BAD_NESTED_DEEP,
    BAD_NUL_KEY,
    BAD_BLOCK,
    BAD_OVERLAP
};

static enum lg_status build_bad(enum bad which, struct lg_err *err)
{
    struct bb b = {0};
    int two_t = which == BAD_DUP_TENSOR || which == BAD_OVERLAP;
    bb_header(&b,
              which == BAD_VERSION1    ? 1
              : which == BAD_BIGENDIAN ? 0x03000000u
                                       : 3,
              two_t ? 2 : 1, which == BAD_DUP_KEY ? 3 : 2);
    bb_str(&b, which == BAD_NUL_KEY ? "a" : "general.alignment");
    if (which == BAD_NUL_KEY) { /* patch: length 3, "a\0b" */
        b.len -= 9;
        bb_u64(&b, 3);
        bb_put(&b, "a\0b", 3);
    }
    if (which == BAD_ALIGN_TYPE) {
        bb_u32(&b, LG_GGUF_TYPE_UINT64);
        bb_u64(&b, 32);
    } else {
        bb_u32(&b, LG_GGUF_TYPE_UINT32);
        bb_u32(&b, 32);
    }
    bb_str(&b, "k");
    if (which == BAD_NESTED_DEEP) {
        bb_u32(&b, LG_GGUF_TYPE_ARRAY);
        for (int i = 0; i < LG_GGUF_MAX_ARRAY_DEPTH; i++) {
            bb_u32(&b, LG_GGUF_TYPE_ARRAY);
            bb_u64(&b, 1);
        }
        bb_u32(&b, LG_GGUF_TYPE_UINT8);
        bb_u64(&b, 1);
        bb_put(&b, "x", 1);
    } else {
        bb_u32(&b, LG_GGUF_TYPE_BOOL);
        bb_put(&b, which == BAD_BOOL ? "\x02" : "\x01", 1);
    }
    if (which == BAD_DUP_KEY) {
        bb_str(&b, "k");
        bb_u32(&b, LG_GGUF_TYPE_UINT8);
        bb_put(&b, "\x01", 1);
    }
    const uint64_t ne[2] = {32, 2};
    bb_tensor(&b, "w", 2, ne,
              which == BAD_TENSOR_TYPE ? 4u
              : which == BAD_BLOCK     ? (uint32_t)LG_QTYPE_Q4_K
                                       : (uint32_t)LG_QTYPE_F32,
              which == BAD_MISALIGNED ? 16
              : which == BAD_PAST_EOF ? 32
                                      : 0);
    if (two_t)
        bb_tensor(&b, which == BAD_DUP_TENSOR ? "w" : "v", 1, ne, LG_QTYPE_F32,
                  128); /* w is [0, 256) */
    bb_pad(&b, 32);
    for (int i = 0; i < 256; i++)
        bb_put(&b, "\x3f", 1);
    struct lg_gguf *g = NULL;
    enum lg_status st = open_bb(&b, &g, err);
    CHECK((st == LG_OK) == (g != NULL));
    lg_gguf_close(g);
    free(b.p);
    return st;
}

static void expect_bad(enum bad which, enum lg_status code, const char *needle)
{
    struct lg_err err = {0};
    enum lg_status st = build_bad(which, &err);
    CHECK_MSG(st == code, "case %d: status %d, want %d (%s)", (int)which, (int)st, (int)code,
              err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "case %d: '%s' lacks '%s'", (int)which, err.msg,
              needle);
    CHECK_MSG(strstr(err.msg, " at byte ") != NULL, "case %d: no offset in '%s'", (int)which,
              err.msg);
}

static void test_errors(void)
{
    struct lg_err err = {0};
    CHECK_EQ_INT(build_bad(BAD_NONE, &err), LG_OK);
    expect_bad(BAD_VERSION1, LG_ERR_VERSION, "version 1 is not supported");
    expect_bad(BAD_BIGENDIAN, LG_ERR_UNSUPPORTED, "big-endian");
    expect_bad(BAD_BOOL, LG_ERR_FORMAT, "kv #1 'k' value at byte 70: bool value 2");
    expect_bad(BAD_ALIGN_TYPE, LG_ERR_FORMAT, "general.alignment' at byte 24: type is u64");
    expect_bad(BAD_TENSOR_TYPE, LG_ERR_UNSUPPORTED, "tensor 'w' (#0) type at byte");
    expect_bad(BAD_MISALIGNED, LG_ERR_FORMAT, "offset 16 is not aligned to 32");
    expect_bad(BAD_PAST_EOF, LG_ERR_FORMAT, "ends past the end of the file");
    expect_bad(BAD_DUP_KEY, LG_ERR_FORMAT,
               "kv #2 'k' key at byte 71: duplicate key (first at "
               "byte 57)");
    expect_bad(BAD_DUP_TENSOR, LG_ERR_FORMAT, "duplicate tensor name");
    expect_bad(BAD_NESTED_DEEP, LG_ERR_FORMAT, "nested deeper than 3 levels");
    expect_bad(BAD_NUL_KEY, LG_ERR_FORMAT, "NUL byte");
    expect_bad(BAD_BLOCK, LG_ERR_FORMAT, "not a multiple of the Q4_K block size 256");
    expect_bad(BAD_OVERLAP, LG_ERR_FORMAT, "overlaps tensor 'w'");

    struct lg_gguf *g = (struct lg_gguf *)&err; /* must be reset to NULL on failure */
    CHECK_EQ_INT(lg_gguf_open_buffer("GGUF", 4, &g, &err), LG_ERR_FORMAT);
    CHECK(g == NULL);
    CHECK(strstr(err.msg, "version at byte 4: truncated") != NULL);
    CHECK_EQ_INT(lg_gguf_open_buffer("GGML\3\0\0\0", 8, &g, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "not a GGUF file") != NULL);
    CHECK_EQ_INT(lg_gguf_open_buffer(NULL, 0, &g, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_gguf_open("/nonexistent/x.gguf", &g, &err), LG_ERR_NOT_FOUND);
    CHECK(g == NULL);
    CHECK_EQ_INT(lg_gguf_open(g_tmpdir, &g, &err), LG_ERR_IO);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
    lg_gguf_close(NULL);

    /* a key that is 64 KiB + 1 long; a string value just over 16 MiB (declared only) */
    struct bb b = {0};
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 65537);
    for (int i = 0; i < 65537; i++)
        bb_put(&b, "k", 1);
    bb_u32(&b, LG_GGUF_TYPE_UINT8);
    bb_put(&b, "\0", 1);
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "kv #0 key length at byte 24: 65537 bytes exceed the 65536-byte cap"));
    b.len = 24;
    bb_str(&b, "s");
    bb_u32(&b, LG_GGUF_TYPE_STRING);
    bb_u64(&b, (16u << 20) + 1);
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "16777217 bytes exceed the 16777216-byte cap") != NULL);
    free(b.p);
}

/* A header with the vocab shape of Gemma: 262144 strings, then 300 tensors. */
static void test_big_vocab(void)
{
    struct bb b = {0};
    enum { N_TOK = 262144, N_T = 300 };
    bb_header(&b, 3, N_T, 2);
    bb_str(&b, "tokenizer.ggml.tokens");
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u32(&b, LG_GGUF_TYPE_STRING);
    bb_u64(&b, N_TOK);
    char tok[32];
    for (int i = 0; i < N_TOK; i++) {
        snprintf(tok, sizeof tok, "tok%d", i);
        bb_str(&b, tok);
    }
    bb_str(&b, "tokenizer.ggml.scores");
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u32(&b, LG_GGUF_TYPE_FLOAT32);
    bb_u64(&b, N_TOK);
    for (int i = 0; i < N_TOK; i++) {
        float f = (float)-i;
        bb_put(&b, &f, 4);
    }
    const uint64_t ne[2] = {64, 2};
    for (int i = 0; i < N_T; i++) {
        snprintf(tok, sizeof tok, "blk.%d.w", i);
        bb_tensor(&b, tok, 2, ne, LG_QTYPE_Q8_0, (uint64_t)i * 160);
    }
    bb_pad(&b, 32);
    size_t need = b.len + (size_t)N_T * 160;
    while (b.len < need)
        bb_put(&b, "\0", 1);
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK_MSG(ms < 500, "open took %.1f ms", ms);
    if (g) {
        const struct lg_gguf_value *a = NULL;
        CHECK_EQ_INT(lg_gguf_get_arr(g, "tokenizer.ggml.tokens", LG_GGUF_TYPE_STRING, &a, &err),
                     LG_OK);
        if (a)
            CHECK(a->v.arr.n == N_TOK && lg_str_eq(a->v.arr.strs[N_TOK - 1], "tok262143"));
        CHECK(lg_gguf_find_tensor(g, "blk.299.w") == &g->tensors[299]);
        lg_gguf_close(g);
    }
    free(b.p);
}

/* Allocation before tensor data stays within file size + 16 MiB: 2^20 - 1 empty nested
 * arrays take 12 bytes each on disk but a struct lg_gguf_value each in memory. */
static void test_alloc_budget(void)
{
    struct bb b = {0};
    const uint64_t n = (1u << 20) - 1;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "many");
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        bb_u32(&b, LG_GGUF_TYPE_UINT8);
        bb_u64(&b, 0);
    }
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    CHECK(n * sizeof(struct lg_gguf_value) > b.len + (16u << 20)); /* the premise */
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_ERR_NOMEM);
    CHECK(strstr(err.msg, "kv #0 'many' nested array at byte") != NULL &&
          strstr(err.msg, "exceeds the budget") != NULL);
    CHECK(g == NULL);
    /* a tenth of it fits */
    b.len = 0;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "many");
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u32(&b, LG_GGUF_TYPE_ARRAY);
    bb_u64(&b, n / 10);
    for (uint64_t i = 0; i < n / 10; i++) {
        bb_u32(&b, LG_GGUF_TYPE_UINT8);
        bb_u64(&b, 0);
    }
    CHECK_EQ_INT(open_bb(&b, &g, &err), LG_OK);
    if (g)
        CHECK(g->kv[0].val.v.arr.n == n / 10 && g->kv[0].val.v.arr.arrs[n / 10 - 1].v.arr.n == 0);
    lg_gguf_close(g);
    free(b.p);
}

static void test_names(void)
{
    CHECK_EQ_STR(lg_gguf_type_name(LG_GGUF_TYPE_UINT32), "u32");
    CHECK_EQ_STR(lg_gguf_type_name(LG_GGUF_TYPE_STRING), "string");
    CHECK_EQ_STR(lg_gguf_type_name(LG_GGUF_TYPE_FLOAT64), "f64");
    CHECK_EQ_STR(lg_gguf_type_name((enum lg_gguf_type)13), "unknown");
    CHECK_EQ_INT(lg_gguf_type_size(LG_GGUF_TYPE_INT16), 2);
    CHECK_EQ_INT(lg_gguf_type_size(LG_GGUF_TYPE_STRING), 0);
    struct lg_str s = {"abc", 3}, e = {NULL, 0};
    CHECK(lg_str_eq(s, "abc") && !lg_str_eq(s, "ab") && !lg_str_eq(s, "abcd"));
    CHECK(lg_str_eq(e, "") && !lg_str_eq(e, "a"));
}

int main(void)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/lg_test_gguf.XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_names();
    test_roundtrip();
    test_writer_rejects();
    test_v2_handmade();
    test_errors();
    test_big_vocab();
    test_alloc_budget();
    const char *files[] = {"sample.gguf", "copy.gguf"};
    for (size_t i = 0; i < 2; i++)
        unlink(tmp_path(files[i]));
    rmdir(g_tmpdir);
    return lg_test_done("test_gguf");
}
