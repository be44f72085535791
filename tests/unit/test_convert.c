/* test_convert.c: `convert` of each fixture checkpoint (tests/golden/model/<v>.hf, written by
 * transformers) must give the same metadata and byte-identical tensors as the gguf-py files
 * written by tools/make-fixtures with llama.cpp's names (F32 and Q8_0). Tokenizer keys and
 * general.name are not compared there (the fixtures have no tokenizer files); the vocabularies
 * are checked against llama.cpp's on their own: Gemma 4 tokenizer.json (test_vocab) and Gemma 3
 * tokenizer.model with added tokens, special ids and chat templates (test_spm_vocab), plus the
 * tokenizer.model protobuf reader (test_spm_proto). Also: the safetensors reader refuses
 * malformed headers with a clear error. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "model/convert.h"
#include "model/safetensors.h"
#include "quant/quant.h"
#include "test.h"

static bool skip_key(struct lg_str k)
{
    return (k.len >= 10 && !memcmp(k.ptr, "tokenizer.", 10)) || lg_str_eq(k, "general.name");
}

static size_t scalar_size(enum lg_gguf_type t)
{
    switch (t) {
    case LG_GGUF_TYPE_UINT8: case LG_GGUF_TYPE_INT8: case LG_GGUF_TYPE_BOOL: return 1;
    case LG_GGUF_TYPE_UINT16: case LG_GGUF_TYPE_INT16: return 2;
    case LG_GGUF_TYPE_UINT32: case LG_GGUF_TYPE_INT32: case LG_GGUF_TYPE_FLOAT32: return 4;
    default: return 8;
    }
}

static bool same_value(const struct lg_gguf_value *a, const struct lg_gguf_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case LG_GGUF_TYPE_STRING:
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len);
    case LG_GGUF_TYPE_ARRAY:
        if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n)
            return false;
        if (a->v.arr.elem_type == LG_GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < a->v.arr.n; i++)
                if (a->v.arr.strs[i].len != b->v.arr.strs[i].len ||
                    memcmp(a->v.arr.strs[i].ptr, b->v.arr.strs[i].ptr, a->v.arr.strs[i].len))
                    return false;
            return true;
        }
        return !memcmp(a->v.arr.data, b->v.arr.data,
                       (size_t)a->v.arr.n * scalar_size(a->v.arr.elem_type));
    case LG_GGUF_TYPE_FLOAT32:
    case LG_GGUF_TYPE_FLOAT64:
        return a->v.f64 == b->v.f64;
    default:
        return a->v.u64 == b->v.u64;
    }
}

static void compare_files(const char *want_path, const char *got_path, const char *what)
{
    struct lg_gguf *a = NULL, *b = NULL;
    struct lg_err err = {0};
    CHECK_MSG(lg_gguf_open(want_path, &a, &err) == LG_OK, "%s: %s", want_path, err.msg);
    CHECK_MSG(lg_gguf_open(got_path, &b, &err) == LG_OK, "%s: %s", got_path, err.msg);
    if (!a || !b)
        goto done;
    int n_kv = 0, n_t = 0;
    for (int pass = 0; pass < 2; pass++) {
        const struct lg_gguf *x = pass ? b : a, *y = pass ? a : b;
        for (uint64_t i = 0; i < x->n_kv; i++) {
            char key[160];
            snprintf(key, sizeof key, "%.*s", (int)x->kv[i].key.len, x->kv[i].key.ptr);
            if (skip_key(x->kv[i].key))
                continue;
            const struct lg_gguf_kv *o = lg_gguf_find_kv(y, key);
            CHECK_MSG(o != NULL, "%s: key %s only in the %s file", what, key,
                      pass ? "converted" : "reference");
            if (o && !pass)
                CHECK_MSG(same_value(&x->kv[i].val, &o->val), "%s: key %s differs", what, key);
            n_kv += !pass;
        }
    }
    CHECK_EQ_INT(a->n_tensors, b->n_tensors);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &a->tensors[i];
        char name[160];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const struct lg_gguf_tensor *u = lg_gguf_find_tensor(b, name);
        CHECK_MSG(u != NULL, "%s: tensor %s missing", what, name);
        if (!u)
            continue;
        CHECK_MSG(t->type == u->type, "%s: %s type %u vs %u", what, name, t->type, u->type);
        CHECK_MSG(!memcmp(t->ne, u->ne, sizeof t->ne), "%s: %s shape", what, name);
        CHECK_MSG(t->nbytes == u->nbytes && !memcmp(t->data, u->data, (size_t)t->nbytes),
                  "%s: %s data differs", what, name);
        n_t++;
    }
    CHECK_MSG(n_kv >= 15 && n_t >= 50, "%s: compared %d keys, %d tensors", what, n_kv, n_t);
done:
    lg_gguf_close(a);
    lg_gguf_close(b);
}

static void test_fixtures(void)
{
    const char *variants[] = {"gemma4_e2b", "gemma4_26b", "gemma4_31b", "gemma3"};
    const char *types[] = {"f32", "q8_0"};
    const uint32_t qt[] = {LG_QTYPE_F32, LG_QTYPE_Q8_0};
    char out[256];
    snprintf(out, sizeof out, "/tmp/lg_test_convert_%d.gguf", (int)getpid());
    for (int v = 0; v < 4; v++) {
        for (int t = 0; t < 2; t++) {
            char dir[512], want[512], what[64];
            snprintf(dir, sizeof dir, "%s/golden/model/%s.hf", lg_test_data_dir(), variants[v]);
            snprintf(want, sizeof want, "%s/golden/model/%s.%s.gguf", lg_test_data_dir(),
                     variants[v], types[t]);
            snprintf(what, sizeof what, "%s %s", variants[v], types[t]);
            struct lg_err err = {0};
            enum lg_status st = lg_convert_hf(dir, out, qt[t], &err);
            CHECK_MSG(st == LG_OK, "convert %s: %s", what, err.msg);
            if (st == LG_OK)
                compare_files(want, out, what);
            unlink(out);
        }
    }
    /* f16 / bf16 also convert (content checked by the loader in test_model style). */
    struct lg_err err = {0};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/golden/model/gemma4_e2b.hf", lg_test_data_dir());
    CHECK(lg_convert_hf(dir, out, LG_QTYPE_BF16, &err) == LG_OK);
    unlink(out);
    CHECK(lg_convert_hf(dir, out, LG_QTYPE_Q4_K, &err) == LG_ERR_INVALID_ARG);
    CHECK(lg_convert_hf("/nonexistent-dir", out, LG_QTYPE_F32, &err) == LG_ERR_IO);
    CHECK(access(out, F_OK) != 0);
}

