/* stream.c: route work that runs on its own thread, with its reply streamed as it is
 * produced or sent whole when the work ends (POST /api/pull; anything long and blocking that
 * must stay off the one MHD thread).
 *
 * A struct srv_task is shared by the worker thread and the MHD side, under its mutex:
 *  - stream mode: the route answers 200 at once with a callback response; the worker appends
 *    bytes (srv_task_write) and the content reader hands them to MHD, suspending the
 *    connection while the buffer is empty. Whoever adds bytes or ends the body resumes it.
 *  - deferred mode (Ollama's stream:false): the connection is suspended with no response;
 *    when the worker ends it is resumed, MHD calls the route again, and the route collects
 *    the result with srv_task_resume() and replies with the worker's status and body.
 * References: the worker's (dropped when its function returns) and the connection side's
 * (stream: the MHD response's free callback; deferred: the reply). The last one frees.
 * Invariant (as for srv_gen in server.c): a connection is suspended only by the MHD thread
 * and resumed only by whoever clears t->suspended under t->mu, so each suspend gets exactly
 * one resume and mc is valid whenever t->suspended is true.
 *
 * Shutdown: MHD_stop_daemon aborts the process if a connection is still suspended, and a
 * worker (a download) may not finish for minutes. lg_server_stop therefore calls
 * srv_streams_stop() right after it stops accepting: every stream gets its stop line (an
 * NDJSON error) and ends, every deferred request gets 503, and all are resumed. The workers
 * keep running detached; their later writes are dropped, and srv_task_cancelled() tells
 * them to wind down.
 * Hang-ups: a client that goes away makes later writes no-ops, and srv_task_cancelled()
 * reports it so the work can stop: in stream mode once MHD lets go of the response, and in
 * either mode, while the connection is suspended (MHD then watches nothing), by polling its
 * socket for the peer's close. The fd is valid while t->suspended is true, by the invariant
 * above. */
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"

enum { TASK_BLOCK = 8 * 1024 };

