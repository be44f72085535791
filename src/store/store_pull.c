/* store_pull.c: downloading a model over HTTP(S) with libcurl into the store.
 *
 * The body streams into a locked tmp/<x>.partial, hashed as it is written. Beside it a
 * sidecar <x>.partial.json records the URL, the expected total length and the ETag, so a
 * later pull of the same URL resumes with Range + If-Range. If-Range makes the server send
 * the whole new file (200) instead of the rest of a changed one, and we restart from zero;
 * without a strong ETag we never resume (llama.cpp PR #15963: resuming blindly can splice
 * two versions of a file). Only a complete, verified file is published (lg_store_publish).
 *
 * Error policy: a transfer that broke after some bytes keeps partial + sidecar (resumable);
 * anything else (404, hash mismatch, not a GGUF, disk full, no ETag) deletes them. A
 * cancelled pull (o->cancel, polled from libcurl's progress callback) counts as broken.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "localgemma.h"
#include "store/store.h"

enum {
    URL_MAX = 4096,
    ETAG_MAX = 256,
    SIDECAR_MAX_BYTES = 16 * 1024,
    HASH_BUF_BYTES = 1 << 20
};

struct xfer {
    int fd;
    const char *tmp;
    char sidecar[LG_STORE_PATH_MAX];
    const char *url;
    CURL *curl;
    bool resuming;         /* a Range request was sent */
    uint64_t offset;       /* bytes already in the file when this request started */
    uint64_t written;      /* bytes in the file now */
    int64_t total;         /* expected full length, -1 unknown */
    bool decided;          /* the response status was checked at the first body byte */
    bool restarted;        /* the server sent the whole file again (ETag changed) */
    uint64_t max_bytes;
    struct lg_sha256 sha;
    /* from the headers of the last response (reset at each status line: redirects) */
    long status;
    char etag[ETAG_MAX];
    int64_t content_length;
    int64_t range_start, range_total;
    /* failure recorded inside a callback */
    enum lg_status fail;
    struct lg_err ferr;
    bool drop;             /* delete partial + sidecar on failure */
    lg_store_progress_fn progress;
    void *user;
    bool (*cancel)(void *user);
    void *cancel_user;
    bool cancelled;        /* cancel() said so: libcurl was told to stop */
};

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *user)
{
    struct xfer *x = user;
    size_t n = size * nitems;
    char line[1024];
    size_t len = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, buf, len);
    line[len] = '\0';
    trim(line);
    if (!strncmp(line, "HTTP/", 5)) {
        const char *sp = strchr(line, ' ');
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->etag[0] = '\0';
        x->content_length = -1;
        x->range_start = x->range_total = -1;
        return n;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return n;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!strcasecmp(line, "etag")) {
        snprintf(x->etag, sizeof x->etag, "%.*s", (int)(sizeof x->etag - 1), v);
    } else if (!strcasecmp(line, "content-length")) {
        char *end;
        long long cl = strtoll(v, &end, 10);
        x->content_length = (end != v && cl >= 0) ? cl : -1;
    } else if (!strcasecmp(line, "content-range")) {
        long long a, b, t;
        if (sscanf(v, "bytes %lld-%lld/%lld", &a, &b, &t) == 3 && a >= 0 && b >= a && t > b) {
            x->range_start = a;
            x->range_total = t;
        }
    }
    return n;
}

static bool etag_strong(const char *etag)
{
    return etag[0] == '"' && strlen(etag) >= 2;
}

static enum lg_status sidecar_write(struct xfer *x, struct lg_err *err)
{
    json_t *o = json_object();
    if (!o)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    json_object_set_new(o, "url", json_string(x->url));
    json_object_set_new(o, "length", json_integer(x->total));
    json_object_set_new(o, "etag", json_string(x->etag));
    json_object_set_new(o, "updated", json_integer((json_int_t)time(NULL)));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status st = lg_store_write_atomic(x->sidecar, text, strlen(text), err);
    free(text);
    return st;
}

static size_t xfer_fail(struct xfer *x, enum lg_status code, bool drop, const char *msg)
{
    x->fail = lg_err_set(&x->ferr, code, "%s", msg);
    x->drop = drop;
    return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
}

