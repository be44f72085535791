/* guard.h: local guardrails — API keys, per-key rate limits, the hash-chained audit log,
 * and the policy filters (deny patterns, PII redaction, tool allow-lists).
 *
 * Four parts, each usable alone (the CLI uses them alone), plus a facade (struct lg_guard)
 * the server holds for its whole life:
 *   keys.c    lg_keys_*    keys in SQLite $LOCALGEMMA_HOME/guard.db (only salted hashes)
 *   limits.c  lg_limits_*  token buckets (requests/min, tokens/min, tokens/day) + streams
 *   audit.c   lg_audit_*   append-only, hash-chained audit table in the same guard.db
 *   policy.c  lg_policy_*  policy file (JSON), PCRE2 deny/redact patterns, tool allow-lists
 *   guard.c   lg_guard_*   the calls the server makes on each request (see "Wiring" below)
 *
 * Privacy rule (hardening G20): nothing in src/guard writes request or answer text anywhere,
 * except the audit record's content columns when audit_content is on. Secrets are never
 * stored; Authorization header values are never logged or copied into errors.
 *
 * Thread-safety: struct lg_guard, lg_keys, lg_limits and lg_audit are "any thread" (internal
 * mutexes). struct lg_policy is immutable after load ("any thread"); a struct lg_redactor
 * belongs to one request (one thread at a time).
 *
 * ---- Wiring into the server (one request) ----------------------------------------------
 *   start-up:  lg_guard_open(&cfg) once; refuse a non-loopback bind when
 *              lg_guard_n_keys(g) == 0 (message: "binding to ADDR needs an API key: run
 *              `localgemma keys add NAME`").
 *   1. after the Host/CORS checks, before parsing the body:
 *        lg_guard_authenticate(g, authorization_header_or_NULL, url_path, &id, &d)
 *        → d.http_status 401 (missing/wrong/revoked key; add "WWW-Authenticate: Bearer")
 *          or 403 (scope) → reply {"error":{"message":d.message,"type":…,"code":d.code}},
 *          audit it (step 6, finish "rejected", security=true), stop.
 *   2. after parsing the body (model name known):
 *        lg_guard_admit(g, &id, model, &d)
 *        → 403 (model not in the key's --models) or 429 with "Retry-After: d.retry_after_s".
 *        On LG_OK the request holds one concurrent-stream slot: step 5 must run exactly once.
 *   3. before rendering (text the user sent: the message contents / prompt / system):
 *        lg_guard_check_input(g, &id, text, len, &dec, &d) → refused: reply 400 with
 *        d.message (the policy's refusal message), code "content_policy"; audit with
 *        decisions "input:deny:<dec.rule>"; step 5.
 *      For each tool the request declares / the model calls:
 *        lg_guard_tool_allowed(g, &id, model, tool_name) → false: 403 (declared) or drop the
 *        call and finish "content_filter" (called).
 *   4. while streaming: lg_redactor_create(lg_guard_policy(g)) per request; feed every detokenized
 *      piece to lg_redactor_feed(), send only what it emits; lg_redactor_finish() at the end.
 *      If lg_redactor_denied(): stop generation, finish_reason "content_filter".
 *   5. at the end (success, error, cancel): lg_guard_finish(g, &id, prompt_tokens +
 *      completion_tokens) — releases the stream slot and charges tokens/min and tokens/day.
 *   6. lg_guard_audit(g, &rec) with time, key, route, model, counts, latency, finish reason,
 *      decisions, client address (and prompt/answer text only if the server passes it; the
 *      audit drops it unless audit_content is on).
 */
#ifndef LG_GUARD_H
#define LG_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "localgemma.h"

enum {
    LG_KEY_NAME_MAX = 64,    /* bytes, [A-Za-z0-9._-] */
    LG_KEY_SECRET_LEN = 46,  /* "lg-" + 43 base64url chars (32 random bytes) */
    LG_KEY_MODELS_MAX = 512, /* comma-separated model allow-list, "" = all */
    LG_GUARD_MSG_MAX = 256,
    LG_GUARD_RULE_MAX = 64
};

/* generate ⊂ admin: admin keys may do everything generate keys may. */
enum lg_scope { LG_SCOPE_GENERATE = 1, LG_SCOPE_ADMIN = 2 };

/* Admin-only routes (method ignored): model management and key management. */
#define LG_GUARD_ADMIN_ROUTES                                                                      \
    {                                                                                              \
        "/api/pull", "/api/delete", "/api/create", "/api/copy", "/api/push", "/api/blobs",         \
            "/v1/keys", "/api/keys", NULL                                                          \
    }

