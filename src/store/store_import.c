/* store_import.c: adding a local GGUF file to the store, and the small display helpers
 * (progress bar, sizes, ages) the store commands share.
 *
 * Import hashes the bytes it stores: with a hard link (same filesystem) the blob shares the
 * source's inode, so it is hashed by reading the link; otherwise it is copied into a locked
 * tmp/<x>.partial while hashing. Only a fully written, fsynced, hashed file is renamed into
 * blobs/, and the manifest follows it (lg_store_publish), so a kill at any point leaves no
 * listed model and at most an unlocked partial that the next startup scan removes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "store/store.h"

enum { COPY_BUF_BYTES = 4 << 20 };

enum lg_status lg_store_check_gguf_header(const char *path, struct lg_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lg_err_set(err, LG_ERR_IO, "%s: %s", path, strerror(errno));
    uint8_t h[8];
    ssize_t r = read(fd, h, sizeof h);
    close(fd);
    if (r < 0)
        return lg_err_set(err, LG_ERR_IO, "%s: read: %s", path, strerror(errno));
    if (r < 8 || memcmp(h, "GGUF", 4) != 0)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: not a GGUF file (bad magic)", path);
    uint32_t version = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
                       (uint32_t)h[7] << 24;
    if (version != 2 && version != 3)
        return lg_err_set(err, LG_ERR_VERSION, "%s: GGUF version %u not supported (2 or 3)",
                          path, version);
    return LG_OK;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Hard-links src to a fresh tmp/<x>.partial. Returns the locked fd (read-only) or -1 with
 * errno (EXDEV, EPERM... mean "copy instead"). */
