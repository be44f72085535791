/* health.c: GET / ("localgemma is running", as Ollama answers), GET /health (200 when the
 * server can take work; 503 with the reason while a model loads or the queue is full),
 * GET /api/version. */
#include <string.h>

#include "server/server.h"

int srv_route_root(struct srv_conn *c)
{
    static const char msg[] = "localgemma is running";
    return srv_reply_text(c, 200, "text/plain; charset=utf-8", msg, sizeof msg - 1);
}

int srv_route_health(struct srv_conn *c)
{
    void *self;
    const struct lg_engine_ops *eng = srv_conn_engine(c, &self);
    json_t *b;
    if (!eng) {
        /* the HTTP side is healthy; say plainly that nothing can be generated */
        b = json_pack("{s:s, s:b}", "status", "ok", "engine", 0);
        return srv_reply_json(c, 200, b);
    }
    struct lg_engine_stats st = {0};
    eng->stats(self, &st);
    bool full = st.queue_cap > 0 && st.queue_depth >= st.queue_cap;
    bool loading = st.n_loading > 0;
    b = json_pack("{s:s, s:b, s:i, s:i, s:i}", "status",
                  loading ? "loading model" : (full ? "busy" : "ok"), "engine", 1,
                  "queue_depth", (int)st.queue_depth, "active", (int)st.n_active, "parallel",
                  (int)st.n_parallel);
    return srv_reply_json(c, full || loading ? 503 : 200, b);
}

int srv_route_version(struct srv_conn *c)
{
    return srv_reply_json(c, 200, json_pack("{s:s}", "version", LG_VERSION_STRING));
}
