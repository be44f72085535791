/* safetensors.h: bounds-checked reader of Hugging Face safetensors checkpoints.
 *
 * A checkpoint directory holds model.safetensors, or model.safetensors.index.json naming
 * shards. Each file is mmapped read-only; its JSON header is validated like a GGUF header:
 * header length within the file, every tensor's dtype known, shape dims non-negative with no
 * overflow, data_offsets inside the data section and equal to shape x element size, no
 * duplicate names across shards. After open the object is immutable (any thread may read).
 */
#ifndef LG_MODEL_SAFETENSORS_H
#define LG_MODEL_SAFETENSORS_H

#include <stdint.h>

#include "localgemma.h"

enum { LG_ST_MAX_DIMS = 4 };

enum lg_st_dtype {
    LG_ST_F32 = 0,
    LG_ST_F16 = 1,
    LG_ST_BF16 = 2,
    LG_ST_OTHER = 3 /* a dtype we cannot convert (refused only if the tensor is used) */
};

struct lg_st_tensor {
    char *name;              /* owned */
    enum lg_st_dtype dtype;
    int n_dims;
    int64_t shape[LG_ST_MAX_DIMS]; /* PyTorch order (outermost first) */
    int64_t n_elem;
    const void *data;        /* points into a mapping; valid until lg_st_close */
    uint64_t nbytes;
};

struct lg_st {
    int n_tensors;
    struct lg_st_tensor *tensors;
    void *priv;
};

/* Opens DIR/model.safetensors or the shards listed in DIR/model.safetensors.index.json.
 * Errors: LG_ERR_IO, LG_ERR_FORMAT (naming file and field), LG_ERR_NOMEM. */
enum lg_status lg_st_open_dir(const char *dir, struct lg_st **out, struct lg_err *err);
/* Parses one file from a buffer the caller keeps alive (tests, fuzzing). */
enum lg_status lg_st_open_buffer(const void *data, size_t size, struct lg_st **out,
                                 struct lg_err *err);
void lg_st_close(struct lg_st *st);
const struct lg_st_tensor *lg_st_find(const struct lg_st *st, const char *name);
/* Element i of a tensor as float (F32/F16/BF16). */
float lg_st_get(const struct lg_st_tensor *t, int64_t i);

#endif
