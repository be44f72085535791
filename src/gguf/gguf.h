/* gguf.h: bounds-checked GGUF v2/v3 reader over mmap, and a writer for tools.
 *
 * The reader parses all metadata and tensor infos at open time, validating every count,
 * length and offset against the bytes that remain (shared/spec/hardening.md §3). After a
 * successful open the object is immutable: any thread may read it concurrently.
 * Strings and tensor data point into the mapping and are valid until lg_gguf_close().
 * It knows no model: meaning checks (vocab size, layer count) belong to the loaders.
 */
#ifndef LG_GGUF_H
#define LG_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

/* Metadata value types, numbered as in the GGUF spec. */
enum lg_gguf_type {
    LG_GGUF_TYPE_UINT8 = 0,
    LG_GGUF_TYPE_INT8 = 1,
    LG_GGUF_TYPE_UINT16 = 2,
    LG_GGUF_TYPE_INT16 = 3,
    LG_GGUF_TYPE_UINT32 = 4,
    LG_GGUF_TYPE_INT32 = 5,
    LG_GGUF_TYPE_FLOAT32 = 6,
    LG_GGUF_TYPE_BOOL = 7,
    LG_GGUF_TYPE_STRING = 8,
    LG_GGUF_TYPE_ARRAY = 9,
    LG_GGUF_TYPE_UINT64 = 10,
    LG_GGUF_TYPE_INT64 = 11,
    LG_GGUF_TYPE_FLOAT64 = 12,
    LG_GGUF_TYPE_COUNT = 13
};

enum {
    LG_GGUF_MAX_DIMS = 4,
    LG_GGUF_DEFAULT_ALIGNMENT = 32,
    LG_GGUF_MAX_ARRAY_DEPTH = 3,        /* array levels in one value (array of array of array) */
    LG_GGUF_MAX_NESTED_ELEMS = 1 << 20  /* elements of nested arrays in one file, in total */
};

/* A length-delimited string inside the file (not NUL-terminated). */
struct lg_str {
    const char *ptr;
    uint64_t len;
};

/* One metadata value. For arrays: elem_type and n; scalar elements are packed little-endian
 * at data (elem size by type); string elements are in strs[n]; nested arrays in arrs[n]. */
struct lg_gguf_value {
    enum lg_gguf_type type;
    union {
        uint64_t u64;  /* UINT8..UINT64 (zero-extended) and BOOL (0/1) */
        int64_t i64;   /* INT8..INT64 (sign-extended) */
        double f64;    /* FLOAT32, FLOAT64 */
        struct lg_str str;
        struct {
            enum lg_gguf_type elem_type;
            uint64_t n;
            const uint8_t *data;          /* scalar elements, points into the mapping */
            const struct lg_str *strs;    /* string elements (owned by the reader) */
            const struct lg_gguf_value *arrs; /* nested array elements (owned by the reader) */
        } arr;
    } v;
};

struct lg_gguf_kv {
    struct lg_str key;
    struct lg_gguf_value val;
    uint64_t offset; /* byte offset of this pair in the file */
};

struct lg_gguf_tensor {
    struct lg_str name;
    uint32_t n_dims;
    uint64_t ne[LG_GGUF_MAX_DIMS]; /* ggml order, innermost first; unused dims are 1 */
    uint32_t type;                 /* enum lg_qtype value */
    uint64_t offset;               /* relative to the data section */
    uint64_t nbytes;
    const void *data;              /* points into the mapping; NULL when nbytes is 0 */
};

struct lg_gguf {
    uint32_t version;
    uint64_t n_kv;
    uint64_t n_tensors;
    struct lg_gguf_kv *kv;         /* [n_kv] */
    struct lg_gguf_tensor *tensors;/* [n_tensors] */
    uint32_t alignment;
    uint64_t data_offset;          /* file offset of the data section */
    const uint8_t *base;           /* the mapping (or borrowed buffer) */
    uint64_t size;                 /* its size in bytes */
    void *priv;                    /* reader internals (index, owned arrays) */
};