/* Released Gemma 4 config.json files use global_head_dim / num_global_key_value_heads instead
 * of the per_layer_config that newer transformers versions write: both must convert alike. */
static void test_old_config_format(void)
{
    const char *variants[] = {"gemma4_e2b", "gemma4_26b"};
    for (int v = 0; v < 2; v++) {
        char src[512], dir[256], p[600], out[300], want[512];
        snprintf(src, sizeof src, "%s/golden/model/%s.hf", lg_test_data_dir(), variants[v]);
        snprintf(dir, sizeof dir, "/tmp/lg_test_oldcfg_%d", (int)getpid());
        mkdir(dir, 0700);
        snprintf(p, sizeof p, "%s/config.json", src);
        json_t *cfg = json_load_file(p, 0, NULL);
        CHECK(cfg != NULL);
        if (!cfg)
            continue;
        json_t *plc = json_object_get(cfg, "per_layer_config");
        const char *k;
        json_t *o;
        json_int_t ghd = 0, ghkv = -1;
        json_object_foreach(plc, k, o) {
            ghd = json_integer_value(json_object_get(o, "head_dim"));
            if (json_object_get(o, "num_key_value_heads"))
                ghkv = json_integer_value(json_object_get(o, "num_key_value_heads"));
        }
        CHECK(ghd > 0);
        json_object_del(cfg, "per_layer_config");
        json_object_set_new(cfg, "global_head_dim", json_integer(ghd));
        if (ghkv > 0)
            json_object_set_new(cfg, "num_global_key_value_heads", json_integer(ghkv));
        snprintf(p, sizeof p, "%s/config.json", dir);
        CHECK(json_dump_file(cfg, p, 0) == 0);
        json_decref(cfg);
        char st_src[600], st_dst[300];
        snprintf(st_src, sizeof st_src, "%s/model.safetensors", src);
        snprintf(st_dst, sizeof st_dst, "%s/model.safetensors", dir);
        char abs_src[4096];
        CHECK(realpath(st_src, abs_src) != NULL);
        CHECK(symlink(abs_src, st_dst) == 0);
        snprintf(out, sizeof out, "%s/out.gguf", dir);
        snprintf(want, sizeof want, "%s/golden/model/%s.f32.gguf", lg_test_data_dir(),
                 variants[v]);
        struct lg_err err = {0};
        CHECK_MSG(lg_convert_hf(dir, out, LG_QTYPE_F32, &err) == LG_OK, "%s", err.msg);
        compare_files(want, out, "old-format config");
        unlink(out);
        unlink(st_dst);
        unlink(p);
        rmdir(dir);
    }
}

