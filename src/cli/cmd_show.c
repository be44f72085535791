/* cmd_show.c: `localgemma show FILE.gguf [--json] [--full] [--hash]`.
 *
 * Prints what a GGUF file holds: header figures, architecture, file type, parameter count,
 * every metadata pair (arrays longer than a few elements summarised as type, length and the
 * first elements, unless --full) and the tensor table. --json prints one JSON object instead;
 * --hash adds the sha256 of each tensor's bytes (reads all tensor data). The file is opened
 * with the validating reader, so a malformed file yields its one-line error and exit 1.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/sha256.h"
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "store/store.h"

enum { SHOW_ARR_HEAD = 8 };

struct show_opts {
    bool json, full, hash;
    const char *path;
};

static void show_usage(FILE *f)
{
    fprintf(f,
            "usage: localgemma show FILE.gguf [--json] [--full] [--hash]\n"
            "  --json  one JSON object: header, metadata, tensors\n"
            "  --full  print arrays in full (default: type, length, first %d elements)\n"
            "  --hash  add the sha256 of each tensor's bytes\n",
            (int)SHOW_ARR_HEAD);
}

static const char *show_tensor_type(uint32_t type)
{
    const struct lg_qtype_info *qi = lg_qtype_get(type);
    return qi ? qi->name : "?";
}

static uint64_t show_n_elems(const struct lg_gguf_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        n *= t->ne[d]; /* < 2^62: checked by the reader */
    return n;
}

static void show_hash(const struct lg_gguf_tensor *t, char hex[LG_SHA256_HEX_LEN + 1])
{
    uint8_t digest[LG_SHA256_BYTES];
    lg_sha256(t->data ? t->data : "", (size_t)t->nbytes, digest);
    lg_sha256_hex(digest, hex);
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 (overlongs and surrogates refused). */
static size_t show_utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (len > n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* ---- text output ---- */

/* A string from the file, quoted: valid UTF-8 passes, control and invalid bytes become \xNN
 * (the terminal never sees raw bytes from the file). */
static void show_print_str_q(FILE *f, struct lg_str s, size_t max, bool quote)
{
    if (quote)
        fputc('"', f);
    size_t n = s.len > max ? max : (size_t)s.len;
    const unsigned char *p = (const unsigned char *)s.ptr;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = show_utf8_len(p + i, n - i);
        if (len > 1) {
            fwrite(p + i, 1, len, f);
            i += len;
            continue;
        }
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc((int)c, f);
        i++;
    }
    if (quote)
        fputc('"', f);
    if (s.len > max)
        fprintf(f, "...(%" PRIu64 " bytes)", s.len);
}

static void show_print_str(FILE *f, struct lg_str s, size_t max)
{
    show_print_str_q(f, s, max, true);
}

/* The shortest %g form that reads back as the same float. */
static void show_print_f32(FILE *f, double v)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtof(buf, NULL) == (float)v || prec == 9)
            break;
    }
    fputs(buf, f);
}

static void show_print_scalar(FILE *f, const struct lg_gguf_value *v)
{
    switch (v->type) {
    case LG_GGUF_TYPE_INT8:
    case LG_GGUF_TYPE_INT16:
    case LG_GGUF_TYPE_INT32:
    case LG_GGUF_TYPE_INT64:
        fprintf(f, "%" PRId64, v->v.i64);
        break;
    case LG_GGUF_TYPE_FLOAT32:
        show_print_f32(f, v->v.f64);
        break;
    case LG_GGUF_TYPE_FLOAT64:
        fprintf(f, "%.17g", v->v.f64);
        break;
    case LG_GGUF_TYPE_BOOL:
        fputs(v->v.u64 ? "true" : "false", f);
        break;
    case LG_GGUF_TYPE_STRING:
        show_print_str(f, v->v.str, 200);
        break;
    default:
        fprintf(f, "%" PRIu64, v->v.u64);
        break;
    }
}