/* Opens and validates a file (read-only mmap). On failure *out is NULL and err holds one line
 * "gguf: <where> <field> at byte <offset>: <problem>". Status: LG_ERR_FORMAT malformed (caps:
 * key and tensor name <= 64 KiB, string <= 16 MiB, array <= 2^26 elements and nested at most
 * LG_GGUF_MAX_ARRAY_DEPTH levels, n_kv <= 65536, n_tensors <= 2^20, n_dims 1..4, sizes and
 * offsets < 2^62, general.alignment a u32 power of two <= 1 MiB, tensors aligned, inside the
 * file and disjoint, unique keys and tensor names without NUL bytes, bool bytes 0/1);
 * LG_ERR_VERSION not v2/v3; LG_ERR_UNSUPPORTED unknown tensor type or big-endian file;
 * LG_ERR_NOMEM the parsed metadata would need more than file size + 16 MiB; LG_ERR_NOT_FOUND /
 * LG_ERR_IO for the path. Tensor data is never read here. The file must not be truncated by
 * someone else while it is open (that is SIGBUS for any mmap reader). */
enum lg_status lg_gguf_open(const char *path, struct lg_gguf **out, struct lg_err *err);

/* Same over a caller's buffer, which must outlive the object (used by fuzzers and tests). */
enum lg_status lg_gguf_open_buffer(const void *data, size_t size, struct lg_gguf **out,
                                   struct lg_err *err);

/* Unmaps and frees. NULL is allowed. */
void lg_gguf_close(struct lg_gguf *g);

/* Whether the n bytes at p lie wholly inside the read-only private file mapping lg_gguf_open
 * made (n == 0: p itself inside it). False for a buffer given to lg_gguf_open_buffer, for
 * NULL g or p, and for any range that reaches outside. Callers use it to know that dropping
 * those pages (MADV_DONTNEED) only costs a re-read from the file. Immutable after open: any
 * thread. */
bool lg_gguf_is_mapped(const struct lg_gguf *g, const void *p, size_t n);

/* Lookups: NULL when absent. O(1) average. */
const struct lg_gguf_kv *lg_gguf_find_kv(const struct lg_gguf *g, const char *key);
const struct lg_gguf_tensor *lg_gguf_find_tensor(const struct lg_gguf *g, const char *name);

/* Typed getters. LG_ERR_NOT_FOUND when absent (err written), LG_ERR_FORMAT when the stored
 * type does not fit (integers convert between widths when the value is in range; floats
 * accept FLOAT32/FLOAT64). */
enum lg_status lg_gguf_get_u32(const struct lg_gguf *g, const char *key, uint32_t *out,
                               struct lg_err *err);
enum lg_status lg_gguf_get_i64(const struct lg_gguf *g, const char *key, int64_t *out,
                               struct lg_err *err);
enum lg_status lg_gguf_get_f32(const struct lg_gguf *g, const char *key, float *out,
                               struct lg_err *err);
enum lg_status lg_gguf_get_bool(const struct lg_gguf *g, const char *key, bool *out,
                                struct lg_err *err);
enum lg_status lg_gguf_get_str(const struct lg_gguf *g, const char *key, struct lg_str *out,
                               struct lg_err *err);
/* An array of the given element type (strings: use ->v.arr.strs). */
enum lg_status lg_gguf_get_arr(const struct lg_gguf *g, const char *key,
                               enum lg_gguf_type elem_type, const struct lg_gguf_value **out,
                               struct lg_err *err);

/* Element i of a scalar array as integer / double; 0 when i >= n or the elements are not
 * scalars. u64 elements above INT64_MAX come back as their two's-complement int64. */
int64_t lg_gguf_arr_i64(const struct lg_gguf_value *arr, uint64_t i);
double lg_gguf_arr_f64(const struct lg_gguf_value *arr, uint64_t i);

/* Name of a value type ("u32", "string", ...; "unknown" out of range). */
const char *lg_gguf_type_name(enum lg_gguf_type t);

