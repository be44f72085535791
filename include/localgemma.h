/* localgemma.h: the public API of liblocalgemma.
 *
 * The library never exits and never prints to stdout. Every call that can fail returns an
 * enum lg_status and, where a struct lg_err is passed, a one-line message naming what was
 * wrong (field, byte offset, ...). Thread-safety is stated per function in the module headers.
 */
#ifndef LOCALGEMMA_H
#define LOCALGEMMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_VERSION_STRING "0.1.0"

/* Status codes. Values are stable (they are exit codes and appear in logs). */
enum lg_status {
    LG_OK = 0,
    LG_ERR_NOMEM = 1,       /* allocation failed or a budget was exceeded */
    LG_ERR_IO = 2,          /* open/read/write/mmap/fsync/rename failed */
    LG_ERR_FORMAT = 3,      /* malformed input (file or request) */
    LG_ERR_VERSION = 4,     /* unsupported file version */
    LG_ERR_UNSUPPORTED = 5, /* well-formed, but a feature/type we do not implement */
    LG_ERR_INVALID_ARG = 6, /* caller passed a bad argument */
    LG_ERR_RANGE = 7,       /* a value is out of its allowed range */
    LG_ERR_NOT_FOUND = 8,   /* a named thing (key, tensor, model) does not exist */
    LG_ERR_CONTEXT = 9,     /* prompt does not fit the context */
    LG_ERR_CANCELLED = 10,  /* the caller cancelled */
    LG_ERR_BUSY = 11,       /* try again later (queue full, loading) */
    LG_ERR_INTERNAL = 12,   /* a bug of ours */
    LG_ERR_EXISTS = 13      /* the target already exists */
};

/* Error detail: filled once, where the context is. */
struct lg_err {
    enum lg_status code;
    char msg[512];
};

/* Short stable name of a status ("format", "io", ...). Any thread. */
const char *lg_status_str(enum lg_status s);

#ifdef __cplusplus
}
#endif
#endif