static void show_print_arr(FILE *f, const struct lg_gguf_value *v, bool full)
{
    uint64_t n = v->v.arr.n, shown = full || n <= SHOW_ARR_HEAD ? n : SHOW_ARR_HEAD;
    enum lg_gguf_type et = v->v.arr.elem_type;
    fprintf(f, "[%s x %" PRIu64 "] [", lg_gguf_type_name(et), n);
    for (uint64_t i = 0; i < shown; i++) {
        if (i)
            fputs(", ", f);
        if (et == LG_GGUF_TYPE_STRING) {
            show_print_str(f, v->v.arr.strs[i], 64);
        } else if (et == LG_GGUF_TYPE_ARRAY) {
            show_print_arr(f, &v->v.arr.arrs[i], full);
        } else {
            struct lg_gguf_value e = {.type = et};
            if (et == LG_GGUF_TYPE_FLOAT32 || et == LG_GGUF_TYPE_FLOAT64)
                e.v.f64 = lg_gguf_arr_f64(v, i);
            else
                e.v.i64 = lg_gguf_arr_i64(v, i); /* same bits as u64 for unsigned types */
            show_print_scalar(f, &e);
        }
    }
    fputs(shown < n ? ", ...]" : "]", f);
}

static void show_shape(char *buf, size_t n, const struct lg_gguf_tensor *t)
{
    size_t k = 0;
    buf[0] = '\0';
    for (uint32_t d = 0; d < t->n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRIu64, d ? " x " : "", t->ne[d]);
}

static void show_text(const struct lg_gguf *g, const struct show_opts *o)
{
    FILE *f = stdout;
    struct lg_str arch = {"?", 1};
    lg_gguf_get_str(g, "general.architecture", &arch, NULL);
    uint64_t n_params = 0, n_bytes = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        n_params += show_n_elems(&g->tensors[i]);
        n_bytes += g->tensors[i].nbytes;
    }
    fprintf(f, "file:         %s\n", o->path);
    fprintf(f,
            "format:       GGUF v%u, %" PRIu64 " bytes, alignment %u, data at byte %" PRIu64 "\n",
            g->version, g->size, g->alignment, g->data_offset);
    fputs("architecture: ", f);
    show_print_str(f, arch, 64);
    fputc('\n', f);
    uint32_t ft;
    if (lg_gguf_get_u32(g, "general.file_type", &ft, NULL) == LG_OK) {
        const char *nm = lg_gguf_file_type_name(ft);
        fprintf(f, "file type:    %s (%u)\n", nm ? nm : "unknown", ft);
    }
    fprintf(f, "parameters:   %" PRIu64 " (%.2f M)\n", n_params, (double)n_params / 1e6);
    fprintf(f, "tensor data:  %" PRIu64 " bytes (%.2f MiB)\n", n_bytes,
            (double)n_bytes / (1024.0 * 1024.0));
    fprintf(f, "\nmetadata (%" PRIu64 " keys):\n", g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct lg_gguf_kv *kv = &g->kv[i];
        fputs("  ", f);
        show_print_str_q(f, kv->key, 256, false);
        if (kv->val.type == LG_GGUF_TYPE_ARRAY) {
            fputs(" = ", f);
            show_print_arr(f, &kv->val, o->full);
        } else {
            fprintf(f, " %s = ", lg_gguf_type_name(kv->val.type));
            show_print_scalar(f, &kv->val);
        }
        fputc('\n', f);
    }
    fprintf(f, "\ntensors (%" PRIu64 "):\n", g->n_tensors);
    fprintf(f, "  %-40s %-8s %-24s %14s%s\n", "name", "type", "shape", "bytes",
            o->hash ? "  sha256" : "");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        char shape[128], hex[LG_SHA256_HEX_LEN + 1] = "";
        show_shape(shape, sizeof shape, t);
        fputs("  ", f);
        int w = (int)(t->name.len < 40 ? 40 - t->name.len : 0);
        show_print_str_q(f, t->name, 200, false);
        fprintf(f, "%*s %-8s %-24s %14" PRIu64, w, "", show_tensor_type(t->type), shape, t->nbytes);
        if (o->hash) {
            show_hash(t, hex);
            fprintf(f, "  %s", hex);
        }
        fputc('\n', f);
    }
}

/* ---- JSON output ---- */

