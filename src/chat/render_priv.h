/* render_priv.h: the small pieces both renderers (render.c: Gemma 3 and the entry points;
 * render_gemma4.c) share: the render context with its sticky first error, and Jinja-like
 * accessors. Internal to src/chat. */
#ifndef LG_CHAT_RENDER_PRIV_H
#define LG_CHAT_RENDER_PRIV_H

#include <stdbool.h>
#include <string.h>

#include "base/err.h"
#include "chat/chat.h"

struct rctx {
    struct lg_chat_buf *b;
    struct lg_err *err;
    enum lg_status st; /* first error, sticky */
};

static inline bool fail(struct rctx *c, const char *msg, long idx)
{
    if (c->st == LG_OK) {
        if (idx >= 0)
            c->st = lg_err_set(c->err, LG_ERR_INVALID_ARG, "messages[%ld]: %s", idx, msg);
        else
            c->st = lg_err_set(c->err, LG_ERR_INVALID_ARG, "%s", msg);
    }
    return false;
}

/* An allocation failed: LG_ERR_NOMEM (not the caller's fault, unlike fail()). */
static inline bool fail_oom(struct rctx *c)
{
    if (c->st == LG_OK)
        c->st = lg_err_set(c->err, LG_ERR_NOMEM, "out of memory rendering the prompt");
    return false;
}

static inline void put(struct rctx *c, const char *s)
{
    lg_chat_buf_puts(c->b, s);
}

/* Jinja `obj[key]` for our purposes: the member of an object, else Undefined (NULL). */
static inline json_t *get(const json_t *obj, const char *key)
{
    return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

static inline bool str_is(const json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

static inline void put_trimmed(struct rctx *c, const char *s, size_t n)
{
    size_t a, e;
    lg_py_strip(s, n, &a, &e);
    lg_chat_buf_put(c->b, s + a, e - a);
}

/* `v | trim` of any value (str() first; Undefined -> ""). */
static inline void put_str_trimmed(struct rctx *c, const json_t *v)
{
    struct lg_chat_buf t = {0};
    lg_py_str(&t, v);
    if (t.oom)
        c->b->oom = true;
    put_trimmed(c, t.ptr ? t.ptr : "", t.len);
    lg_chat_buf_free(&t);
}

#endif
