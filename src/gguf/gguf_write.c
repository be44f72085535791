/* gguf_write.c: the GGUF v3 writer used by tools (quantize, convert, tests).
 *
 * Metadata values are serialized when added (type + payload bytes, little-endian), so a write
 * is a header build plus a stream of tensor data. The file appears atomically: it is written
 * to PATH.tmp.<pid>, fsynced, renamed over PATH and the directory fsynced; any failure removes
 * the temporary file. Layout produced: header, kvs, tensor infos, zero padding to the
 * alignment, then each tensor's bytes padded to the alignment (offsets relative to the data
 * section, as the reader expects).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

enum { GW_MAX_KEY_BYTES = 64 * 1024, GW_IO_CHUNK = 1 << 20 };

struct gw_buf {
    uint8_t *p;
    size_t len, cap;
    bool failed; /* an allocation failed: the buffer content is incomplete */
};

struct gw_kv {
    char *key;
    struct gw_buf val; /* u32 type + payload, as in the file */
};

struct gw_tensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[LG_GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    const void *data;
    lg_gguf_fill_fn fill;
    void *user;
};

struct lg_gguf_writer {
    struct gw_kv *kv;
    size_t n_kv, cap_kv;
    struct gw_tensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

static void gw_put(struct gw_buf *b, const void *src, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void gw_le(struct gw_buf *b, uint64_t v, unsigned n)
{
    uint8_t tmp[8];
    for (unsigned i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    gw_put(b, tmp, n);
}

static void gw_str(struct gw_buf *b, const char *s, uint64_t len)
{
    gw_le(b, len, 8);
    gw_put(b, s, (size_t)len);
}

struct lg_gguf_writer *lg_gguf_writer_create(void)
{
    struct lg_gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = LG_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void lg_gguf_writer_destroy(struct lg_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Stores a serialized value under key, replacing an earlier one in place. Takes val. */
static enum lg_status gw_set(struct lg_gguf_writer *w, const char *key, struct gw_buf *val)
{
    size_t klen = key ? strlen(key) : 0;
    if (!w || klen == 0 || klen > GW_MAX_KEY_BYTES || val->failed) {
        free(val->p);
        return val->failed ? LG_ERR_NOMEM : LG_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val.p);
            w->kv[i].val = *val;
            return LG_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct gw_kv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            free(val->p);
            return LG_ERR_NOMEM;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val->p);
        return LG_ERR_NOMEM;
    }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].val = *val;
    w->n_kv++;
    return LG_OK;
}

static enum lg_status gw_scalar(struct lg_gguf_writer *w, const char *key, enum lg_gguf_type t,
                                uint64_t bits)
{
    struct gw_buf b = {0};
    gw_le(&b, (uint64_t)t, 4);
    gw_le(&b, bits, (unsigned)lg_gguf_type_size(t));
    return gw_set(w, key, &b);
}

void lg_gguf_writer_set_alignment(struct lg_gguf_writer *w, uint32_t alignment)
{
    if (!w)
        return;
    w->alignment = alignment;
    gw_scalar(w, "general.alignment", LG_GGUF_TYPE_UINT32, alignment);
}

enum lg_status lg_gguf_writer_add_u32(struct lg_gguf_writer *w, const char *key, uint32_t v)
{
    return gw_scalar(w, key, LG_GGUF_TYPE_UINT32, v);
}

enum lg_status lg_gguf_writer_add_i32(struct lg_gguf_writer *w, const char *key, int32_t v)
{
    return gw_scalar(w, key, LG_GGUF_TYPE_INT32, (uint32_t)v);
}

enum lg_status lg_gguf_writer_add_u64(struct lg_gguf_writer *w, const char *key, uint64_t v)
{
    return gw_scalar(w, key, LG_GGUF_TYPE_UINT64, v);
}

enum lg_status lg_gguf_writer_add_f32(struct lg_gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return gw_scalar(w, key, LG_GGUF_TYPE_FLOAT32, u);
}

enum lg_status lg_gguf_writer_add_bool(struct lg_gguf_writer *w, const char *key, bool v)
{
    return gw_scalar(w, key, LG_GGUF_TYPE_BOOL, v ? 1 : 0);
}

enum lg_status lg_gguf_writer_add_str(struct lg_gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return LG_ERR_INVALID_ARG;
    struct gw_buf b = {0};
    gw_le(&b, LG_GGUF_TYPE_STRING, 4);
    gw_str(&b, v, strlen(v));
    return gw_set(w, key, &b);
}

enum lg_status lg_gguf_writer_add_arr(struct lg_gguf_writer *w, const char *key,
                                      enum lg_gguf_type elem_type, const void *data, uint64_t n)
{
    size_t sz = lg_gguf_type_size(elem_type);
    if (sz == 0 || (n && !data) || n > SIZE_MAX / sz)
        return LG_ERR_INVALID_ARG;
    struct gw_buf b = {0};
    gw_le(&b, LG_GGUF_TYPE_ARRAY, 4);
    gw_le(&b, (uint64_t)elem_type, 4);
    gw_le(&b, n, 8);
    gw_put(&b, data, (size_t)(n * sz));
    return gw_set(w, key, &b);
}

enum lg_status lg_gguf_writer_add_str_arr(struct lg_gguf_writer *w, const char *key,
                                          const char *const *strs, uint64_t n)
{
    if (n && !strs)
        return LG_ERR_INVALID_ARG;
    struct gw_buf b = {0};
    gw_le(&b, LG_GGUF_TYPE_ARRAY, 4);
    gw_le(&b, LG_GGUF_TYPE_STRING, 4);
    gw_le(&b, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(b.p);
            return LG_ERR_INVALID_ARG;
        }
        gw_str(&b, strs[i], strlen(strs[i]));
    }
    return gw_set(w, key, &b);
}

/* Serializes a parsed value's payload (without its type when it is an array element). */
static void gw_value(struct gw_buf *b, const struct lg_gguf_value *v)
{
    switch (v->type) {
    case LG_GGUF_TYPE_STRING:
        gw_str(b, v->v.str.ptr, v->v.str.len);
        break;
    case LG_GGUF_TYPE_ARRAY: {
        enum lg_gguf_type et = v->v.arr.elem_type;
        gw_le(b, (uint64_t)et, 4);
        gw_le(b, v->v.arr.n, 8);
        if (et == LG_GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                gw_str(b, v->v.arr.strs[i].ptr, v->v.arr.strs[i].len);
        } else if (et == LG_GGUF_TYPE_ARRAY) {
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                gw_value(b, &v->v.arr.arrs[i]);
        } else {
            gw_put(b, v->v.arr.data, (size_t)(v->v.arr.n * lg_gguf_type_size(et)));
        }
        break;
    }
    case LG_GGUF_TYPE_FLOAT32: {
        float f = (float)v->v.f64;
        uint32_t u;
        memcpy(&u, &f, 4);
        gw_le(b, u, 4);
        break;
    }
    case LG_GGUF_TYPE_FLOAT64: {
        uint64_t u;
        memcpy(&u, &v->v.f64, 8);
        gw_le(b, u, 8);
        break;
    }
    default: /* integers and bool: the low bytes of u64/i64 are the same two's complement */
        gw_le(b, v->v.u64, (unsigned)lg_gguf_type_size(v->type));
        break;
    }
}

enum lg_status lg_gguf_writer_copy_kv(struct lg_gguf_writer *w, const struct lg_gguf_kv *kv)
{
    if (!w || !kv || kv->key.len == 0 || kv->key.len > GW_MAX_KEY_BYTES ||
        (unsigned)kv->val.type >= LG_GGUF_TYPE_COUNT)
        return LG_ERR_INVALID_ARG;
    char *key = malloc((size_t)kv->key.len + 1);
    if (!key)
        return LG_ERR_NOMEM;
    memcpy(key, kv->key.ptr, (size_t)kv->key.len);
    key[kv->key.len] = '\0';
    struct gw_buf b = {0};
    gw_le(&b, (uint64_t)kv->val.type, 4);
    gw_value(&b, &kv->val);
    enum lg_status st = gw_set(w, key, &b);
    free(key);
    return st;
}

enum lg_status lg_gguf_writer_add_tensor(struct lg_gguf_writer *w, const char *name, uint32_t type,
                                         uint32_t n_dims, const uint64_t *ne, const void *data,
                                         lg_gguf_fill_fn fill, void *user)
{
    if (!w || !name || !name[0] || strlen(name) > GW_MAX_KEY_BYTES || n_dims < 1 ||
        n_dims > LG_GGUF_MAX_DIMS || !ne || (!data && !fill))
        return LG_ERR_INVALID_ARG;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return LG_ERR_EXISTS;
    struct gw_tensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .user = user};
    uint64_t n_el = 1, row;
    for (uint32_t d = 0; d < LG_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (__builtin_mul_overflow(n_el, t.ne[d], &n_el))
            return LG_ERR_RANGE;
    }
    enum lg_status st = lg_qtype_row_bytes(type, t.ne[0], &row);
    if (st)
        return st;
    if (__builtin_mul_overflow(row, t.ne[0] ? n_el / t.ne[0] : 0, &t.nbytes) ||
        t.nbytes >= ((uint64_t)1 << 62))
        return LG_ERR_RANGE;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct gw_tensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt)
            return LG_ERR_NOMEM;
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return LG_ERR_NOMEM;
    w->t[w->n_t++] = t;
    return LG_OK;
}