/* jansson wants valid UTF-8: invalid bytes become U+FFFD (the caller marks the value). */
static json_t *show_json_str(struct lg_str s, bool *lossy)
{
    json_t *j = json_stringn(s.ptr ? s.ptr : "", (size_t)s.len);
    if (j)
        return j;
    char *buf = malloc((size_t)s.len * 3 + 1);
    if (!buf)
        return json_null();
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s.ptr;
    for (size_t i = 0; i < s.len;) {
        /* copy one valid UTF-8 sequence, or emit U+FFFD for one bad byte */
        size_t len = show_utf8_len(p + i, (size_t)s.len - i);
        if (len) {
            memcpy(buf + k, p + i, len);
            k += len;
            i += len;
        } else {
            memcpy(buf + k, "\xef\xbf\xbd", 3);
            k += 3;
            i += 1;
        }
    }
    *lossy = true;
    j = json_stringn(buf, k);
    free(buf);
    return j ? j : json_null();
}

static json_t *show_json_num(const struct lg_gguf_value *v)
{
    switch (v->type) {
    case LG_GGUF_TYPE_INT8:
    case LG_GGUF_TYPE_INT16:
    case LG_GGUF_TYPE_INT32:
    case LG_GGUF_TYPE_INT64:
        return json_integer((json_int_t)v->v.i64);
    case LG_GGUF_TYPE_FLOAT32:
    case LG_GGUF_TYPE_FLOAT64:
        if (isnan(v->v.f64))
            return json_string("nan");
        if (isinf(v->v.f64))
            return json_string(v->v.f64 > 0 ? "inf" : "-inf");
        return json_real(v->v.f64);
    case LG_GGUF_TYPE_BOOL:
        return json_boolean(v->v.u64 != 0);
    default:
        if (v->v.u64 > (uint64_t)INT64_MAX) { /* JSON integers are int64 in jansson */
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRIu64, v->v.u64);
            return json_string(buf);
        }
        return json_integer((json_int_t)v->v.u64);
    }
}

static json_t *show_json_value(const struct lg_gguf_value *v, bool full, bool *lossy);

/* The elements of an array value (all, or the first few). */
static json_t *show_json_elems(const struct lg_gguf_value *v, bool full, bool *lossy)
{
    json_t *a = json_array();
    uint64_t n = v->v.arr.n, shown = full || n <= SHOW_ARR_HEAD ? n : SHOW_ARR_HEAD;
    enum lg_gguf_type et = v->v.arr.elem_type;
    for (uint64_t i = 0; i < shown; i++) {
        json_t *e;
        if (et == LG_GGUF_TYPE_STRING) {
            e = show_json_str(v->v.arr.strs[i], lossy);
        } else if (et == LG_GGUF_TYPE_ARRAY) {
            e = show_json_value(&v->v.arr.arrs[i], full, lossy);
        } else {
            struct lg_gguf_value s = {.type = et};
            if (et == LG_GGUF_TYPE_FLOAT32 || et == LG_GGUF_TYPE_FLOAT64)
                s.v.f64 = lg_gguf_arr_f64(v, i);
            else if (et == LG_GGUF_TYPE_INT8 || et == LG_GGUF_TYPE_INT16 ||
                     et == LG_GGUF_TYPE_INT32 || et == LG_GGUF_TYPE_INT64)
                s.v.i64 = lg_gguf_arr_i64(v, i);
            else
                s.v.u64 = (uint64_t)lg_gguf_arr_i64(v, i);
            e = show_json_num(&s);
        }
        json_array_append_new(a, e);
    }
    return a;
}

/* {"type": "u32", "value": 5} or {"type": "array", "elem_type": "string", "n": 262144,
 *  "value": [first elements], "truncated": true} */
static json_t *show_json_value(const struct lg_gguf_value *v, bool full, bool *lossy)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(lg_gguf_type_name(v->type)));
    if (v->type == LG_GGUF_TYPE_ARRAY) {
        json_object_set_new(o, "elem_type", json_string(lg_gguf_type_name(v->v.arr.elem_type)));
        json_object_set_new(o, "n", json_integer((json_int_t)v->v.arr.n));
        json_object_set_new(o, "value", show_json_elems(v, full, lossy));
        if (!full && v->v.arr.n > SHOW_ARR_HEAD)
            json_object_set_new(o, "truncated", json_true());
    } else if (v->type == LG_GGUF_TYPE_STRING) {
        json_object_set_new(o, "value", show_json_str(v->v.str, lossy));
    } else {
        json_object_set_new(o, "value", show_json_num(v));
    }
    return o;
}