/* First body byte of the final response: is it what we asked for? */
static size_t decide(struct xfer *x)
{
    char msg[512];
    x->decided = true;
    if (x->status == 206 && x->resuming) {
        if (x->range_start != (int64_t)x->offset) {
            snprintf(msg, sizeof msg, "server resumed at byte %lld, expected %llu",
                     (long long)x->range_start, (unsigned long long)x->offset);
            return xfer_fail(x, LG_ERR_IO, true, msg);
        }
        x->total = x->range_total;
    } else if (x->status == 200) {
        if (x->offset > 0) {
            /* the file changed (If-Range failed) or Range is unsupported: start over */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0)
                return xfer_fail(x, LG_ERR_IO, true, "cannot truncate the partial file");
            lg_sha256_init(&x->sha);
            x->offset = x->written = 0;
            x->restarted = true;
        }
        x->total = x->content_length;
    } else {
        return 0; /* an error page: reported from the status after perform */
    }
    if (x->max_bytes && x->total > 0 && (uint64_t)x->total > x->max_bytes) {
        snprintf(msg, sizeof msg, "file is %lld bytes, more than the %llu allowed",
                 (long long)x->total, (unsigned long long)x->max_bytes);
        return xfer_fail(x, LG_ERR_RANGE, true, msg);
    }
    struct lg_err e;
    if (sidecar_write(x, &e) != LG_OK)
        return xfer_fail(x, e.code, true, e.msg);
    return 1;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *user)
{
    struct xfer *x = user;
    size_t n = size * nmemb;
    if (!x->decided && decide(x) == 0)
        return 0;
    if (!x->decided)
        return 0;
    if (x->max_bytes && x->written + n > x->max_bytes)
        return xfer_fail(x, LG_ERR_RANGE, true, "download exceeds the size limit");
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(x->fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "write %s: %s%s", x->tmp, strerror(errno),
                     errno == ENOSPC ? " (disk full)" : "");
            return xfer_fail(x, LG_ERR_IO, true, msg);
        }
        off += (size_t)w;
    }
    lg_sha256_update(&x->sha, buf, n);
    x->written += n;
    if (x->progress)
        x->progress(x->user, x->written, x->total > 0 ? (uint64_t)x->total : 0);
    return n;
}

/* libcurl's progress callback, here only to ask whether the caller still wants the file:
 * non-zero makes curl_easy_perform stop with CURLE_ABORTED_BY_CALLBACK. */
static int on_xferinfo(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = user;
    if (x->cancel && x->cancel(x->cancel_user))
        x->cancelled = true;
    return x->cancelled;
}

/* Looks for a sidecar of the same URL. On success *fd is the locked partial (O_RDWR),
 * tmp/sidecar paths filled, etag/total from the sidecar. LG_ERR_NOT_FOUND: none. */