/* ---- writing ---- */

static enum lg_status gw_write_all(int fd, const void *p, size_t n, const char *path,
                                   struct lg_err *err)
{
    const uint8_t *c = p;
    while (n) {
        ssize_t k = write(fd, c, n > GW_IO_CHUNK ? GW_IO_CHUNK : n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return lg_err_set(err, LG_ERR_IO, "gguf: writing %s: %s", path,
                              k < 0 ? strerror(errno) : "short write");
        c += k;
        n -= (size_t)k;
    }
    return LG_OK;
}

static enum lg_status gw_pad(int fd, uint64_t pos, uint32_t align, const char *path,
                             struct lg_err *err)
{
    static const uint8_t zeros[4096];
    uint64_t pad = (align - pos % align) % align;
    while (pad) {
        size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        enum lg_status st = gw_write_all(fd, zeros, k, path, err);
        if (st)
            return st;
        pad -= k;
    }
    return LG_OK;
}

/* The alignment the file will declare: an explicit general.alignment kv wins. */
static enum lg_status gw_alignment(const struct lg_gguf_writer *w, uint32_t *out,
                                   struct lg_err *err)
{
    uint64_t a = w->alignment;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0)
            continue;
        const struct gw_buf *b = &w->kv[i].val;
        if (b->len != 8 || b->p[0] != LG_GGUF_TYPE_UINT32 || b->p[1] || b->p[2] || b->p[3])
            return lg_err_set(err, LG_ERR_INVALID_ARG, "gguf: general.alignment must be u32");
        a = (uint64_t)b->p[4] | (uint64_t)b->p[5] << 8 | (uint64_t)b->p[6] << 16 |
            (uint64_t)b->p[7] << 24;
    }
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
        return lg_err_set(err, LG_ERR_INVALID_ARG,
                          "gguf: alignment %llu is not a power of two in 1..1048576",
                          (unsigned long long)a);
    *out = (uint32_t)a;
    return LG_OK;
}

