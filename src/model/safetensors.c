/* safetensors.c: mmap + header validation for safetensors files (format: u64 LE header
 * length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__},
 * then the data section; offsets are relative to the data section).
 * Invariant: every lg_st_tensor's [data, data + nbytes) lies inside its file's mapping. */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "model/safetensors.h"
#include "quant/quant.h"

enum { MAX_HEADER = 100 << 20, MAX_TENSORS = 1 << 20, MAX_SHARDS = 4096 };

struct st_map {
    void *base;
    size_t size;
};

struct st_priv {
    int n_maps;
    struct st_map *maps;
};

void lg_st_close(struct lg_st *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    struct st_priv *p = st->priv;
    if (p) {
        for (int i = 0; i < p->n_maps; i++)
            if (p->maps[i].base)
                munmap(p->maps[i].base, p->maps[i].size);
        free(p->maps);
        free(p);
    }
    free(st);
}

static int elem_size(enum lg_st_dtype d)
{
    return d == LG_ST_F32 ? 4 : 2;
}

/* Adds the tensors of one file (data in buf[0..size)) to st. */
static enum lg_status parse_file(struct lg_st *st, const uint8_t *buf, size_t size,
                                 const char *fname, struct lg_err *err)
{
    if (size < 8)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: shorter than the 8-byte header length", fname);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen < 2 || hlen > MAX_HEADER || hlen > size - 8)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: header length %llu does not fit the file "
                          "(%zu bytes)", fname, (unsigned long long)hlen, size);
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    json_error_t je;
    json_t *h = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!h)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: header JSON: %s (offset %d)", fname, je.text,
                          je.position + 8);
    enum lg_status stt = LG_OK;
    if (!json_is_object(h)) {
        stt = lg_err_set(err, LG_ERR_FORMAT, "%s: header is not a JSON object", fname);
        goto out;
    }
    size_t n_new = json_object_size(h);
    if ((size_t)st->n_tensors + n_new > MAX_TENSORS) {
        stt = lg_err_set(err, LG_ERR_FORMAT, "%s: too many tensors", fname);
        goto out;
    }
    struct lg_st_tensor *nt =
        realloc(st->tensors, ((size_t)st->n_tensors + n_new + 1) * sizeof *nt);
    if (!nt) {
        stt = lg_err_set(err, LG_ERR_NOMEM, "%s: out of memory", fname);
        goto out;
    }
    st->tensors = nt;
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__"))
            continue;
        json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape");
        json_t *jo = json_object_get(v, "data_offsets");
        if (!json_is_object(v) || !json_is_string(jd) || !json_is_array(js) ||
            !json_is_array(jo) || json_array_size(jo) != 2) {
            stt = lg_err_set(err, LG_ERR_FORMAT, "%s: tensor %.200s: need dtype, shape and "
                             "data_offsets[2]", fname, key);
            goto out;
        }
        struct lg_st_tensor t = {0};
        const char *ds = json_string_value(jd);
        t.dtype = !strcmp(ds, "F32") ? LG_ST_F32 : !strcmp(ds, "F16") ? LG_ST_F16
                : !strcmp(ds, "BF16") ? LG_ST_BF16 : LG_ST_OTHER;
        size_t nd = json_array_size(js);
        if (nd > LG_ST_MAX_DIMS) {
            stt = lg_err_set(err, LG_ERR_FORMAT, "%s: tensor %.200s: %zu dims", fname, key, nd);
            goto out;
        }
        t.n_dims = (int)nd;
        uint64_t n = 1;
        for (size_t i = 0; i < nd; i++) {
            json_t *d = json_array_get(js, i);
            json_int_t x = json_is_integer(d) ? json_integer_value(d) : -1;
            if (x < 0 || x > ((json_int_t)1 << 40) || (x && n > (UINT64_MAX >> 4) / (uint64_t)x)) {
                stt = lg_err_set(err, LG_ERR_FORMAT, "%s: tensor %.200s: bad shape", fname, key);
                goto out;
            }
            t.shape[i] = x;
            n *= (uint64_t)x;
        }
        t.n_elem = (int64_t)n;
        json_t *b0 = json_array_get(jo, 0), *b1 = json_array_get(jo, 1);
        json_int_t o0 = json_is_integer(b0) ? json_integer_value(b0) : -1;
        json_int_t o1 = json_is_integer(b1) ? json_integer_value(b1) : -1;
        if (o0 < 0 || o1 < o0 || (uint64_t)o1 > data_size) {
            stt = lg_err_set(err, LG_ERR_FORMAT, "%s: tensor %.200s: data_offsets [%lld, %lld] "
                             "outside the data section (%llu bytes)", fname, key, (long long)o0,
                             (long long)o1, (unsigned long long)data_size);
            goto out;
        }
        t.nbytes = (uint64_t)(o1 - o0);
        if (t.dtype != LG_ST_OTHER && t.nbytes != n * (uint64_t)elem_size(t.dtype)) {
            stt = lg_err_set(err, LG_ERR_FORMAT, "%s: tensor %.200s: %llu bytes for %llu %s "
                             "elements", fname, key, (unsigned long long)t.nbytes,
                             (unsigned long long)n, ds);
            goto out;
        }
        t.data = data + o0;
        if (lg_st_find(st, key)) {
            stt = lg_err_set(err, LG_ERR_FORMAT, "%s: tensor %.200s appears twice", fname, key);
            goto out;
        }
        t.name = strdup(key);
        if (!t.name) {
            stt = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
            goto out;
        }
        st->tensors[st->n_tensors++] = t;
    }