static enum lg_status find_resumable(struct lg_store *s, const char *url, int *fd, char *tmp,
                                     char *sidecar, char *etag, int64_t *total,
                                     struct lg_err *err)
{
    char dir[LG_STORE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/tmp", lg_store_root(s));
    DIR *d = opendir(dir);
    if (!d)
        return lg_err_set(err, LG_ERR_IO, "open %s: %s", dir, strerror(errno));
    enum lg_status st = LG_ERR_NOT_FOUND;
    struct dirent *e;
    while (st == LG_ERR_NOT_FOUND && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 14 || strcmp(e->d_name + len - 13, ".partial.json") != 0 ||
            e->d_name[0] == '.')
            continue;
        if (snprintf(sidecar, LG_STORE_PATH_MAX, "%s/%s", dir, e->d_name) >= LG_STORE_PATH_MAX)
            continue;
        json_error_t je;
        json_t *o = json_load_file(sidecar, JSON_REJECT_DUPLICATES, &je);
        json_t *u = json_object_get(o, "url"), *t = json_object_get(o, "etag"),
               *l = json_object_get(o, "length");
        bool match = json_is_string(u) && !strcmp(json_string_value(u), url);
        if (match) {
            snprintf(etag, ETAG_MAX, "%s", json_is_string(t) ? json_string_value(t) : "");
            *total = json_is_integer(l) ? (int64_t)json_integer_value(l) : -1;
        }
        json_decref(o);
        if (!match)
            continue;
        snprintf(tmp, LG_STORE_PATH_MAX, "%.*s", (int)(strlen(sidecar) - 5), sidecar);
        int f = open(tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (f < 0) {
            unlink(sidecar); /* stale */
            continue;
        }
        if (flock(f, LOCK_EX | LOCK_NB) != 0) {
            close(f);
            st = lg_err_set(err, LG_ERR_BUSY, "%s is already being downloaded by another "
                            "process", url);
            break;
        }
        *fd = f;
        st = LG_OK;
    }
    closedir(d);
    return st;
}

/* Hashes the first n bytes of fd into sha (the part a resume keeps). */
static enum lg_status hash_prefix(int fd, uint64_t n, struct lg_sha256 *sha, struct lg_err *err)
{
    uint8_t *buf = malloc(HASH_BUF_BYTES);
    if (!buf)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    uint64_t done = 0;
    while (done < n) {
        size_t want = n - done < HASH_BUF_BYTES ? (size_t)(n - done) : HASH_BUF_BYTES;
        ssize_t r = pread(fd, buf, want, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return lg_err_set(err, LG_ERR_IO, "reading the partial file failed");
        }
        lg_sha256_update(sha, buf, (size_t)r);
        done += (uint64_t)r;
    }
    free(buf);
    return LG_OK;
}

static bool url_ok(const char *url)
{
    size_t n = strnlen(url, URL_MAX + 1);
    if (n == 0 || n > URL_MAX)
        return false;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return false;
    return true;
}

static void discard(struct xfer *x)
{
    if (x->tmp && x->tmp[0])
        unlink(x->tmp);
    if (x->sidecar[0])
        unlink(x->sidecar);
}

static enum lg_status curl_error(struct xfer *x, CURLcode rc, const char *detail,
                                 struct lg_err *err)
{
    const char *what = detail[0] ? detail : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return lg_err_set(err, LG_ERR_IO, "cannot connect to %s: %s (connection refused or "
                          "host down)", x->url, what);
    case CURLE_COULDNT_RESOLVE_HOST:
        return lg_err_set(err, LG_ERR_IO, "cannot resolve host of %s: %s", x->url, what);
    case CURLE_OPERATION_TIMEDOUT:
        return lg_err_set(err, LG_ERR_IO, "timed out after %llu bytes: %s%s",
                          (unsigned long long)x->written, what,
                          x->written ? "; run pull again to resume" : "");
    case CURLE_TOO_MANY_REDIRECTS:
        return lg_err_set(err, LG_ERR_IO, "too many redirects for %s", x->url);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return lg_err_set(err, LG_ERR_INVALID_ARG, "%s: only http and https are allowed "
                          "(also for redirects)", x->url);
    default:
        if (x->written > 0)
            return lg_err_set(err, LG_ERR_IO, "transfer interrupted at %llu of %lld bytes: %s; "
                              "run the same pull again to resume",
                              (unsigned long long)x->written, (long long)x->total, what);
        return lg_err_set(err, LG_ERR_IO, "download of %s failed: %s", x->url, what);
    }
}

static enum lg_status http_error(const struct xfer *x, struct lg_err *err)
{
    if (x->status == 404 || x->status == 410)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "HTTP %ld: %s not found", x->status, x->url);
    return lg_err_set(err, LG_ERR_IO, "HTTP %ld from %s", x->status, x->url);
}