/* The route's required scope: ADMIN for the list above (exact or followed by '/'). */
enum lg_scope lg_guard_route_scope(const char *path);

/* ---- keys.c ---------------------------------------------------------------------------- */

struct lg_key_limits {
    int64_t rpm;            /* requests per minute, 0 = unlimited */
    int64_t tpm;            /* tokens (prompt + completion) per minute, 0 = unlimited */
    int64_t tpd;            /* tokens per day, 0 = unlimited */
    int64_t max_concurrent; /* concurrent requests/streams, 0 = unlimited */
};

struct lg_key_info {
    char name[LG_KEY_NAME_MAX + 1];
    enum lg_scope scope;
    struct lg_key_limits limits;
    char models[LG_KEY_MODELS_MAX + 1]; /* "" = every model */
    int64_t created;                    /* unix seconds */
    bool revoked;
};

struct lg_keys;

/* The localgemma home ($LOCALGEMMA_HOME, else ~/.localgemma) into out (created 0700 when
 * create is set). */
enum lg_status lg_guard_home(char *out, size_t cap, bool create, struct lg_err *err);

/* Opens (creating, mode 0600) HOME/guard.db; home NULL = lg_guard_home(). */
enum lg_status lg_keys_open(const char *home, struct lg_keys **out, struct lg_err *err);
void lg_keys_close(struct lg_keys *k);

/* Adds a key; writes the secret (LG_KEY_SECRET_LEN chars + NUL) — it is shown once and
 * never stored. LG_ERR_EXISTS if an active key has that name; LG_ERR_INVALID_ARG for a bad
 * name or models list. */
enum lg_status lg_keys_add(struct lg_keys *k, const struct lg_key_info *info,
                           char secret[LG_KEY_SECRET_LEN + 1], struct lg_err *err);
/* Marks the active key NAME revoked (kept for the audit trail). LG_ERR_NOT_FOUND if none. */
enum lg_status lg_keys_revoke(struct lg_keys *k, const char *name, struct lg_err *err);
/* All keys (active and revoked), oldest first; *out is malloc'd, free() it. */
enum lg_status lg_keys_list(struct lg_keys *k, struct lg_key_info **out, size_t *n,
                            struct lg_err *err);
/* Number of active keys (-1 on error). */
int64_t lg_keys_count_active(struct lg_keys *k);
/* Looks up a presented secret: hashes it and compares against every active key's hash in
 * constant time (no early exit, no SQL lookup by secret). LG_OK + *info, or
 * LG_ERR_NOT_FOUND (wrong or revoked). Never copies the secret into err. */
enum lg_status lg_keys_lookup(struct lg_keys *k, const char *secret, size_t len,
                              struct lg_key_info *info, struct lg_err *err);
/* true when the comma list `models` is empty or contains `model` (exact; "name" also matches
 * "name:tag"). */
bool lg_keys_model_allowed(const char *models, const char *model);

/* Constant-time equality of two n-byte buffers (time depends only on n). */
bool lg_ct_equal(const void *a, const void *b, size_t n);

/* Internal (keys.c): opens HOME/guard.db (0600, WAL, schema created). */
struct sqlite3;
enum lg_status lg_guard_db_open(const char *home, struct sqlite3 **out, struct lg_err *err);

/* ---- limits.c -------------------------------------------------------------------------- */

struct lg_limits;
/* now_fn returns seconds on any monotonic clock; NULL = CLOCK_MONOTONIC (tests inject). */
struct lg_limits *lg_limits_create(double (*now_fn)(void *), void *now_ctx);
void lg_limits_destroy(struct lg_limits *l);

enum lg_limit_verdict {
    LG_LIMIT_OK = 0,
    LG_LIMIT_RPM,       /* requests/min exhausted */
    LG_LIMIT_TPM,       /* tokens/min in debt */
    LG_LIMIT_TPD,       /* tokens/day in debt */
    LG_LIMIT_CONCURRENT /* max_concurrent streams already running */
};

/* Admission for key `name`: takes one request token and one stream slot, or refuses with
 * *retry_after_s (whole seconds, ≥ 1) and takes nothing. Token buckets refill continuously
 * (rate = limit/period, capacity = limit); tokens are charged at lg_limits_release and may
 * drive a bucket negative, which then refuses until it refills above 0. Any thread. */
