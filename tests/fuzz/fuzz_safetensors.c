/* fuzz_safetensors.c: libFuzzer target for the safetensors header reader used by `convert`.
 * Accepted inputs are walked: every tensor's first and last element is read (the reader
 * promised they lie inside the buffer). A crash, sanitizer report or leak is a finding. */
#include <stddef.h>
#include <stdint.h>

#include "model/safetensors.h"

static volatile float fz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lg_st *st = NULL;
    struct lg_err err = {0};
    if (lg_st_open_buffer(data, size, &st, &err) != LG_OK)
        return 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const struct lg_st_tensor *t = &st->tensors[i];
        if (t->dtype == LG_ST_OTHER || t->n_elem == 0)
            continue;
        fz_sink += lg_st_get(t, 0) + lg_st_get(t, t->n_elem - 1);
        fz_sink += (float)(lg_st_find(st, t->name) == t);
    }
    lg_st_close(st);
    return 0;
}