enum lg_status lg_gguf_writer_write(struct lg_gguf_writer *w, const char *path,
                                    void (*progress)(void *user, uint64_t done, uint64_t total),
                                    void *progress_user, struct lg_err *err)
{
    if (!w || !path)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "gguf: writer: NULL argument");
    uint32_t align = LG_GGUF_DEFAULT_ALIGNMENT;
    enum lg_status st = gw_alignment(w, &align, err);
    if (st)
        return st;

    /* offsets and total size */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        uint64_t padded = (w->t[i].nbytes + align - 1) / align * align;
        if (__builtin_add_overflow(off, padded, &off))
            return lg_err_set(err, LG_ERR_RANGE, "gguf: writer: tensor data size overflows");
    }

    struct gw_buf h = {0};
    gw_put(&h, "GGUF", 4);
    gw_le(&h, 3, 4);
    gw_le(&h, w->n_t, 8);
    gw_le(&h, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        gw_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        gw_put(&h, w->kv[i].val.p, w->kv[i].val.len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct gw_tensor *t = &w->t[i];
        gw_str(&h, t->name, strlen(t->name));
        gw_le(&h, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            gw_le(&h, t->ne[d], 8);
        gw_le(&h, t->type, 4);
        gw_le(&h, t->offset, 8);
    }
    if (h.failed) {
        free(h.p);
        return lg_err_set(err, LG_ERR_NOMEM, "gguf: writer: out of memory building the header");
    }
    uint64_t hdr_padded = (h.len + align - 1) / align * align;
    uint64_t total = hdr_padded + off;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) {
        free(h.p);
        return lg_err_set(err, LG_ERR_NOMEM, "gguf: writer: out of memory");
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    void *buf = NULL;
    if (fd < 0) {
        st = lg_err_set(err, LG_ERR_IO, "gguf: cannot create %s: %s", tmp, strerror(errno));
        free(h.p);
        free(tmp);
        return st;
    }
    uint64_t done = 0;
    if ((st = gw_write_all(fd, h.p, h.len, tmp, err)) || (st = gw_pad(fd, h.len, align, tmp, err)))
        goto fail;
    done = hdr_padded;
    if (progress)
        progress(progress_user, done, total);
    for (size_t i = 0; i < w->n_t; i++) {
        const struct gw_tensor *t = &w->t[i];
        const void *src = t->data;
        if (!src && t->nbytes) {
            if (t->nbytes > SIZE_MAX || !(buf = malloc((size_t)t->nbytes))) {
                st = lg_err_set(err, LG_ERR_NOMEM,
                                "gguf: writer: tensor '%s': cannot allocate "
                                "%llu bytes",
                                t->name, (unsigned long long)t->nbytes);
                goto fail;
            }
            struct lg_err ferr = {0};
            st = t->fill(t->user, buf, t->nbytes, &ferr);
            if (st) {
                lg_err_set(err, st, "gguf: writer: tensor '%s': %s", t->name,
                           ferr.msg[0] ? ferr.msg : lg_status_str(st));
                goto fail;
            }
            src = buf;
        }
        if ((st = gw_write_all(fd, src, (size_t)t->nbytes, tmp, err)) ||
            (st = gw_pad(fd, t->nbytes, align, tmp, err)))
            goto fail;
        free(buf);
        buf = NULL;
        done += (t->nbytes + align - 1) / align * align;
        if (progress)
            progress(progress_user, done, total);
    }
    if (fsync(fd) != 0) {
        st = lg_err_set(err, LG_ERR_IO, "gguf: fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = lg_err_set(err, LG_ERR_IO, "gguf: close %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = lg_err_set(err, LG_ERR_IO, "gguf: rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    /* make the rename durable: fsync the directory (best effort on odd file systems) */
    char *dcopy = strdup(path);
    if (dcopy) {
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dcopy);
    }
    free(h.p);
    free(tmp);
    return LG_OK;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(buf);
    free(h.p);
    free(tmp);
    return st;
}
