/* store.h: the model store — content-addressed blobs plus small JSON manifests.
 *
 * Layout under the root ($LOCALGEMMA_HOME, default ~/.localgemma):
 *   blobs/sha256-<64 hex>        model files, named by the sha256 of their bytes
 *   manifests/<family>/<tag>     JSON: name, blob digest, size, format, time, source, GGUF facts
 *   tmp/<16 hex>.partial         files being written; <x>.partial.json = resumable pull sidecar
 *   .lock                        flock() taken while publishing or removing (short sections)
 *
 * Invariants:
 *  - Every path the store opens is built from a name that passed lg_store_parse_name() or a
 *    digest that passed lg_store_parse_digest(); nothing else reaches a path (Probllama rule).
 *  - Every write is atomic: tmp file -> fsync -> rename -> fsync(dir). A blob is published
 *    before the manifest that names it, so a crash never leaves a listed model without its
 *    blob. A writer holds flock() on its .partial while it works; the startup scan deletes
 *    only partials that are unlocked, older than the store handle and have no sidecar.
 *
 * Thread-safety: a struct lg_store is immutable after open; calls may come from any thread.
 * Concurrent processes are serialised on the .lock file for publish/remove/copy.
 */
#ifndef LG_STORE_H
#define LG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sha256.h"
#include "localgemma.h"

enum {
    LG_STORE_PART_MAX = 64,   /* max bytes of a family or a tag */
    LG_STORE_NAME_MAX = 2 * LG_STORE_PART_MAX + 1,
    LG_STORE_PATH_MAX = 4096,
    LG_STORE_DIGEST_LEN = 7 + LG_SHA256_HEX_LEN /* "sha256:" + 64 hex */
};

/* A validated model name. family and tag are NUL-terminated, lower-case. */
struct lg_store_name {
    char family[LG_STORE_PART_MAX + 1];
    char tag[LG_STORE_PART_MAX + 1];
};

/* The one name validator. Accepts "family" or "family:tag" (tag defaults to "latest"). Each
 * part: 1..64 bytes of [a-z0-9._-] (A-Z folded to lower case), starting with a letter or a
 * digit, no "..". Refuses '/', '\\', '%', NUL, spaces, control bytes, absolute paths, more than
 * one ':' and anything longer. len is the byte length of s (embedded NUL → refused).
 * LG_ERR_INVALID_ARG with a message naming the problem. Any thread. */
enum lg_status lg_store_parse_name(const char *s, size_t len, struct lg_store_name *out,
                                   struct lg_err *err);
/* "family:tag" into buf (at least LG_STORE_NAME_MAX + 1 bytes). */
void lg_store_format_name(const struct lg_store_name *n, char *buf, size_t cap);
/* Builds a valid name from free text (file stem, general.basename): lower-cases, maps other
 * bytes to '-', trims to the limits. Returns false when nothing usable remains. */
bool lg_store_sanitize_part(const char *s, char out[LG_STORE_PART_MAX + 1]);

/* Accepts exactly "sha256:<64 lower-case hex>" (or "sha256-<64 hex>"); writes the 64 hex
 * digits + NUL to hex. LG_ERR_FORMAT otherwise. */
enum lg_status lg_store_parse_digest(const char *s, char hex[LG_SHA256_HEX_LEN + 1],
                                     struct lg_err *err);

struct lg_store;

/* Opens (creating directories as needed) the store at root, or, when root is NULL, at
 * $LOCALGEMMA_HOME or ~/.localgemma. Runs the startup scan of tmp/ (lg_store_scan_tmp). */
enum lg_status lg_store_open(const char *root, struct lg_store **out, struct lg_err *err);
void lg_store_close(struct lg_store *s);
const char *lg_store_root(const struct lg_store *s);

/* Removes tmp/<x>.partial files that no process holds (flock), older than this handle and
 * without a .partial.json sidecar; also sidecars without their partial, and resumable pairs
 * whose sidecar was last written more than a week ago. *n_removed may be
 * NULL. Called by lg_store_open. */
enum lg_status lg_store_scan_tmp(struct lg_store *s, int *n_removed, struct lg_err *err);

/* Paths built only from validated parts. LG_ERR_RANGE when cap is too small.
 * lg_store_manifest_path also refuses (LG_ERR_FORMAT) a manifests/<family> that exists but
 * is not a directory, e.g. a planted symlink: it is never followed. */
enum lg_status lg_store_blob_path(const struct lg_store *s, const char *hex, char *out,
                                  size_t cap, struct lg_err *err);
enum lg_status lg_store_manifest_path(const struct lg_store *s, const struct lg_store_name *n,
                                      char *out, size_t cap, struct lg_err *err);

/* ---- atomic file helpers (also used by other modules) ----------------------------------- */

/* fsync() of a directory, so a rename/unlink in it is durable. */
enum lg_status lg_store_fsync_dir(const char *dir, struct lg_err *err);
/* Writes data to a unique temp file in path's directory, fsyncs, renames over path, fsyncs
 * the directory. On failure path is untouched and the temp file removed. */