struct srv_task {
    pthread_mutex_t mu;
    int refs;
    const struct lg_server_config *key; /* the server it belongs to: compared, not read */
    const struct srv_conn *conn;        /* deferred: the waiting connection, until replied */
    struct MHD_Connection *mc;
    int fd;         /* mc's socket, polled for a hang-up while suspended; -1 unknown */
    bool stream;
    bool suspended; /* we suspended mc and nobody resumed it yet */
    bool ended;     /* stream: the body is complete; deferred: the result is set */
    bool closed;    /* MHD let go: of the response (stream), of the connection (deferred) */
    bool stopping;  /* the server is stopping */
    struct srv_buf out; /* stream: bytes not yet handed to MHD */
    size_t out_pos;
    unsigned status; /* deferred result */
    json_t *result;
    char stop_line[200];
    srv_task_fn fn;
    void *user;
    void (*user_free)(void *);
    struct srv_task *next, *prev;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct srv_task *reg_head;

static void task_release(struct srv_task *t)
{
    pthread_mutex_lock(&t->mu);
    int left = --t->refs;
    pthread_mutex_unlock(&t->mu);
    if (left > 0)
        return;
    pthread_mutex_lock(&reg_mu);
    if (t->prev)
        t->prev->next = t->next;
    else
        reg_head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    pthread_mutex_unlock(&reg_mu);
    srv_buf_free(&t->out);
    json_decref(t->result);
    if (t->user_free)
        t->user_free(t->user);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Under t->mu: takes the pending resume, if any; the caller resumes after unlocking. */
static struct MHD_Connection *take_wake(struct srv_task *t)
{
    if (!t->suspended)
        return NULL;
    t->suspended = false;
    return t->mc;
}

static void wake(struct MHD_Connection *mc)
{
    if (mc)
        MHD_resume_connection(mc);
}

void srv_task_write(struct srv_task *t, const void *data, size_t n)
{
    pthread_mutex_lock(&t->mu);
    if (!t->stream || t->ended || t->closed) {
        pthread_mutex_unlock(&t->mu);
        return;
    }
    srv_buf_put(&t->out, data, n);
    struct MHD_Connection *mc = take_wake(t);
    pthread_mutex_unlock(&t->mu);
    wake(mc);
}

void srv_task_set_result(struct srv_task *t, unsigned status, json_t *result_steal)
{
    pthread_mutex_lock(&t->mu);
    if (t->stream || t->ended) {
        pthread_mutex_unlock(&t->mu);
        json_decref(result_steal);
        return;
    }
    t->status = status;
    json_decref(t->result);
    t->result = result_steal;
    pthread_mutex_unlock(&t->mu);
}

bool srv_task_cancelled(struct srv_task *t)
{
    pthread_mutex_lock(&t->mu);
    bool gone = t->stopping || t->closed;
    if (!gone && t->suspended && t->fd >= 0) {
        struct pollfd pfd = {.fd = t->fd, .events = POLLRDHUP};
        gone = poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
    }
    pthread_mutex_unlock(&t->mu);
    return gone;
}

static void *task_main(void *arg)
{
    struct srv_task *t = arg;
    t->fn(t, t->user);
    pthread_mutex_lock(&t->mu);
    if (!t->ended) {
        t->ended = true;
        if (!t->stream && !t->result) {
            t->status = 500;
            t->result = json_pack("{s:s}", "error", "internal error: the task set no result");
        }
    }
    struct MHD_Connection *mc = take_wake(t);
    pthread_mutex_unlock(&t->mu);
    wake(mc);
    task_release(t);
    return NULL;
}

/* MHD thread: hands buffered bytes over, or suspends until the worker adds some. */
static ssize_t task_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct srv_task *t = cls;
    (void)pos;
    pthread_mutex_lock(&t->mu);
    size_t avail = t->out.n - t->out_pos;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, t->out.p + t->out_pos, n);
        t->out_pos += n;
        if (t->out_pos == t->out.n)
            t->out.n = t->out_pos = 0;
        pthread_mutex_unlock(&t->mu);
        return (ssize_t)n;
    }
    if (t->ended || t->out.oom) {
        bool bad = t->out.oom;
        pthread_mutex_unlock(&t->mu);
        return bad ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    t->suspended = true;
    MHD_suspend_connection(t->mc);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

static void task_response_free(void *cls)
{
    struct srv_task *t = cls;
    pthread_mutex_lock(&t->mu);
    t->closed = true;
    pthread_mutex_unlock(&t->mu);
    task_release(t);
}

static int start_thread(struct srv_task *t)
{
    pthread_attr_t a;
    pthread_t th;
    if (pthread_attr_init(&a) != 0)
        return -1;
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &a, task_main, t);
    pthread_attr_destroy(&a);
    return rc;
}

