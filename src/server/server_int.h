/* server_int.h: private to server.c (the libmicrohttpd plumbing) and guard_glue.c (the
 * guardrails wired into it). The connection, server and generation structs both files
 * read, and the few functions they call across. Route files use server.h only.
 *
 * Threads and lifetimes are described at the top of server.c: a struct srv_conn belongs to
 * the MHD thread; a struct srv_gen is shared with the engine thread under gen->mu and lives
 * until its last reference is released (gen_release in server.c). */
#ifndef LG_SERVER_SERVER_INT_H
#define LG_SERVER_SERVER_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "guard/guard.h"
#include "server/server.h"

struct MHD_Connection;
struct MHD_Daemon;

enum {
    M_GET = 1, M_HEAD = 2, M_POST = 4, M_DELETE = 8, M_OPTIONS = 16
};

struct srv_gen {
    pthread_mutex_t mu;
    int refs;
    struct srv_parsed *p;
    struct MHD_Connection *mc;
    int fd;          /* mc's socket, watched for hang-ups while suspended */
    struct lg_server *srv;
    bool suspended;  /* we suspended mc and nobody resumed it yet */
    bool finished;   /* terminal event received (or forced at shutdown) */
    bool first_seen; /* a first delta arrived (TTFT recorded) */
    struct srv_buf out;  /* streaming: bytes not yet handed to MHD */
    size_t out_pos;
    struct srv_accum acc; /* non-streaming */
    struct srv_sse sse;
    struct srv_ndjson nd;
    int64_t t_submit_ns;
    struct srv_gen *next, *prev; /* server list, under srv->gens_mu */
    /* guard: output filter, accounting and the audit record written at the last release */
    struct lg_redactor *red;  /* NULL when the policy has no output rule */
    int red_kind;             /* event kind whose text red holds back, -1 none */
    int64_t red_count0;       /* redactions when the held-back logprobs began */
    struct lg_gen_logprob *lp; /* logprobs of held-back text (deep copies) */
    int32_t n_lp, cap_lp;
    bool denied;              /* an output deny rule matched: generation stopped */
    char deny_rule[LG_GUARD_RULE_MAX];
    int32_t n_deltas;         /* text/tool events (token estimate when no usage arrives) */
    struct lg_gen_usage usage;
    const char *finish_name;  /* for the audit */
    bool audit;               /* this srv_gen owns the request's audit record */
    struct lg_identity id;
    unsigned status;          /* HTTP status sent (copied from the connection) */
    int64_t t0_ns;            /* request start */
    char route[80];
    char client[INET6_ADDRSTRLEN];
    char decisions[256];
    char *prompt_text;        /* audit_content only */
    struct srv_buf answer;    /* audit_content only: the answer as sent (redacted) */
};

struct srv_route {
    const char *path;
    bool prefix;
    unsigned methods;
    srv_handler_fn fn;
    enum srv_route_id id;
};

struct lg_server {
    struct lg_server_config cfg;
    struct MHD_Daemon *d;
    uint16_t port;
    char bind_host[INET6_ADDRSTRLEN];
    bool bind_wildcard;
    bool loopback; /* the bind address is a loopback address */
    /* with a wildcard bind: the numeric addresses of this machine's interfaces, which are
     * accepted as Host (an IP literal cannot be rebound by DNS) */
    char local_addrs[16][INET6_ADDRSTRLEN];
    int n_local_addrs;
    atomic_bool draining;
    pthread_mutex_t gens_mu;
    struct srv_gen *gens;
    int n_gens;
    pthread_t watchdog;
    atomic_bool watchdog_stop;
    bool gen_since_trim; /* under gens_mu: a generation started since the last idle trim */
    bool tls;
    /* every open connection (MHD's socket context), for the header deadline and the
     * connection cap; under socks_mu */
    pthread_mutex_t socks_mu;
    struct srv_sock *socks;
    unsigned n_socks;
};

/* One TCP connection, from MHD's "started" notification to its "closed" one (MHD closes the
 * fd only after that, so under socks_mu the fd is always this connection's). */
struct srv_sock {
    struct srv_sock *prev, *next;
    int fd;
    int64_t deadline_ns; /* the request (line, headers and body) must be in by then; 0 = none */
    bool rejected;       /* over the connection cap: 503 sent, closing */
    bool killed;         /* shut down by the watchdog */
    bool served;         /* a request completed and the next has not started (idle keep-alive:
                          * no 408) */
};

struct srv_conn {
    struct lg_server *srv;
    struct MHD_Connection *mc;
    const struct srv_route *route;
    enum srv_route_id rid;
    enum srv_err_style style;
    const char *url;
    unsigned method;
    const char *origin; /* allowed Origin to echo, or NULL */
    struct srv_buf body;
    bool too_large;
    uint64_t n_received; /* body bytes seen, kept or not */
    bool responded;
    unsigned status;
    struct srv_gen *gen;
    int64_t t0_ns;
    /* guard */
    struct lg_identity id; /* set by authentication; id.admitted while holding a slot */
    bool audit;            /* write an audit record when the request completes */
    bool security;         /* 401/403/429/policy decision: the record is fsynced */
    char decisions[256];
    char model[LG_GEN_MODEL_NAME_MAX];
    char *prompt_text;     /* audit_content only */
};

/* ---- server.c, for guard_glue.c ---- */

int64_t srv_mono_ns(void);
/* "GET", "HEAD", ... for one M_* bit; "?" otherwise. */
const char *srv_method_name(unsigned m);
/* Replies with body (stolen) plus one optional extra header (hdr NULL: none). */
int srv_reply_json_hdr(struct srv_conn *c, unsigned status, json_t *body, const char *hdr,
                       const char *val);
/* An error body in the given style (new reference, NULL on OOM). */
json_t *srv_error_body(enum srv_err_style style, unsigned status, const char *msg);
/* Under g->mu: the event into the accumulator or the stream buffer. */
void srv_gen_format(struct srv_gen *g, const struct lg_gen_event *ev);

/* ---- guard_glue.c, for server.c (guard.h "Wiring"). MHD thread unless said. ---- */

/* Step 1. Static keys (cfg.guard NULL) or the guard's key store. true = refused, reply
 * queued in *ret. */
bool srv_guard_authenticate(struct srv_conn *c, int *ret);
/* Step 2 for a route other than a generation (rate limits, no model). true = refused. */
bool srv_guard_admit_route(struct srv_conn *c, int *ret);
/* Steps 2 and 3 for a parsed generation: admission with the model, tool allow-list, input
 * policy. false = refused (reply queued in *ret). */
bool srv_guard_generation(struct srv_conn *c, const struct srv_parsed *p, int *ret);
/* Steps 5 and 6 for a request that did not hand its record to a srv_gen. */
void srv_guard_conn_end(struct srv_conn *c, bool completed_ok);
/* Before submit: the output filter and the audit fields copied from c. false = out of
 * memory (nothing to undo). */
bool srv_guard_gen_init(struct srv_gen *g, const struct srv_conn *c);
/* After a successful submit: g owns the slot, the prompt text and the audit record. */
void srv_guard_gen_adopt(struct srv_gen *g, struct srv_conn *c);
/* At the last release (any thread): the audit record if g owns it, then the filter state. */
void srv_guard_gen_end(struct srv_gen *g);
/* Under g->mu (engine thread, or the stopping main thread): one engine event through the
 * output filter to the writer. */
void srv_gen_filter(struct srv_gen *g, const struct lg_gen_event *ev);
/* The audit's name for a finish reason. */
const char *srv_finish_name(enum lg_finish f);

#endif