enum lg_status lg_store_write_atomic(const char *path, const void *data, size_t n,
                                     struct lg_err *err);

/* Creates tmp/<random>.partial (O_EXCL, mode 0644) and locks it (flock LOCK_EX). Returns the
 * fd (caller closes) and the path in out (cap >= LG_STORE_PATH_MAX recommended). */
enum lg_status lg_store_tmp_create(struct lg_store *s, int *fd, char *out, size_t cap,
                                   struct lg_err *err);

/* Moves a finished tmp file whose content hashes to hex into blobs/: fsync(file) is the
 * caller's job (done when fd >= 0 is passed: fsync(fd) here). If the blob already exists
 * with the same size the tmp file is deleted instead (dedup). Then fsync(blobs/). */
enum lg_status lg_store_publish_blob(struct lg_store *s, int fd, const char *tmp_path,
                                     const char *hex, struct lg_err *err);

/* ---- manifests ------------------------------------------------------------------------- */

/* Optional facts from the GGUF, filled by the caller (empty string / 0 = unknown). */
struct lg_store_gguf_facts {
    char architecture[64];
    char basename[128];
    char size_label[32];
    uint32_t file_type;        /* general.file_type, 0 = unknown */
    uint64_t context_length;
    uint64_t n_tensors;
};

struct lg_store_manifest {
    struct lg_store_name name;
    char hex[LG_SHA256_HEX_LEN + 1]; /* blob digest */
    uint64_t size;                   /* blob bytes */
    char format[16];                 /* "gguf" */
    int64_t created;                 /* unix seconds when imported/pulled */
    char source[1024];               /* original path or URL (truncated) */
    struct lg_store_gguf_facts gguf;
};

/* Writes (atomically, replacing) the manifest for m->name. The blob must already exist. */
enum lg_status lg_store_manifest_write(struct lg_store *s, const struct lg_store_manifest *m,
                                       struct lg_err *err);
/* Reads and validates a manifest (size cap 64 KiB, JSON, digest format, name match).
 * LG_ERR_NOT_FOUND when the name has no manifest. */
enum lg_status lg_store_manifest_read(const struct lg_store *s, const struct lg_store_name *n,
                                      struct lg_store_manifest *m, struct lg_err *err);

/* All valid manifests, newest first. Invalid manifest files are skipped (counted in
 * *n_bad, may be NULL). *out is malloc'ed (free()); *n may be 0. */
enum lg_status lg_store_list(const struct lg_store *s, struct lg_store_manifest **out,
                             size_t *n, size_t *n_bad, struct lg_err *err);

/* Publishes a finished tmp file (content hashing to m->hex; fsync(fd) done here when
 * fd >= 0) as a blob, then writes m's manifest, all under the store lock. If the name pointed
 * to another blob before and nothing references that blob any more, it is removed. */
enum lg_status lg_store_publish(struct lg_store *s, int fd, const char *tmp_path,
                                const struct lg_store_manifest *m, struct lg_err *err);

/* Removes the manifest of name; removes its blob only when no other manifest refers to it
 * (*blob_removed, may be NULL, tells which). LG_ERR_NOT_FOUND when absent. */
enum lg_status lg_store_remove(struct lg_store *s, const struct lg_store_name *n,
                               bool *blob_removed, struct lg_err *err);

/* Removes every blob no manifest names (left by a crash between a blob's rename and its
 * manifest, or a failed fsync). Under the store lock, so never races an import. A listing
 * error removes nothing. *n_removed may be NULL. */
enum lg_status lg_store_gc(struct lg_store *s, int *n_removed, struct lg_err *err);

/* Copies the manifest of src to dst (replacing dst). Blob shared. */
enum lg_status lg_store_copy(struct lg_store *s, const struct lg_store_name *src,
                             const struct lg_store_name *dst, struct lg_err *err);

/* Resolves what the user typed for MODEL: an existing regular file path gives itself;
 * otherwise a store name gives its blob path after checking the blob exists with the
 * manifest's size (and, when verify, its sha256). LG_ERR_NOT_FOUND: neither a file nor a
 * known model (message says which). out gets a NUL-terminated path. */
enum lg_status lg_store_resolve(const struct lg_store *s, const char *name_or_path,
                                bool verify, char *out, size_t cap, struct lg_err *err);
/* Names only, never a path: for requests from the network (server), where a path must not
 * be accepted. Same errors. */
enum lg_status lg_store_resolve_name(const struct lg_store *s, const char *name,
                                     bool verify, char *out, size_t cap, struct lg_err *err);
/* Same with the default store (opened and closed inside; for run/show/serve). A plain file
 * path never opens the store. */
enum lg_status lg_store_resolve_default(const char *name_or_path, bool verify, char *out,
                                        size_t cap, struct lg_err *err);

/* ---- import and pull -------------------------------------------------------------------- */

