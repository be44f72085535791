/* err.h: status + error text helpers. Any thread. */
#ifndef LG_BASE_ERR_H
#define LG_BASE_ERR_H

#include "localgemma.h"

#if defined(__GNUC__)
#define LG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LG_PRINTF(a, b)
#endif

/* Writes code and the formatted message into err (which may be NULL); returns code.
 * Usage: return lg_err_set(err, LG_ERR_FORMAT, "tensor %s: %u dims", name, n); */
enum lg_status lg_err_set(struct lg_err *err, enum lg_status code, const char *fmt, ...)
    LG_PRINTF(3, 4);

/* Clears err (code LG_OK, empty message). NULL is allowed. */
void lg_err_clear(struct lg_err *err);

#endif