/* One request. Returns LG_OK when the whole file is in x->fd. */
static enum lg_status transfer(struct xfer *x, const struct lg_store_pull_opts *o,
                               const char *if_range, struct lg_err *err)
{
    char errbuf[CURL_ERROR_SIZE] = {0};
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    if (!c)
        return lg_err_set(err, LG_ERR_NOMEM, "curl: cannot create a handle");
    x->curl = c;
    x->decided = false;
    x->status = 0;
    x->fail = LG_OK;
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, o->max_redirects > 0 ? o->max_redirects : 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                     o->connect_timeout_s > 0 ? o->connect_timeout_s : 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                     o->low_speed_time_s > 0 ? o->low_speed_time_s : 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "localgemma/" LG_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    if (x->cancel) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    /* the stored bytes are the file's bytes: no transparent decompression */
    curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    if (x->resuming) {
        /* Range by hand, not CURLOPT_RESUME_FROM: libcurl treats a 200 answer to that as an
         * error, but a 200 is exactly what If-Range sends when the file changed */
        char h[ETAG_MAX + 16], r[64];
        snprintf(r, sizeof r, "Range: bytes=%llu-", (unsigned long long)x->offset);
        snprintf(h, sizeof h, "If-Range: %s", if_range);
        struct curl_slist *h1 = curl_slist_append(NULL, r);
        struct curl_slist *h2 = h1 ? curl_slist_append(h1, h) : NULL;
        if (!h2) {
            curl_slist_free_all(h1);
            curl_easy_cleanup(c);
            x->curl = NULL;
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        }
        hdrs = h2;
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code)
        x->status = code;
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    x->curl = NULL;
    if (x->fail != LG_OK) {
        if (err)
            *err = x->ferr;
        return x->fail;
    }
    if (x->cancelled) {
        x->drop = x->written == 0 || !etag_strong(x->etag);
        return lg_err_set(err, LG_ERR_CANCELLED, "pull of %s cancelled after %llu bytes%s",
                          x->url, (unsigned long long)x->written,
                          x->drop ? "" : "; the same pull resumes from there");
    }
    if (x->status >= 400 || (x->status != 200 && x->status != 206 && rc == CURLE_OK)) {
        if (x->status == 416)
            return LG_ERR_RANGE; /* caller restarts from zero */
        x->drop = x->written == 0 || x->status == 404 || x->status == 410;
        return http_error(x, err);
    }
    if (rc != CURLE_OK) {
        /* keep what we have only when it can be resumed safely */
        x->drop = x->written == 0 || !etag_strong(x->etag);
        return curl_error(x, rc, errbuf, err);
    }
    if (!x->decided) { /* an empty 200 body */
        if (decide(x) == 0 && x->fail != LG_OK) {
            if (err)
                *err = x->ferr;
            return x->fail;
        }
    }
    if (x->total >= 0 && x->written != (uint64_t)x->total) {
        x->drop = !etag_strong(x->etag);
        return lg_err_set(err, LG_ERR_IO, "transfer ended at %llu of %lld bytes",
                          (unsigned long long)x->written, (long long)x->total);
    }
    return LG_OK;
}

