/* fuzz_gguf.c: libFuzzer target for the GGUF reader.
 *
 * Opens the input with lg_gguf_open_buffer and, when it is accepted, walks everything the
 * reader exposes: every kv (typed getters on its key, every array element, nested arrays,
 * strings), every tensor (lookup by name, first and last data byte). A crash, sanitizer
 * report, leak or timeout is a finding. Errors must be one line starting with "gguf: ".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static volatile uint64_t fz_sink;

static void fz_walk_value(const struct lg_gguf_value *v)
{
    if (v->type == LG_GGUF_TYPE_STRING) {
        if (v->v.str.len)
            fz_sink +=
                (unsigned char)v->v.str.ptr[0] + (unsigned char)v->v.str.ptr[v->v.str.len - 1];
        return;
    }
    if (v->type != LG_GGUF_TYPE_ARRAY) {
        fz_sink += v->v.u64;
        return;
    }
    for (uint64_t i = 0; i < v->v.arr.n; i++) {
        if (v->v.arr.elem_type == LG_GGUF_TYPE_STRING) {
            struct lg_str s = v->v.arr.strs[i];
            if (s.len)
                fz_sink += (unsigned char)s.ptr[0] + (unsigned char)s.ptr[s.len - 1];
        } else if (v->v.arr.elem_type == LG_GGUF_TYPE_ARRAY) {
            fz_walk_value(&v->v.arr.arrs[i]);
        } else {
            fz_sink += (uint64_t)lg_gguf_arr_i64(v, i);
            fz_sink += (uint64_t)lg_gguf_arr_f64(v, i);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    if (lg_gguf_open_buffer(data, size, &g, &err) != LG_OK) {
        if (g || strncmp(err.msg, "gguf: ", 6) != 0 || strchr(err.msg, '\n'))
            abort(); /* contract: no object on failure, one-line message */
        return 0;
    }
    char key[256];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct lg_gguf_kv *kv = &g->kv[i];
        fz_walk_value(&kv->val);
        if (kv->key.len < sizeof key) {
            memcpy(key, kv->key.ptr, (size_t)kv->key.len);
            key[kv->key.len] = '\0';
            if (lg_gguf_find_kv(g, key) != kv)
                abort(); /* the index must find every key */
            uint32_t u32;
            int64_t i64;
            float f32;
            bool b;
            struct lg_str s;
            const struct lg_gguf_value *a;
            lg_gguf_get_u32(g, key, &u32, &err);
            lg_gguf_get_i64(g, key, &i64, &err);
            lg_gguf_get_f32(g, key, &f32, &err);
            lg_gguf_get_bool(g, key, &b, &err);
            lg_gguf_get_str(g, key, &s, &err);
            lg_gguf_get_arr(g, key, LG_GGUF_TYPE_STRING, &a, &err);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        if (t->nbytes) {
            const uint8_t *p = t->data;
            fz_sink += p[0] + p[t->nbytes - 1];
        }
        if (t->name.len < sizeof key) {
            memcpy(key, t->name.ptr, (size_t)t->name.len);
            key[t->name.len] = '\0';
            if (lg_gguf_find_tensor(g, key) != t)
                abort();
        }
    }
    lg_gguf_close(g);
    return 0;
}
