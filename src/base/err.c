/* err.c: status names and the error-text writer. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *lg_status_str(enum lg_status s)
{
    switch (s) {
    case LG_OK: return "ok";
    case LG_ERR_NOMEM: return "out of memory";
    case LG_ERR_IO: return "i/o error";
    case LG_ERR_FORMAT: return "format error";
    case LG_ERR_VERSION: return "unsupported version";
    case LG_ERR_UNSUPPORTED: return "unsupported";
    case LG_ERR_INVALID_ARG: return "invalid argument";
    case LG_ERR_RANGE: return "out of range";
    case LG_ERR_NOT_FOUND: return "not found";
    case LG_ERR_CONTEXT: return "context full";
    case LG_ERR_CANCELLED: return "cancelled";
    case LG_ERR_BUSY: return "busy";
    case LG_ERR_INTERNAL: return "internal error";
    case LG_ERR_EXISTS: return "already exists";
    }
    return "unknown status";
}

enum lg_status lg_err_set(struct lg_err *err, enum lg_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void lg_err_clear(struct lg_err *err)
{
    if (err) {
        err->code = LG_OK;
        err->msg[0] = '\0';
    }
}