/* libcurl's global init is not thread-safe: run it exactly once, whoever pulls first */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum lg_status lg_store_pull(struct lg_store *s, const struct lg_store_pull_opts *o,
                             struct lg_store_manifest *m, uint64_t *resumed_from,
                             struct lg_err *err)
{
    if (resumed_from)
        *resumed_from = 0;
    if (!o->url || !url_ok(o->url))
        return lg_err_set(err, LG_ERR_INVALID_ARG,
                          "URL must start with http:// or https:// (no spaces, < 4 KiB)");
    char want[LG_SHA256_HEX_LEN + 1] = {0};
    if (o->sha256) {
        char tmpd[LG_STORE_DIGEST_LEN + 1];
        size_t n = strlen(o->sha256);
        const char *hex = n == LG_STORE_DIGEST_LEN ? o->sha256 + 7 : o->sha256;
        if (strlen(hex) != LG_SHA256_HEX_LEN)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "--sha256 needs 64 hex digits");
        for (int i = 0; i < LG_SHA256_HEX_LEN; i++)
            want[i] = (char)tolower((unsigned char)hex[i]);
        snprintf(tmpd, sizeof tmpd, "sha256:%s", want);
        if (lg_store_parse_digest(tmpd, want, NULL) != LG_OK)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "--sha256 needs 64 hex digits");
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return lg_err_set(err, LG_ERR_INTERNAL, "curl_global_init failed");

    struct xfer x;
    memset(&x, 0, sizeof x);
    char tmp[LG_STORE_PATH_MAX] = {0}, etag[ETAG_MAX] = {0};
    x.fd = -1;
    x.tmp = tmp;
    x.url = o->url;
    x.total = -1;
    x.max_bytes = o->max_bytes;
    x.progress = o->progress;
    x.user = o->user;
    x.cancel = o->cancel;
    x.cancel_user = o->cancel_user;
    lg_sha256_init(&x.sha);

    enum lg_status st = find_resumable(s, o->url, &x.fd, tmp, x.sidecar, etag, &x.total, err);
    if (st == LG_ERR_BUSY || (st != LG_OK && st != LG_ERR_NOT_FOUND))
        return st;
    if (st == LG_OK) {
        struct stat sb;
        if (fstat(x.fd, &sb) != 0)
            sb.st_size = 0;
        if (etag_strong(etag) && sb.st_size > 0 &&
            (x.total < 0 || (uint64_t)sb.st_size <= (uint64_t)x.total)) {
            x.offset = x.written = (uint64_t)sb.st_size;
            x.resuming = true;
            snprintf(x.etag, sizeof x.etag, "%s", etag);
            st = hash_prefix(x.fd, x.offset, &x.sha, err);
            if (st != LG_OK) {
                close(x.fd);
                return st;
            }
            if (lseek(x.fd, (off_t)x.offset, SEEK_SET) < 0) {
                close(x.fd);
                return lg_err_set(err, LG_ERR_IO, "seek in %s: %s", tmp, strerror(errno));
            }
        } else if (ftruncate(x.fd, 0) != 0) {
            close(x.fd);
            return lg_err_set(err, LG_ERR_IO, "truncate %s: %s", tmp, strerror(errno));
        }
    } else {
        st = lg_store_tmp_create(s, &x.fd, tmp, sizeof tmp, err);
        if (st != LG_OK)
            return st;
        if (snprintf(x.sidecar, sizeof x.sidecar, "%s.json", tmp) >= (int)sizeof x.sidecar) {
            unlink(tmp);
            close(x.fd);
            return lg_err_set(err, LG_ERR_RANGE, "store path too long");
        }
    }
    if (resumed_from)
        *resumed_from = x.offset;

    st = transfer(&x, o, etag, err);
    if (st == LG_ERR_RANGE && x.status == 416 && x.resuming) {
        /* our partial is not a prefix the server can continue: start over once */
        if (ftruncate(x.fd, 0) == 0 && lseek(x.fd, 0, SEEK_SET) == 0) {
            lg_sha256_init(&x.sha);
            x.offset = x.written = 0;
            x.resuming = false;
            x.restarted = true;
            if (resumed_from)
                *resumed_from = 0;
            st = transfer(&x, o, "", err);
        }
        if (st == LG_ERR_RANGE && x.status == 416)
            st = lg_err_set(err, LG_ERR_IO, "HTTP 416 from %s", o->url);
    }
    if (x.restarted && resumed_from)
        *resumed_from = 0;
    if (st == LG_OK && x.cancel && x.cancel(x.cancel_user)) {
        /* all bytes are in, nothing is published yet: still the caller's to stop */
        x.drop = !etag_strong(x.etag);
        st = lg_err_set(err, LG_ERR_CANCELLED, "pull of %s cancelled before publishing",
                        o->url);
    }
    if (st != LG_OK)
        goto fail;

    uint8_t d[LG_SHA256_BYTES];
    lg_sha256_final(&x.sha, d);
    lg_sha256_hex(d, m->hex);
    x.drop = true; /* from here on, a failure is about the content: never resume it */
    if (want[0] && strcmp(want, m->hex) != 0) {
        st = lg_err_set(err, LG_ERR_FORMAT, "sha256 mismatch: got %s, expected %s; the "
                        "download was deleted", m->hex, want);
        goto fail;
    }
    if (fsync(x.fd) != 0) {
        st = lg_err_set(err, LG_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((st = lg_store_check_gguf_header(tmp, err)) != LG_OK)
        goto fail;
    m->size = x.written;
    snprintf(m->format, sizeof m->format, "gguf");
    m->created = (int64_t)time(NULL);
    size_t ul = strnlen(o->url, sizeof m->source - 1);
    memcpy(m->source, o->url, ul); /* truncated on purpose: informational only */
    m->source[ul] = '\0';
    if (o->inspect && (st = o->inspect(o->inspect_user, tmp, m, err)) != LG_OK)
        goto fail;
    if ((st = lg_store_publish(s, x.fd, tmp, m, err)) != LG_OK)
        goto fail;
    unlink(x.sidecar);
    close(x.fd);
    return LG_OK;
fail:
    if (x.drop)
        discard(&x);
    if (x.fd >= 0)
        close(x.fd);
    return st;
}