/* Progress callback: bytes done, total (0 = unknown). */
typedef void (*lg_store_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Opens path with the full GGUF reader (so a file we cannot load is refused) and reads
 * general.architecture/basename/size_label/file_type, <arch>.context_length, n_tensors. */
enum lg_status lg_store_gguf_facts(const char *path, struct lg_store_gguf_facts *f,
                                   struct lg_err *err);
/* Default model name: sanitized general.basename, tag from general.size_label (else
 * "latest"); without a basename, the file stem of path (a URL's last segment works too).
 * False when nothing usable remains. */
bool lg_store_default_name(const char *path, const struct lg_store_gguf_facts *f,
                           struct lg_store_name *out);

/* Checks the first 8 bytes: "GGUF" magic and version 2 or 3. LG_ERR_FORMAT/_VERSION/_IO. */
enum lg_status lg_store_check_gguf_header(const char *path, struct lg_err *err);

/* Adds a local file under name: hard link into tmp/ when on the same filesystem (then hash
 * by reading), else copy while hashing (progress called). Publishes blob then manifest.
 * m->gguf facts (may be zero) and m->name come from the caller; the rest is filled.
 * *linked (may be NULL) tells whether a hard link was used. */
enum lg_status lg_store_import(struct lg_store *s, const char *path,
                               struct lg_store_manifest *m, bool allow_link,
                               lg_store_progress_fn progress, void *user, bool *linked,
                               struct lg_err *err);

/* Called by pull after the download is complete and verified, before publishing, with the
 * downloaded file: fill m->gguf facts and (when the caller has none yet) m->name. An error
 * aborts the pull and deletes the file (e.g. not a loadable GGUF). */
typedef enum lg_status (*lg_store_inspect_fn)(void *user, const char *path,
                                              struct lg_store_manifest *m, struct lg_err *err);

struct lg_store_pull_opts {
    const char *url;           /* http:// or https:// only (redirects too) */
    const char *sha256;        /* expected hex (64) or NULL */
    long connect_timeout_s;    /* 0 -> 30 */
    long low_speed_time_s;     /* abort when under 1 byte/s for this long; 0 -> 60 */
    long max_redirects;        /* 0 -> 10 */
    uint64_t max_bytes;        /* 0 -> no cap; refuses bodies larger than this */
    lg_store_progress_fn progress;
    void *user;
    lg_store_inspect_fn inspect; /* may be NULL */
    void *inspect_user;
    /* Polled on the pulling thread while the transfer runs (libcurl's progress callback:
     * many times a second while bytes flow, about once a second while none do) and once
     * more before publishing. true stops the pull: LG_ERR_CANCELLED, nothing published, the
     * partial kept for a later resume when it can be resumed safely (as for an interrupted
     * transfer). NULL = never cancelled. */
    bool (*cancel)(void *user);
    void *cancel_user;
};

/* Downloads url into tmp/<random>.partial with a sidecar <x>.partial.json (URL, expected
 * length, ETag). An earlier partial of the same URL is resumed with Range + If-Range: a
 * changed ETag (server answers 200) restarts from zero, and without a strong ETag nothing is
 * resumed (two versions of a file must never be mixed). The sha256 is computed while
 * writing (the resumed prefix is re-read) and checked against o->sha256 (mismatch: partial
 * deleted, LG_ERR_FORMAT). The GGUF header is checked, inspect runs, then blob + manifest
 * are published and the sidecar removed. An interrupted transfer keeps partial + sidecar for
 * the next pull of the same URL. *resumed_from (may be NULL) gets the offset resumed from.
 * Errors: LG_ERR_NOT_FOUND (HTTP 404), LG_ERR_BUSY (the same URL is being pulled by another
 * process), LG_ERR_IO (connection refused, timeouts, HTTP errors, interrupted, disk full —
 * the message says which), LG_ERR_FORMAT (bad hash, not GGUF), LG_ERR_INVALID_ARG (URL),
 * LG_ERR_CANCELLED (o->cancel said so).
 * Blocking (runs until done, failed or cancelled): a server must call it off its I/O threads. Any
 * thread; concurrent pulls of the same URL in one store: the second gets LG_ERR_BUSY once
 * the first has received its first bytes. */
enum lg_status lg_store_pull(struct lg_store *s, const struct lg_store_pull_opts *o,
                             struct lg_store_manifest *m, uint64_t *resumed_from,
                             struct lg_err *err);

/* ---- progress bar on stderr (CLI helper) -------------------------------------------------- */

struct lg_progress {
    const char *label;
    double t_start, t_last;
    uint64_t last_done;
    bool tty;       /* draw only when stderr is a terminal, or LG_PROGRESS=1 */
    bool drawn;
};
void lg_progress_init(struct lg_progress *p, const char *label);
/* An lg_store_progress_fn; user is the struct lg_progress. Redraws at most 10 times/s. */
void lg_progress_cb(void *user, uint64_t done, uint64_t total);
/* Ends the line if a bar was drawn. */
void lg_progress_finish(struct lg_progress *p);

/* Human sizes like Ollama's list: "253 MB", "1.6 GB" (decimal units). */
void lg_store_format_size(uint64_t bytes, char *buf, size_t cap);
/* "2 minutes ago", "About an hour ago", "3 days ago"... */
void lg_store_format_age(int64_t then, int64_t now, char *buf, size_t cap);

#endif