/* Gemma 4 vocabulary: the tokenizer tests' HF tokenizer.json, converted, must give the same
 * tokenizer.* keys as the llama.cpp-style vocab GGUF written from it by
 * tools/make-gemma4-vocab.py. (Its vocab size differs from the fixture model's embedding, so
 * only the metadata is compared; the loader would refuse the mismatch.) */
static void test_vocab(void)
{
    char src[512], dir[256], p[600], tj[512], out[300], want[512], abs_src[4096];
    snprintf(src, sizeof src, "%s/golden/model/gemma4_e2b.hf", lg_test_data_dir());
    snprintf(tj, sizeof tj, "%s/golden/tok/gemma4-mini-tokenizer.json", lg_test_data_dir());
    snprintf(want, sizeof want, "%s/golden/tok/gemma4-mini-vocab.gguf", lg_test_data_dir());
    if (access(tj, R_OK) != 0 || access(want, R_OK) != 0) {
        CHECK_MSG(0, "missing %s or %s", tj, want);
        return;
    }
    snprintf(dir, sizeof dir, "/tmp/lg_test_vocab_%d", (int)getpid());
    mkdir(dir, 0700);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", src, files[i]);
        CHECK(realpath(p, abs_src) != NULL);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CHECK(symlink(abs_src, p) == 0);
    }
    CHECK(realpath(tj, abs_src) != NULL);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(symlink(abs_src, p) == 0);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    struct lg_err err = {0};
    CHECK_MSG(lg_convert_hf(dir, out, LG_QTYPE_F32, &err) == LG_OK, "%s", err.msg);
    struct lg_gguf *a = NULL, *b = NULL;
    CHECK(lg_gguf_open(want, &a, &err) == LG_OK);
    CHECK(lg_gguf_open(out, &b, &err) == LG_OK);
    int n = 0;
    for (uint64_t i = 0; a && b && i < a->n_kv; i++) {
        struct lg_str k = a->kv[i].key;
        if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10))
            continue;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
        const struct lg_gguf_kv *o = lg_gguf_find_kv(b, key);
        CHECK_MSG(o && same_value(&a->kv[i].val, &o->val), "vocab key %s differs", key);
        n++;
    }
    CHECK_MSG(n == 12, "compared %d tokenizer keys", n);
    lg_gguf_close(a);
    lg_gguf_close(b);
    unlink(out);
    /* A malformed tokenizer.json is an error, not a silently vocab-less file. */
    unlink(p);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}}}", f);
        fclose(f);
    }
    CHECK(lg_convert_hf(dir, out, LG_QTYPE_F32, &err) == LG_ERR_FORMAT);
    CHECK(access(out, F_OK) != 0);
    unlink(p);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* ---- Gemma 3 SentencePiece vocabulary (tests/golden/model/gemma3_spm.hf) ----
 * tools/make-spm-golden.py built that checkpoint to hit the reference converter's corner
 * cases and stored llama.cpp's tokenizer.* keys for it in gemma3_spm.vocab.gguf. */