out:
    json_decref(h);
    return stt;
}

static enum lg_status map_file(struct lg_st *st, const char *path, const uint8_t **buf,
                               size_t *size, struct lg_err *err)
{
    struct st_priv *p = st->priv;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lg_err_set(err, LG_ERR_IO, "cannot open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        close(fd);
        return lg_err_set(err, LG_ERR_FORMAT, "%s: empty or unreadable", path);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return lg_err_set(err, LG_ERR_IO, "cannot map %s", path);
    struct st_map *nm = realloc(p->maps, ((size_t)p->n_maps + 1) * sizeof *nm);
    if (!nm) {
        munmap(m, (size_t)sb.st_size);
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    }
    p->maps = nm;
    p->maps[p->n_maps].base = m;
    p->maps[p->n_maps].size = (size_t)sb.st_size;
    p->n_maps++;
    *buf = m;
    *size = (size_t)sb.st_size;
    return LG_OK;
}

static struct lg_st *st_new(void)
{
    struct lg_st *st = calloc(1, sizeof *st);
    if (st)
        st->priv = calloc(1, sizeof(struct st_priv));
    if (st && !st->priv) {
        free(st);
        st = NULL;
    }
    return st;
}

enum lg_status lg_st_open_buffer(const void *data, size_t size, struct lg_st **out,
                                 struct lg_err *err)
{
    *out = NULL;
    struct lg_st *st = st_new();
    if (!st)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status s = parse_file(st, data, size, "safetensors", err);
    if (s != LG_OK) {
        lg_st_close(st);
        return s;
    }
    *out = st;
    return LG_OK;
}

/* A shard name from the index must be a plain file name inside the directory. */
static bool safe_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 256;
}

enum lg_status lg_st_open_dir(const char *dir, struct lg_st **out, struct lg_err *err)
{
    *out = NULL;
    char path[4096];
    struct lg_st *st = st_new();
    if (!st)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status s = LG_OK;
    const uint8_t *buf;
    size_t size;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, R_OK) == 0) {
        if ((s = map_file(st, path, &buf, &size, err)) == LG_OK)
            s = parse_file(st, buf, size, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        json_error_t je;
        json_t *idx = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        json_t *wm = idx ? json_object_get(idx, "weight_map") : NULL;
        if (!idx) {
            s = lg_err_set(err, LG_ERR_NOT_FOUND, "%s: no model.safetensors and no readable "
                           "model.safetensors.index.json (%s)", dir, je.text);
        } else if (!json_is_object(wm)) {
            s = lg_err_set(err, LG_ERR_FORMAT, "%s: no weight_map object", path);
        } else {
            /* Each distinct shard once, in first-seen order. */
            const char *shards[MAX_SHARDS];
            int n_shards = 0;
            const char *k;
            json_t *v;
            json_object_foreach(wm, k, v) {
                const char *f = json_string_value(v);
                if (!f || !safe_name(f)) {
                    s = lg_err_set(err, LG_ERR_FORMAT, "%s: weight_map[%.200s] is not a file "
                                   "name", path, k);
                    break;
                }
                int seen = 0;
                for (int i = 0; i < n_shards && !seen; i++)
                    seen = !strcmp(shards[i], f);
                if (!seen) {
                    if (n_shards == MAX_SHARDS) {
                        s = lg_err_set(err, LG_ERR_FORMAT, "%s: too many shards", path);
                        break;
                    }
                    shards[n_shards++] = f;
                }
            }
            for (int i = 0; i < n_shards && s == LG_OK; i++) {
                char sp[4096];
                snprintf(sp, sizeof sp, "%s/%s", dir, shards[i]);
                if ((s = map_file(st, sp, &buf, &size, err)) == LG_OK)
                    s = parse_file(st, buf, size, sp, err);
            }
        }
        json_decref(idx);
    }
    if (s != LG_OK) {
        lg_st_close(st);
        return s;
    }
    *out = st;
    return LG_OK;
}

const struct lg_st_tensor *lg_st_find(const struct lg_st *st, const char *name)
{
    for (int i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    return NULL;
}

float lg_st_get(const struct lg_st_tensor *t, int64_t i)
{
    const uint8_t *p = t->data;
    if (t->dtype == LG_ST_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == LG_ST_F16 ? lg_f16_to_f32(h) : lg_bf16_to_f32(h);
}