/* Bytes of one scalar element of type t; 0 for STRING, ARRAY and unknown types. */
size_t lg_gguf_type_size(enum lg_gguf_type t);

/* Name of a general.file_type value as llama.cpp/gguf-py spell it ("MOSTLY_Q4_K_M"), or NULL
 * when the id is unknown. */
const char *lg_gguf_file_type_name(uint32_t file_type);

/* True when s equals the NUL-terminated c. */
bool lg_str_eq(struct lg_str s, const char *c);

/* ---- Writer ------------------------------------------------------------------------------
 * Builds a GGUF v3 file: add metadata and tensor infos, then write. Tensor data is given as a
 * pointer that must stay valid until lg_gguf_writer_write() returns (or a callback fills it,
 * for streaming conversions). Output is written to PATH.tmp.<pid>, fsynced and renamed over
 * PATH: an interrupted write leaves no PATH. Not thread-safe; one writer per thread. */
struct lg_gguf_writer;

struct lg_gguf_writer *lg_gguf_writer_create(void);
void lg_gguf_writer_destroy(struct lg_gguf_writer *w);
void lg_gguf_writer_set_alignment(struct lg_gguf_writer *w, uint32_t alignment);

/* Each add copies key/strings. Adding a key twice replaces the earlier value (keeps order).
 * LG_ERR_INVALID_ARG for an empty/over-long key or NULL data, LG_ERR_NOMEM.
 * set_alignment also stores general.alignment (u32); an invalid value fails at write time. */
enum lg_status lg_gguf_writer_add_u32(struct lg_gguf_writer *w, const char *key, uint32_t v);
enum lg_status lg_gguf_writer_add_i32(struct lg_gguf_writer *w, const char *key, int32_t v);
enum lg_status lg_gguf_writer_add_u64(struct lg_gguf_writer *w, const char *key, uint64_t v);
enum lg_status lg_gguf_writer_add_f32(struct lg_gguf_writer *w, const char *key, float v);
enum lg_status lg_gguf_writer_add_bool(struct lg_gguf_writer *w, const char *key, bool v);
enum lg_status lg_gguf_writer_add_str(struct lg_gguf_writer *w, const char *key, const char *v);
/* Scalar array: n elements of elem_type packed little-endian at data. */
enum lg_status lg_gguf_writer_add_arr(struct lg_gguf_writer *w, const char *key,
                                      enum lg_gguf_type elem_type, const void *data, uint64_t n);
enum lg_status lg_gguf_writer_add_str_arr(struct lg_gguf_writer *w, const char *key,
                                          const char *const *strs, uint64_t n);
/* Copies a metadata pair from an open file (any type, arrays included). */
enum lg_status lg_gguf_writer_copy_kv(struct lg_gguf_writer *w, const struct lg_gguf_kv *kv);

/* Fills dst[nbytes] with the tensor's bytes; returns LG_OK or an error. */
typedef enum lg_status (*lg_gguf_fill_fn)(void *user, void *dst, uint64_t nbytes,
                                          struct lg_err *err);

/* A tensor with ne[n_dims] (ggml order) and type; data either given (borrowed) or produced
 * by fill(user,...) at write time (data NULL). LG_ERR_EXISTS for a name already added,
 * LG_ERR_INVALID_ARG for bad n_dims/name, lg_qtype_row_bytes' error for an unknown type or a
 * row that is not a whole number of blocks, LG_ERR_RANGE when the size reaches 2^62. */
enum lg_status lg_gguf_writer_add_tensor(struct lg_gguf_writer *w, const char *name,
                                         uint32_t type, uint32_t n_dims, const uint64_t *ne,
                                         const void *data, lg_gguf_fill_fn fill, void *user);

/* Writes the file atomically (tmp + fsync + rename). progress (may be NULL) is called with
 * bytes written so far and the total. */
enum lg_status lg_gguf_writer_write(struct lg_gguf_writer *w, const char *path,
                                    void (*progress)(void *user, uint64_t done, uint64_t total),
                                    void *progress_user, struct lg_err *err);

#endif