static void link_into(const char *src_dir, const char *name, const char *dst_dir)
{
    char p[700], abs_src[4096];
    snprintf(p, sizeof p, "%s/%s", src_dir, name);
    CHECK_MSG(realpath(p, abs_src) != NULL, "missing %s", p);
    snprintf(p, sizeof p, "%s/%s", dst_dir, name);
    CHECK(symlink(abs_src, p) == 0);
}

static void write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(data, 1, n, f) == n);
        fclose(f);
    }
}

static const char *const SPM_FILES[] = {"config.json", "tokenizer.model", "tokenizer.json",
                                        "tokenizer_config.json", "added_tokens.json",
                                        "chat_template.jinja", "additional_chat_templates"};
enum { N_SPM_FILES = sizeof SPM_FILES / sizeof SPM_FILES[0] };

static void spm_dir_setup(const char *dir)
{
    char src[512], w[512];
    snprintf(src, sizeof src, "%s/golden/model/gemma3_spm.hf", lg_test_data_dir());
    snprintf(w, sizeof w, "%s/golden/model/gemma3.hf", lg_test_data_dir());
    mkdir(dir, 0700);
    for (int i = 0; i < N_SPM_FILES; i++)
        link_into(src, SPM_FILES[i], dir);
    link_into(w, "model.safetensors", dir);
}