enum lg_limit_verdict lg_limits_admit(struct lg_limits *l, const char *name,
                                      const struct lg_key_limits *lim, int64_t *retry_after_s);
/* Releases the stream slot taken by a successful admit and charges n_tokens. */
void lg_limits_release(struct lg_limits *l, const char *name, const struct lg_key_limits *lim,
                       int64_t n_tokens);
const char *lg_limit_verdict_name(enum lg_limit_verdict v);

/* ---- audit.c --------------------------------------------------------------------------- */

struct lg_audit_rec {
    int64_t t_ms;      /* unix ms; 0 = now */
    const char *key;   /* key name or "" (anonymous) */
    const char *route; /* "POST /v1/chat/completions" */
    const char *model;
    int status; /* HTTP status sent */
    int64_t n_prompt, n_completion;
    int64_t latency_ms;
    const char *finish;      /* stop|length|tool_calls|content_filter|cancelled|rejected… */
    const char *decisions;   /* e.g. "input:allow;redact:email=2" (no request text) */
    const char *client;      /* client address */
    bool security;           /* 401/403/429/policy: fsync before returning */
    const char *prompt_text; /* stored only when audit_content is on */
    const char *answer_text; /* likewise */
};

struct lg_audit;
/* Opens the audit table in HOME/guard.db (WAL). content: keep prompt/answer text. */
enum lg_status lg_audit_open(const char *home, bool content, struct lg_audit **out,
                             struct lg_err *err);
void lg_audit_close(struct lg_audit *a);
/* Appends one record in its own transaction; when this returns LG_OK the record is committed
 * (and fsynced when rec->security). *seq (may be NULL) gets its sequence number. */
enum lg_status lg_audit_append(struct lg_audit *a, const struct lg_audit_rec *rec, int64_t *seq,
                               struct lg_err *err);
/* Checks the chain: *n_rows records; *first_bad = sequence number of the first bad record
 * (edited, deleted, inserted, reordered), or 0 when all are good. LG_OK even when bad. */
enum lg_status lg_audit_verify(struct lg_audit *a, int64_t *n_rows, int64_t *first_bad, char *why,
                               size_t why_cap, struct lg_err *err);
/* Writes records with time ≥ since_ms as JSON lines. */
enum lg_status lg_audit_export(struct lg_audit *a, int64_t since_ms, FILE *f, struct lg_err *err);

/* ---- policy.c -------------------------------------------------------------------------- */

struct lg_policy;

/* Parses a policy (JSON; format in src/guard/POLICY.md). Errors name the field, and for a
 * bad pattern its id and the PCRE2 message and offset. */
enum lg_status lg_policy_parse(const char *buf, size_t n, struct lg_policy **out,
                               struct lg_err *err);
enum lg_status lg_policy_load(const char *path, struct lg_policy **out, struct lg_err *err);
/* The built-in policy: PII redaction of email, phone, card, iban; no deny rules. */
enum lg_status lg_policy_default(struct lg_policy **out, struct lg_err *err);
void lg_policy_free(struct lg_policy *p);

struct lg_decision {
    bool denied;
    char rule[LG_GUARD_RULE_MAX];   /* id of the rule that decided ("" when allowed) */
    char message[LG_GUARD_MSG_MAX]; /* refusal message / reason (never request text) */
};

/* Input check: deny patterns over text. LG_OK with d->denied set or not; a pattern that hits
 * its match limit denies (fail closed, rule "<id>:match-limit"). */
enum lg_status lg_policy_check_input(const struct lg_policy *p, const char *text, size_t n,
                                     struct lg_decision *d, struct lg_err *err);
/* Tool allow-list: the tool must pass both the model's list and the key's list (an entry
 * "*" allows all); a model/key without a list gets tools.default ("allow" unless set). */
bool lg_policy_tool_allowed(const struct lg_policy *p, const char *model, const char *key,
                            const char *tool);
const char *lg_policy_refusal(const struct lg_policy *p);
/* The streaming hold-back bound in bytes: max over output patterns of (max_len + lookaround
 * margin). */
size_t lg_policy_holdback(const struct lg_policy *p);

/* Streaming output filter. feed() appends a piece and returns (in *out, valid until the next
 * call) the text that is now final: redactions applied, cut on UTF-8 boundaries; text is
 * held back only from where a rule could still start a match that depends on what follows
 * (PCRE2 partial matching: usually the last word), never more than holdback bytes. finish() flushes the rest. Whole-text redaction is feed(all)
 * + finish(), and any split of the same text gives the same output (tested). When an output
 * deny pattern matches, denied() turns true and nothing more is emitted. */