static int link_into_tmp(struct lg_store *s, const char *src, char *out, size_t cap)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        uint8_t b[8];
        if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
            return -1;
        int n = snprintf(out, cap, "%s/tmp/%02x%02x%02x%02x%02x%02x%02x%02x.partial",
                         lg_store_root(s), b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
        if (n < 0 || (size_t)n >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (link(src, out) != 0) {
            if (errno == EEXIST)
                continue;
            return -1;
        }
        int fd = open(out, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            unlink(out);
            errno = e;
            return -1;
        }
        return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Hashes in (a regular file) from offset 0 to EOF and, when out >= 0, writes the bytes to
 * out as well; *n_done gets the byte count. */
static enum lg_status hash_copy(int in, const char *src, int out, const char *dst,
                                uint8_t *buf, uint64_t total, char hex[LG_SHA256_HEX_LEN + 1],
                                uint64_t *n_done, lg_store_progress_fn progress, void *user,
                                struct lg_err *err)
{
    struct lg_sha256 c;
    lg_sha256_init(&c);
    uint64_t done = 0;
    for (;;) {
        ssize_t r = pread(in, buf, COPY_BUF_BYTES, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return lg_err_set(err, LG_ERR_IO, "read %s: %s", src, strerror(errno));
        if (r == 0)
            break;
        lg_sha256_update(&c, buf, (size_t)r);
        for (size_t off = 0; out >= 0 && off < (size_t)r;) {
            ssize_t w = write(out, buf + off, (size_t)r - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return lg_err_set(err, LG_ERR_IO, "write %s: %s%s", dst, strerror(errno),
                                  errno == ENOSPC ? " (disk full)" : "");
            off += (size_t)w;
        }
        done += (uint64_t)r;
        if (progress)
            progress(user, done, total);
    }
    uint8_t d[LG_SHA256_BYTES];
    lg_sha256_final(&c, d);
    lg_sha256_hex(d, hex);
    *n_done = done;
    return LG_OK;
}

enum lg_status lg_store_import(struct lg_store *s, const char *path,
                               struct lg_store_manifest *m, bool allow_link,
                               lg_store_progress_fn progress, void *user, bool *linked,
                               struct lg_err *err)
{
    if (linked)
        *linked = false;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lg_err_set(err, errno == ENOENT ? LG_ERR_NOT_FOUND : LG_ERR_IO, "%s: %s", path,
                          strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "%s: not a regular file", path);
    enum lg_status st = lg_store_check_gguf_header(path, err);
    if (st != LG_OK)
        return st;
    uint8_t *buf = malloc(COPY_BUF_BYTES);
    if (!buf)
        return lg_err_set(err, LG_ERR_NOMEM, "import: out of memory");
    char tmp[LG_STORE_PATH_MAX];
    int fd = -1, in = -1;
    uint64_t n = 0;
    bool did_link = false;
    tmp[0] = '\0';
    if (allow_link) {
        fd = link_into_tmp(s, path, tmp, sizeof tmp);
        did_link = fd >= 0;
        if (!did_link)
            tmp[0] = '\0';
    }
    if (did_link) {
        st = hash_copy(fd, tmp, -1, NULL, buf, (uint64_t)sb.st_size, m->hex, &n, progress,
                       user, err);
    } else {
        in = open(path, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            st = lg_err_set(err, LG_ERR_IO, "%s: %s", path, strerror(errno));
            goto fail;
        }
        posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
        if ((st = lg_store_tmp_create(s, &fd, tmp, sizeof tmp, err)) != LG_OK) {
            tmp[0] = '\0';
            goto fail;
        }
        /* reserve the space first: a full disk fails now, with a clear message */
        int rc = sb.st_size > 0 ? posix_fallocate(fd, 0, sb.st_size) : 0;
        if (rc == ENOSPC) {
            st = lg_err_set(err, LG_ERR_IO, "disk full: %llu bytes needed in %s",
                            (unsigned long long)sb.st_size, lg_store_root(s));
            goto fail;
        }
        st = hash_copy(in, path, fd, tmp, buf, (uint64_t)sb.st_size, m->hex, &n, progress,
                       user, err);
    }
    if (st != LG_OK)
        goto fail;
    if (n != (uint64_t)sb.st_size) {
        st = lg_err_set(err, LG_ERR_IO, "%s changed size while importing", path);
        goto fail;
    }
    m->size = n;
    snprintf(m->format, sizeof m->format, "gguf");
    m->created = (int64_t)time(NULL);
    char real[PATH_MAX];
    const char *src = realpath(path, real) ? real : path;
    size_t src_len = strnlen(src, sizeof m->source - 1);
    memcpy(m->source, src, src_len); /* truncated on purpose: informational only */
    m->source[src_len] = '\0';
    st = lg_store_publish(s, fd, tmp, m, err);
    if (st != LG_OK)
        goto fail;
    close(fd);
    if (in >= 0)
        close(in);
    free(buf);
    if (linked)
        *linked = did_link;
    return LG_OK;
fail:
    if (tmp[0])
        unlink(tmp);
    if (fd >= 0)
        close(fd);
    if (in >= 0)
        close(in);
    free(buf);
    return st;
}

/* ---- GGUF facts and default names ----------------------------------------------------- */

static void str_to_buf(struct lg_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = '\0';
}

static void read_facts(const struct lg_gguf *g, struct lg_store_gguf_facts *f)
{
    struct lg_str s;
    memset(f, 0, sizeof *f);
    if (lg_gguf_get_str(g, "general.architecture", &s, NULL) == LG_OK)
        str_to_buf(s, f->architecture, sizeof f->architecture);
    if (lg_gguf_get_str(g, "general.basename", &s, NULL) == LG_OK)
        str_to_buf(s, f->basename, sizeof f->basename);
    if (lg_gguf_get_str(g, "general.size_label", &s, NULL) == LG_OK)
        str_to_buf(s, f->size_label, sizeof f->size_label);
    uint32_t u;
    if (lg_gguf_get_u32(g, "general.file_type", &u, NULL) == LG_OK)
        f->file_type = u;
    if (f->architecture[0]) {
        char key[128];
        int64_t v;
        snprintf(key, sizeof key, "%s.context_length", f->architecture);
        if (lg_gguf_get_i64(g, key, &v, NULL) == LG_OK && v > 0)
            f->context_length = (uint64_t)v;
    }
    f->n_tensors = g->n_tensors;
}

bool lg_store_default_name(const char *path, const struct lg_store_gguf_facts *f,
                           struct lg_store_name *out)
{
    if (lg_store_sanitize_part(f->basename, out->family)) {
        if (!lg_store_sanitize_part(f->size_label, out->tag))
            strcpy(out->tag, "latest");
        return true;
    }
    /* last path segment, without a URL query or fragment */
    char stem[256];
    size_t end = strcspn(path, "?#");
    const char *base = path;
    for (size_t i = 0; i < end; i++)
        if (path[i] == '/')
            base = path + i + 1;
    size_t n = (size_t)(path + end - base);
    if (n >= sizeof stem)
        n = sizeof stem - 1;
    memcpy(stem, base, n);
    stem[n] = '\0';
    if (n > 5 && !strcmp(stem + n - 5, ".gguf"))
        stem[n - 5] = '\0';
    strcpy(out->tag, "latest");
    return lg_store_sanitize_part(stem, out->family);
}

enum lg_status lg_store_gguf_facts(const char *path, struct lg_store_gguf_facts *f,
                                  struct lg_err *err)
{
    struct lg_gguf *g = NULL;
    struct lg_err e;
    memset(f, 0, sizeof *f);
    if (lg_gguf_open(path, &g, &e) != LG_OK)
        return lg_err_set(err, e.code, "%s: %s", path, e.msg);
    read_facts(g, f);
    lg_gguf_close(g);
    return LG_OK;
}

/* ---- display helpers -------------------------------------------------------------------- */

void lg_progress_init(struct lg_progress *p, const char *label)
{
    memset(p, 0, sizeof *p);
    p->label = label ? label : "";
    const char *force = getenv("LG_PROGRESS");
    p->tty = force ? strcmp(force, "0") != 0 : isatty(2);
    p->t_start = now_s();
}

void lg_progress_cb(void *user, uint64_t done, uint64_t total)
{
    struct lg_progress *p = user;
    double t = now_s();
    if (!p->tty || (p->drawn && t - p->t_last < 0.1 && done != total))
        return;
    p->t_last = t;
    p->last_done = done;
    char a[32], b[32], r[32];
    lg_store_format_size(done, a, sizeof a);
    double el = t - p->t_start;
    lg_store_format_size(el > 0.05 ? (uint64_t)((double)done / el) : 0, r, sizeof r);
    if (total) {
        enum { W = 30 };
        int pct = (int)(100.0 * (double)done / (double)total);
        if (pct > 100)
            pct = 100;
        int fill = pct * W / 100;
        char bar[W + 1];
        for (int i = 0; i < W; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[W] = '\0';
        lg_store_format_size(total, b, sizeof b);
        fprintf(stderr, "\r%s %3d%% [%s] %s / %s  %s/s   ", p->label, pct, bar, a, b, r);
    } else {
        fprintf(stderr, "\r%s %s  %s/s   ", p->label, a, r);
    }
    p->drawn = true;
}

void lg_progress_finish(struct lg_progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}

void lg_store_format_size(uint64_t bytes, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000.0 && u < 5) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else if (v < 10.0)
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    else
        snprintf(buf, cap, "%.0f %s", v, units[u]);
}

void lg_store_format_age(int64_t then, int64_t now, char *buf, size_t cap)
{
    int64_t d = now - then;
    if (d < 0)
        d = 0;
    if (d < 1)
        snprintf(buf, cap, "Less than a second ago");
    else if (d < 60)
        snprintf(buf, cap, "%lld second%s ago", (long long)d, d == 1 ? "" : "s");
    else if (d < 120)
        snprintf(buf, cap, "About a minute ago");
    else if (d < 3600)
        snprintf(buf, cap, "%lld minutes ago", (long long)(d / 60));
    else if (d < 7200)
        snprintf(buf, cap, "About an hour ago");
    else if (d < 86400)
        snprintf(buf, cap, "%lld hours ago", (long long)(d / 3600));
    else if (d < 2 * 86400)
        snprintf(buf, cap, "Yesterday");
    else if (d < 14 * 86400)
        snprintf(buf, cap, "%lld days ago", (long long)(d / 86400));
    else if (d < 60 * 86400)
        snprintf(buf, cap, "%lld weeks ago", (long long)(d / (7 * 86400)));
    else if (d < 730 * 86400)
        snprintf(buf, cap, "%lld months ago", (long long)(d / (30 * 86400)));
    else
        snprintf(buf, cap, "%lld years ago", (long long)(d / (365 * 86400)));
}