static void spm_dir_teardown(const char *dir)
{
    char p[600];
    for (int i = 0; i < N_SPM_FILES; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, SPM_FILES[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

/* Converts dir and expects status want; LG_OK results are returned opened in *out. */
static void spm_convert(const char *dir, enum lg_status want, const char *needle,
                        struct lg_gguf **out)
{
    char path[600];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    struct lg_err err = {0};
    enum lg_status s = lg_convert_hf(dir, path, LG_QTYPE_F32, &err);
    CHECK_MSG(s == want, "convert: status %d, want %d (%s)", (int)s, (int)want, err.msg);
    if (needle)
        CHECK_MSG(strstr(err.msg, needle) != NULL, "\"%s\" lacks \"%s\"", err.msg, needle);
    if (s != LG_OK) {
        CHECK(access(path, F_OK) != 0);
        return;
    }
    CHECK_MSG(lg_gguf_open(path, out, &err) == LG_OK, "%s", err.msg);
    unlink(path);
}

static void test_spm_vocab(void)
{
    char dir[128], want_path[512];
    snprintf(dir, sizeof dir, "/tmp/lg_test_spm_%d", (int)getpid());
    snprintf(want_path, sizeof want_path, "%s/golden/model/gemma3_spm.vocab.gguf",
             lg_test_data_dir());
    struct lg_gguf *want = NULL, *got = NULL;
    struct lg_err err = {0};
    CHECK_MSG(lg_gguf_open(want_path, &want, &err) == LG_OK, "%s", err.msg);
    spm_dir_setup(dir);
    spm_convert(dir, LG_OK, NULL, &got);
    int n = 0;
    for (int pass = 0; want && got && pass < 2; pass++) {
        const struct lg_gguf *x = pass ? got : want, *y = pass ? want : got;
        for (uint64_t i = 0; i < x->n_kv; i++) {
            struct lg_str k = x->kv[i].key;
            if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10))
                continue;
            char key[160];
            snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
            const struct lg_gguf_kv *o = lg_gguf_find_kv(y, key);
            CHECK_MSG(o != NULL, "spm: key %s only in the %s file", key,
                      pass ? "converted" : "llama.cpp");
            if (o && !pass) {
                CHECK_MSG(same_value(&x->kv[i].val, &o->val), "spm: key %s differs", key);
                n++;
            }
        }
    }
    CHECK_MSG(n == 18, "spm: compared %d tokenizer keys", n);
    if (got) {
        /* the reference cuts token_embd to the vocabulary; here the 256 rows are fewer */
        const struct lg_gguf_tensor *t = lg_gguf_find_tensor(got, "token_embd.weight");
        CHECK(t && t->ne[0] == 32 && t->ne[1] == 256);
        const struct lg_gguf_kv *toks = lg_gguf_find_kv(got, "tokenizer.ggml.tokens");
        CHECK(toks && toks->val.v.arr.n == 300);
    }
    lg_gguf_close(got);
    got = NULL;

    /* Without tokenizer_config.json: no chat template (the reference reads it only then),
     * special ids from config.json alone (its eos_token_id is a list: ignored). */
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    unlink(p);
    spm_convert(dir, LG_OK, NULL, &got);
    if (got) {
        CHECK(lg_gguf_find_kv(got, "tokenizer.chat_template") == NULL);
        CHECK(lg_gguf_find_kv(got, "tokenizer.ggml.eos_token_id") == NULL);
        const struct lg_gguf_kv *b = lg_gguf_find_kv(got, "tokenizer.ggml.bos_token_id");
        CHECK(b && b->val.v.u64 == 2);
        const struct lg_gguf_kv *ty = lg_gguf_find_kv(got, "tokenizer.ggml.token_type");
        /* <mask> (4) is a CONTROL piece again, 7 a USER_DEFINED piece read as NORMAL */
        CHECK(ty && ty->val.v.arr.n == 300 && lg_gguf_arr_i64(&ty->val, 4) == 3 &&
              lg_gguf_arr_i64(&ty->val, 7) == 1 && lg_gguf_arr_i64(&ty->val, 280) == 5);
    }
    lg_gguf_close(got);
    got = NULL;

    /* Malformed inputs: an error naming the file, and no output. */
    static const char bad_dec[] = "{\"added_tokens_decoder\": {\"-1\": {\"content\": \"x\"}}}";
    write_file(dir, "tokenizer_config.json", bad_dec, strlen(bad_dec));
    spm_convert(dir, LG_ERR_FORMAT, "added_tokens_decoder", NULL);
    static const char bad_tc[] = "{\"bos_token\": ";
    write_file(dir, "tokenizer_config.json", bad_tc, strlen(bad_tc));
    spm_convert(dir, LG_ERR_FORMAT, "tokenizer_config.json", NULL);
    unlink(p);
    static const char bad_added[] = "{\"<x>\": \"7\"}";
    write_file(dir, "added_tokens.json", bad_added, strlen(bad_added));
    spm_convert(dir, LG_ERR_FORMAT, "added_tokens.json", NULL);
    snprintf(p, sizeof p, "%s/added_tokens.json", dir);
    unlink(p);
    static const uint8_t bad_model[] = {0x0a, 0x05, 0x0a, 0x03, 'a'}; /* length past the end */
    write_file(dir, "tokenizer.model", bad_model, sizeof bad_model);
    spm_convert(dir, LG_ERR_FORMAT, "tokenizer.model", NULL);
    spm_dir_teardown(dir);
    lg_gguf_close(want);
}

/* The protobuf reader on hand-made inputs: defaults, last-one-wins, skipped unknown fields,
 * and each kind of malformation refused with a message. */
static void expect_spm(const uint8_t *buf, size_t n, enum lg_status want, const char *needle)
{
    struct lg_spm_model *m = NULL;
    struct lg_err err = {0};
    enum lg_status s = lg_spm_parse(buf, n, &m, &err);
    CHECK_MSG(s == want, "spm parse: status %d, want %d (%s)", (int)s, (int)want, err.msg);
    if (needle)
        CHECK_MSG(strstr(err.msg, needle) != NULL, "\"%s\" lacks \"%s\"", err.msg, needle);
    CHECK(s == LG_OK ? m != NULL : m == NULL);
    lg_spm_destroy(m);
}

static void test_spm_proto(void)
{
    /* pieces: "<unk>" UNKNOWN; "ab" score -1.5 given twice (last wins: -2.0), type absent
     * (NORMAL), an unknown varint field 9 and a fixed64 field 10 skipped */
    static const uint8_t ok[] = {
        0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
        0x0a, 0x19, 0x0a, 0x02, 'a', 'b', 0x15, 0x00, 0x00, 0xc0, 0xbf, 0x15, 0x00, 0x00,
        0x00, 0xc0, 0x48, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8,
        0x12, 0x02, 0x18, 0x02, /* trainer_spec.model_type = BPE */
        0x1a, 0x02, 0x18, 0x00, /* normalizer_spec.add_dummy_prefix = false */
    };
    struct lg_spm_model *m = NULL;
    struct lg_err err = {0};
    CHECK_MSG(lg_spm_parse(ok, sizeof ok, &m, &err) == LG_OK, "%s", err.msg);
    if (m) {
        CHECK_EQ_INT(m->n_pieces, 2);
        CHECK(m->pieces[0].type == LG_SPM_UNKNOWN && m->pieces[0].score == 0.0f);
        CHECK_EQ_STR(m->pieces[1].text, "ab");
        CHECK(m->pieces[1].type == LG_SPM_NORMAL && m->pieces[1].score == -2.0f);
        CHECK(m->model_type == 2 && !m->add_dummy_prefix && !m->byte_fallback);
    }
    lg_spm_destroy(m);
    /* every truncation inside the pieces is refused, except at the end of the first piece
     * (byte 11), which leaves a valid one-piece model (the pieces end at byte 38) */
    for (size_t n = 0; n < 38; n++) {
        struct lg_spm_model *t = NULL;
        enum lg_status s = lg_spm_parse(ok, n, &t, &err);
        CHECK_MSG(n == 11 ? s == LG_OK && t && t->n_pieces == 1 : s == LG_ERR_FORMAT && !t,
                  "truncated at %zu: status %d", n, (int)s);
        lg_spm_destroy(t);
    }
    static const uint8_t wrong_wire_piece[] = {0x0a, 0x07, 0x0a, 0x01, 'a', 0x18, 0x02,
                                               0x10, 0x01};
    expect_spm(wrong_wire_piece, sizeof wrong_wire_piece, LG_ERR_FORMAT, "wire type");
    static const uint8_t wrong_wire_top[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x02,
                                             0x0d, 0, 0, 0, 0};
    expect_spm(wrong_wire_top, 7, LG_OK, NULL);
    expect_spm(wrong_wire_top, sizeof wrong_wire_top, LG_ERR_FORMAT, "wire type");
    static const uint8_t bad_type[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x07};
    expect_spm(bad_type, sizeof bad_type, LG_ERR_FORMAT, "type 7");
    static const uint8_t empty_piece[] = {0x0a, 0x02, 0x18, 0x02};
    expect_spm(empty_piece, sizeof empty_piece, LG_ERR_FORMAT, "empty");
    static const uint8_t nul_piece[] = {0x0a, 0x06, 0x0a, 0x02, 'a', 0, 0x18, 0x02};
    expect_spm(nul_piece, sizeof nul_piece, LG_ERR_FORMAT, "UTF-8");
    static const uint8_t two_unk[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x02,
                                      0x0a, 0x05, 0x0a, 0x01, 'b', 0x18, 0x02};
    expect_spm(two_unk, sizeof two_unk, LG_ERR_FORMAT, "UNKNOWN");
    static const uint8_t byte_no_fb[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x02, 0x0a, 0x0a,
                                         0x0a, 0x06, '<', '0', 'x', '4', '1', '>', 0x18, 0x06};
    expect_spm(byte_no_fb, sizeof byte_no_fb, LG_ERR_FORMAT, "byte_fallback");
    static const uint8_t bad_nested[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x02,
                                         0x12, 0x02, 0x18, 0x80};
    expect_spm(bad_nested, sizeof bad_nested, LG_ERR_FORMAT, "trainer_spec");
    static const uint8_t field0[] = {0x02, 0x00};
    expect_spm(field0, sizeof field0, LG_ERR_FORMAT, "field number");
    expect_spm(ok, 0, LG_ERR_FORMAT, "no pieces");
}

/* A safetensors file: 8-byte LE header length, header JSON, data. */
static size_t make_st(uint8_t *buf, const char *json, size_t data_len)
{
    size_t n = strlen(json);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0, data_len);
    return 8 + n + data_len;
}