struct lg_redactor;
struct lg_redactor *lg_redactor_create(const struct lg_policy *p);
void lg_redactor_destroy(struct lg_redactor *r);
enum lg_status lg_redactor_feed(struct lg_redactor *r, const char *piece, size_t n,
                                const char **out, size_t *out_n, struct lg_err *err);
enum lg_status lg_redactor_finish(struct lg_redactor *r, const char **out, size_t *out_n,
                                  struct lg_err *err);
bool lg_redactor_denied(const struct lg_redactor *r, struct lg_decision *d);
/* Emits everything held back, like finish(), but the redactor stays usable: later pieces
 * start a new segment (no match spans the flush point). The server flushes when the output
 * channel changes (reasoning → content → tool call) so the order of events is kept. */
enum lg_status lg_redactor_flush(struct lg_redactor *r, const char **out, size_t *out_n,
                                 struct lg_err *err);
/* Redactions so far, all rules together. */
int64_t lg_redactor_count(const struct lg_redactor *r);
/* Redactions so far per rule, as "email=2,card=1" ("" when none). */
void lg_redactor_summary(const struct lg_redactor *r, char *out, size_t cap);

/* Whole text: *out is malloc'd (free it). */
enum lg_status lg_policy_redact(const struct lg_policy *p, const char *text, size_t n, char **out,
                                size_t *out_n, struct lg_decision *d, struct lg_err *err);

/* Checksums used by the built-in patterns (exposed for tests): digits of s, separators
 * ' ' and '-' skipped. */
bool lg_luhn_ok(const char *s, size_t n);
bool lg_iban_ok(const char *s, size_t n);

/* ---- guard.c: the facade the server holds ---------------------------------------------- */

struct lg_guard_config {
    const char *home;        /* NULL = $LOCALGEMMA_HOME or ~/.localgemma */
    const char *policy_path; /* NULL = built-in policy (PII redaction only) */
    bool audit_content;      /* --audit-content */
    bool no_redact;          /* disable built-in redaction when no policy file is given */
};

struct lg_identity {
    struct lg_key_info key; /* name "" + admin scope + no limits when anonymous */
    bool anonymous;         /* the store has no active key: loopback-only open mode */
    bool admitted;          /* set by lg_guard_admit, cleared by lg_guard_finish */
};

struct lg_guard_reply {
    int http_status;       /* 401, 403, 429, 400 */
    int64_t retry_after_s; /* for 429 */
    char message[LG_GUARD_MSG_MAX];
    char code[32]; /* OpenAI error code: invalid_api_key, insufficient_scope,
                      rate_limit_exceeded, model_not_allowed, content_policy */
};

struct lg_guard;
enum lg_status lg_guard_open(const struct lg_guard_config *cfg, struct lg_guard **out,
                             struct lg_err *err);
void lg_guard_close(struct lg_guard *g);
int64_t lg_guard_n_keys(struct lg_guard *g);
const struct lg_policy *lg_guard_policy(const struct lg_guard *g);

/* Authorization: "Bearer <secret>" (scheme case-insensitive). LG_OK → *id filled;
 * otherwise LG_ERR_INVALID_ARG and *r (401 or 403). With no active key in the store every
 * request is anonymous admin. */
enum lg_status lg_guard_authenticate(struct lg_guard *g, const char *authorization,
                                     const char *path, struct lg_identity *id,
                                     struct lg_guard_reply *r);
/* Model allow-list (403) and rate limits (429 + retry_after_s); LG_ERR_BUSY on refusal. */
enum lg_status lg_guard_admit(struct lg_guard *g, struct lg_identity *id, const char *model,
                              struct lg_guard_reply *r);
/* Input policy; LG_ERR_INVALID_ARG + r (400, content_policy) when denied; d gets the rule. */
enum lg_status lg_guard_check_input(struct lg_guard *g, const struct lg_identity *id,
                                    const char *text, size_t n, struct lg_decision *d,
                                    struct lg_guard_reply *r);
bool lg_guard_tool_allowed(struct lg_guard *g, const struct lg_identity *id, const char *model,
                           const char *tool);
/* End of an admitted request: release the slot, charge the tokens. Safe to call twice. */
void lg_guard_finish(struct lg_guard *g, struct lg_identity *id, int64_t n_tokens);
enum lg_status lg_guard_audit(struct lg_guard *g, const struct lg_audit_rec *rec,
                              struct lg_err *err);

#endif