int srv_task_start(struct srv_conn *c, bool stream, const char *content_type,
                   const char *stop_line, srv_task_fn fn, void *user,
                   void (*user_free)(void *))
{
    struct srv_task *t = calloc(1, sizeof *t);
    if (!t) {
        if (user_free)
            user_free(user);
        return srv_reply_error(c, 503, "out of memory");
    }
    pthread_mutex_init(&t->mu, NULL);
    t->refs = 2; /* worker + connection side */
    t->key = srv_conn_config(c);
    t->mc = srv_conn_mhd(c);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(t->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    t->fd = ci ? (int)ci->connect_fd : -1;
    t->stream = stream;
    t->fn = fn;
    t->user = user;
    t->user_free = user_free;
    snprintf(t->stop_line, sizeof t->stop_line, "%s", stop_line ? stop_line : "");
    /* Registered under reg_mu after checking draining under it: srv_streams_stop() runs
     * after draining is set, so it sees every task that got past this check. */
    pthread_mutex_lock(&reg_mu);
    if (srv_conn_draining(c)) {
        pthread_mutex_unlock(&reg_mu);
        pthread_mutex_destroy(&t->mu);
        free(t);
        if (user_free)
            user_free(user);
        return srv_reply_error(c, 503, "server is shutting down");
    }
    t->next = reg_head;
    if (reg_head)
        reg_head->prev = t;
    reg_head = t;
    pthread_mutex_unlock(&reg_mu);

    if (stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, TASK_BLOCK, task_reader, t, task_response_free);
        if (!r) {
            t->refs = 1;
            task_release(t);
            return srv_reply_error(c, 503, "out of memory");
        }
        MHD_add_response_header(r, "Content-Type", content_type);
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        /* From here the response owns one reference (released by task_response_free,
         * also when queueing fails). */
        int ok = srv_reply_response(c, 200, r);
        if (ok == MHD_NO) {
            task_release(t); /* the worker's: it never starts */
            return MHD_NO;
        }
        if (start_thread(t) != 0) {
            static const char line[] = "{\"error\":\"cannot start a thread\"}\n";
            srv_task_write(t, line, sizeof line - 1);
            pthread_mutex_lock(&t->mu);
            t->ended = true;
            struct MHD_Connection *mc = take_wake(t);
            pthread_mutex_unlock(&t->mu);
            wake(mc);
            task_release(t);
        }
        return ok;
    }
    t->conn = c;
    if (start_thread(t) != 0) {
        t->conn = NULL;
        t->refs = 1;
        task_release(t);
        return srv_reply_error(c, 503, "cannot start a thread");
    }
    bool had;
    return srv_task_resume(c, &had);
}

int srv_task_resume(struct srv_conn *c, bool *had_task)
{
    *had_task = false;
    struct srv_task *t;
    pthread_mutex_lock(&reg_mu);
    for (t = reg_head; t; t = t->next)
        if (!t->stream && t->conn == c)
            break;
    pthread_mutex_unlock(&reg_mu);
    if (!t)
        return MHD_YES;
    *had_task = true;
    pthread_mutex_lock(&t->mu);
    if (!t->ended) { /* not finished yet (or a spurious resume): wait again */
        t->suspended = true;
        MHD_suspend_connection(t->mc);
        pthread_mutex_unlock(&t->mu);
        return MHD_YES;
    }
    unsigned status = t->status;
    json_t *body = t->result;
    t->result = NULL;
    t->conn = NULL;
    pthread_mutex_unlock(&t->mu);
    task_release(t);
    if (!body)
        return srv_reply_error(c, 503, "out of memory");
    return srv_reply_json(c, status, body);
}

void srv_task_conn_gone(const struct srv_conn *c)
{
    struct srv_task *t;
    pthread_mutex_lock(&reg_mu);
    for (t = reg_head; t; t = t->next)
        if (!t->stream && t->conn == c)
            break;
    if (t) {
        pthread_mutex_lock(&t->mu);
        t->conn = NULL;
        t->closed = true; /* the worker's srv_task_cancelled() now says so */
        t->suspended = false;
        t->fd = -1;
        pthread_mutex_unlock(&t->mu);
    }
    pthread_mutex_unlock(&reg_mu);
    if (t)
        task_release(t); /* the connection side's reference, never collected by a reply */
}

void srv_streams_stop(const struct lg_server_config *cfg)
{
    pthread_mutex_lock(&reg_mu);
    for (struct srv_task *t = reg_head; t; t = t->next) {
        if (t->key != cfg)
            continue;
        pthread_mutex_lock(&t->mu);
        t->stopping = true;
        if (!t->ended) {
            if (t->stream) {
                srv_buf_puts(&t->out, t->stop_line);
            } else {
                t->status = 503;
                json_decref(t->result);
                t->result = json_pack("{s:s}", "error", "server shutting down");
            }
            t->ended = true;
        }
        struct MHD_Connection *mc = take_wake(t);
        pthread_mutex_unlock(&t->mu);
        wake(mc);
    }
    pthread_mutex_unlock(&reg_mu);
}