static void expect_st(const char *json, size_t data_len, enum lg_status want, const char *needle)
{
    uint8_t buf[1024];
    size_t n = make_st(buf, json, data_len);
    struct lg_st *st = NULL;
    struct lg_err err = {0};
    enum lg_status s = lg_st_open_buffer(buf, n, &st, &err);
    CHECK_MSG(s == want, "%s: status %d (%s)", json, (int)s, err.msg);
    if (needle)
        CHECK_MSG(strstr(err.msg, needle) != NULL, "\"%s\" lacks \"%s\"", err.msg, needle);
    if (s == LG_OK) {
        CHECK(st->n_tensors >= 1);
        const struct lg_st_tensor *t = lg_st_find(st, "a");
        CHECK(t && t->n_elem == 4 && lg_st_get(t, 3) == 0.0f);
    }
    lg_st_close(st);
}

static void test_safetensors(void)
{
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, LG_OK,
              NULL);
    expect_st("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[4],"
              "\"data_offsets\":[0,8]}}", 8, LG_OK, NULL);
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,32]}}", 16,
              LG_ERR_FORMAT, "outside");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16,
              LG_ERR_FORMAT, "bytes");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16,
              LG_ERR_FORMAT, "shape");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", 16, LG_ERR_FORMAT, "data_offsets");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
              "\"data_offsets\":[0,16]}}", 16, LG_ERR_FORMAT, "shape");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
              LG_ERR_FORMAT, "JSON");
    expect_st("[1,2]", 0, LG_ERR_FORMAT, "object");
    expect_st("{\"a\":", 0, LG_ERR_FORMAT, "JSON");
    /* header length larger than the file */
    uint8_t buf[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    struct lg_st *st = NULL;
    struct lg_err err = {0};
    CHECK(lg_st_open_buffer(buf, 10, &st, &err) == LG_ERR_FORMAT && st == NULL);
    CHECK(lg_st_open_buffer(buf, 5, &st, &err) == LG_ERR_FORMAT);

    /* A shard index naming a file outside the directory is refused. */
    char dir[128], p[256];
    snprintf(dir, sizeof dir, "/tmp/lg_test_st_%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs("{\"weight_map\":{\"a\":\"../../etc/passwd\"}}", f);
        fclose(f);
        CHECK(lg_st_open_dir(dir, &st, &err) == LG_ERR_FORMAT);
        CHECK(strstr(err.msg, "weight_map") != NULL);
        unlink(p);
    }
    CHECK(lg_st_open_dir(dir, &st, &err) == LG_ERR_NOT_FOUND);
    rmdir(dir);
}

int main(void)
{
    test_fixtures();
    test_old_config_format();
    test_vocab();
    test_spm_vocab();
    test_spm_proto();
    test_safetensors();
    return lg_test_done("test_convert");
}