static int show_json(const struct lg_gguf *g, const struct show_opts *o)
{
    json_t *root = json_object();
    uint64_t n_params = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        n_params += show_n_elems(&g->tensors[i]);
    json_object_set_new(root, "path", json_string(o->path));
    json_object_set_new(root, "version", json_integer(g->version));
    json_object_set_new(root, "size", json_integer((json_int_t)g->size));
    json_object_set_new(root, "alignment", json_integer(g->alignment));
    json_object_set_new(root, "data_offset", json_integer((json_int_t)g->data_offset));
    bool lossy = false;
    struct lg_str arch;
    if (lg_gguf_get_str(g, "general.architecture", &arch, NULL) == LG_OK)
        json_object_set_new(root, "architecture", show_json_str(arch, &lossy));
    uint32_t ft;
    if (lg_gguf_get_u32(g, "general.file_type", &ft, NULL) == LG_OK) {
        const char *nm = lg_gguf_file_type_name(ft);
        json_object_set_new(root, "file_type", nm ? json_string(nm) : json_null());
        json_object_set_new(root, "file_type_id", json_integer(ft));
    }
    json_object_set_new(root, "n_params", json_integer((json_int_t)n_params));
    json_object_set_new(root, "n_kv", json_integer((json_int_t)g->n_kv));
    json_t *md = json_object();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct lg_gguf_kv *kv = &g->kv[i];
        bool kl = false;
        json_t *v = show_json_value(&kv->val, o->full, &lossy);
        json_t *k = show_json_str(kv->key, &kl); /* keys have no NUL: checked by the reader */
        json_object_set_new(md, json_string_value(k) ? json_string_value(k) : "?", v);
        json_decref(k);
        lossy |= kl;
    }
    json_object_set_new(root, "metadata", md);
    json_t *ts = json_array();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        json_t *jt = json_object();
        json_object_set_new(jt, "name", show_json_str(t->name, &lossy));
        json_object_set_new(jt, "type", json_string(show_tensor_type(t->type)));
        json_object_set_new(jt, "type_id", json_integer(t->type));
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
        json_object_set_new(jt, "shape", shape);
        json_object_set_new(jt, "offset", json_integer((json_int_t)t->offset));
        json_object_set_new(jt, "bytes", json_integer((json_int_t)t->nbytes));
        if (o->hash) {
            char hex[LG_SHA256_HEX_LEN + 1];
            show_hash(t, hex);
            json_object_set_new(jt, "sha256", json_string(hex));
        }
        json_array_append_new(ts, jt);
    }
    json_object_set_new(root, "tensors", ts);
    if (lossy)
        json_object_set_new(root, "invalid_utf8_replaced", json_true());
    int rc =
        json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    fputc('\n', stdout);
    json_decref(root);
    return rc == 0 ? 0 : 1;
}

int lg_cmd_show(int argc, char **argv)
{
    struct show_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            o.json = true;
        } else if (!strcmp(argv[i], "--full")) {
            o.full = true;
        } else if (!strcmp(argv[i], "--hash")) {
            o.hash = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            show_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "localgemma show: unknown option '%s'\n", argv[i]);
            show_usage(stderr);
            return 2;
        } else if (o.path) {
            fprintf(stderr, "localgemma show: only one FILE is allowed\n");
            return 2;
        } else {
            o.path = argv[i];
        }
    }
    if (!o.path) {
        show_usage(stderr);
        return 2;
    }
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    /* a store name (gemma3:270m) resolves to its blob; an existing file path is used as is */
    char resolved[4096];
    struct stat sb;
    if (stat(o.path, &sb) != 0 &&
        lg_store_resolve_default(o.path, false, resolved, sizeof resolved, &err) == LG_OK)
        o.path = resolved;
    lg_err_clear(&err);
    enum lg_status st = lg_gguf_open(o.path, &g, &err);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma show: %s\n", err.msg[0] ? err.msg : lg_status_str(st));
        return 1;
    }
    int rc = 0;
    if (o.json)
        rc = show_json(g, &o);
    else
        show_text(g, &o);
    if (fflush(stdout) != 0)
        rc = 1;
    lg_gguf_close(g);
    return rc;
}
