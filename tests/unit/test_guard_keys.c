/* test_guard_keys.c: API keys (secret format, hash-only storage, 0600 file, lookup of right /
 * wrong / truncated / revoked secrets, duplicate and bad names, model allow-list), the
 * constant-time compare, and the authentication choke point (missing header, wrong scheme,
 * wrong key, revoked key, scope of admin routes, anonymous mode with no keys). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard/guard.h"
#include "test.h"

static char home[256];

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t cap = 1 << 22, n;
    char *buf = malloc(cap);
    n = fread(buf, 1, cap, f);
    fclose(f);
    size_t m = strlen(needle);
    bool hit = false;
    for (size_t i = 0; i + m <= n && !hit; i++)
        hit = !memcmp(buf + i, needle, m);
    free(buf);
    return hit;
}

static bool db_contains(const char *needle)
{
    char p[300];
    bool hit = false;
    const char *suf[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/guard.db%s", home, suf[i]);
        hit = hit || file_contains(p, needle);
    }
    return hit;
}

static void test_ct_equal(void)
{
    uint8_t a[32], b[32];
    memset(a, 7, sizeof a);
    memcpy(b, a, sizeof b);
    CHECK(lg_ct_equal(a, b, 32));
    b[31] ^= 1;
    CHECK(!lg_ct_equal(a, b, 32));
    b[31] ^= 1;
    b[0] ^= 0x80;
    CHECK(!lg_ct_equal(a, b, 32));
    CHECK(lg_ct_equal(a, b, 0));
}

static void test_keys(void)
{
    struct lg_err err = {0};
    struct lg_keys *k = NULL;
    CHECK(lg_keys_open(home, &k, &err) == LG_OK);
    if (!k)
        return;
    char path[300];
    snprintf(path, sizeof path, "%s/guard.db", home);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ_INT(lg_keys_count_active(k), 0);

    struct lg_key_info ki;
    memset(&ki, 0, sizeof ki);
    snprintf(ki.name, sizeof ki.name, "alice");
    ki.scope = LG_SCOPE_GENERATE;
    ki.limits.rpm = 60;
    ki.limits.max_concurrent = 2;
    snprintf(ki.models, sizeof ki.models, "gemma3,gemma4:e2b");
    char s1[LG_KEY_SECRET_LEN + 1], s2[LG_KEY_SECRET_LEN + 1];
    CHECK(lg_keys_add(k, &ki, s1, &err) == LG_OK);
    CHECK_EQ_INT(strlen(s1), LG_KEY_SECRET_LEN);
    CHECK(!strncmp(s1, "lg-", 3));
    bool charset = true;
    for (size_t i = 3; s1[i]; i++)
        charset = charset && (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-_",
                                     s1[i]) != NULL);
    CHECK(charset);
    /* the same name again is refused; another name gets a different secret */
    CHECK(lg_keys_add(k, &ki, s2, &err) == LG_ERR_EXISTS);
    snprintf(ki.name, sizeof ki.name, "root");
    ki.scope = LG_SCOPE_ADMIN;
    ki.models[0] = '\0';
    CHECK(lg_keys_add(k, &ki, s2, &err) == LG_OK);
    CHECK(strcmp(s1, s2) != 0);
    CHECK_EQ_INT(lg_keys_count_active(k), 2);
    /* bad names */
    snprintf(ki.name, sizeof ki.name, "bad name");
    char s3[LG_KEY_SECRET_LEN + 1];
    CHECK(lg_keys_add(k, &ki, s3, &err) == LG_ERR_INVALID_ARG);
    ki.name[0] = '\0';
    CHECK(lg_keys_add(k, &ki, s3, &err) == LG_ERR_INVALID_ARG);

    /* only hashes on disk */
    CHECK(!db_contains(s1));
    CHECK(!db_contains(s1 + 3));
    CHECK(!db_contains(s2));

    struct lg_key_info got;
    CHECK(lg_keys_lookup(k, s1, strlen(s1), &got, &err) == LG_OK);
    CHECK_EQ_STR(got.name, "alice");
    CHECK(got.scope == LG_SCOPE_GENERATE);
    CHECK_EQ_INT(got.limits.rpm, 60);
    CHECK_EQ_INT(got.limits.max_concurrent, 2);
    CHECK_EQ_STR(got.models, "gemma3,gemma4:e2b");
    CHECK(lg_keys_lookup(k, s2, strlen(s2), &got, &err) == LG_OK);
    CHECK_EQ_STR(got.name, "root");
    CHECK(got.scope == LG_SCOPE_ADMIN);
    char wrong[LG_KEY_SECRET_LEN + 1];
    memcpy(wrong, s1, sizeof wrong);
    wrong[LG_KEY_SECRET_LEN - 1] = wrong[LG_KEY_SECRET_LEN - 1] == 'A' ? 'B' : 'A';
    CHECK(lg_keys_lookup(k, wrong, strlen(wrong), &got, &err) == LG_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, wrong) == NULL); /* the presented secret is never echoed */
    CHECK(lg_keys_lookup(k, s1, strlen(s1) - 1, &got, &err) == LG_ERR_NOT_FOUND);
    CHECK(lg_keys_lookup(k, "", 0, &got, &err) == LG_ERR_NOT_FOUND);

    /* list never carries secrets; revoke */
    struct lg_key_info *v = NULL;
    size_t n = 0;
    CHECK(lg_keys_list(k, &v, &n, &err) == LG_OK);
    CHECK_EQ_INT(n, 2);
    free(v);
    CHECK(lg_keys_revoke(k, "alice", &err) == LG_OK);
    CHECK(lg_keys_revoke(k, "alice", &err) == LG_ERR_NOT_FOUND);
    CHECK(lg_keys_revoke(k, "nobody", &err) == LG_ERR_NOT_FOUND);
    CHECK(lg_keys_lookup(k, s1, strlen(s1), &got, &err) == LG_ERR_NOT_FOUND);
    CHECK_EQ_INT(lg_keys_count_active(k), 1);
    CHECK(lg_keys_list(k, &v, &n, &err) == LG_OK);
    CHECK(n == 2 && v[0].revoked && !v[1].revoked);
    free(v);
    /* a revoked name can be reused with a fresh secret */
    snprintf(ki.name, sizeof ki.name, "alice");
    ki.scope = LG_SCOPE_GENERATE;
    CHECK(lg_keys_add(k, &ki, s3, &err) == LG_OK);
    CHECK(lg_keys_lookup(k, s1, strlen(s1), &got, &err) == LG_ERR_NOT_FOUND);
    CHECK(lg_keys_lookup(k, s3, strlen(s3), &got, &err) == LG_OK);
    lg_keys_close(k);

    /* reopen: the salt persists, so old secrets still verify */
    CHECK(lg_keys_open(home, &k, &err) == LG_OK);
    CHECK(k && lg_keys_lookup(k, s2, strlen(s2), &got, &err) == LG_OK);
    lg_keys_close(k);

    CHECK(lg_keys_model_allowed("", "anything"));
    CHECK(lg_keys_model_allowed("gemma3,gemma4:e2b", "gemma3"));
    CHECK(lg_keys_model_allowed("gemma3,gemma4:e2b", "gemma3:270m"));
    CHECK(lg_keys_model_allowed("gemma3,gemma4:e2b", "gemma4:e2b"));
    CHECK(!lg_keys_model_allowed("gemma3,gemma4:e2b", "gemma4:e4b"));
    CHECK(!lg_keys_model_allowed("gemma3,gemma4:e2b", "gemma"));
    CHECK(!lg_keys_model_allowed("gemma3", NULL));
}

static void test_auth(void)
{
    char home2[300];
    snprintf(home2, sizeof home2, "%s/h2", home);
    struct lg_guard_config cfg = {.home = home2};
    struct lg_guard *g = NULL;
    struct lg_err err = {0};
    CHECK(lg_guard_open(&cfg, &g, &err) == LG_OK);
    if (!g)
        return;
    struct lg_identity id;
    struct lg_guard_reply r;
    /* no keys: open (anonymous admin) */
    CHECK_EQ_INT(lg_guard_n_keys(g), 0);
    CHECK(lg_guard_authenticate(g, NULL, "/api/pull", &id, &r) == LG_OK);
    CHECK(id.anonymous && id.key.scope == LG_SCOPE_ADMIN);

    struct lg_keys *k = NULL;
    CHECK(lg_keys_open(home2, &k, &err) == LG_OK);
    struct lg_key_info ki;
    memset(&ki, 0, sizeof ki);
    snprintf(ki.name, sizeof ki.name, "gen");
    ki.scope = LG_SCOPE_GENERATE;
    ki.limits.rpm = 2;
    snprintf(ki.models, sizeof ki.models, "gemma3");
    char sg[LG_KEY_SECRET_LEN + 1], sa[LG_KEY_SECRET_LEN + 1], hdr[128];
    CHECK(lg_keys_add(k, &ki, sg, &err) == LG_OK);
    snprintf(ki.name, sizeof ki.name, "adm");
    ki.scope = LG_SCOPE_ADMIN;
    ki.limits.rpm = 0;
    ki.models[0] = '\0';
    CHECK(lg_keys_add(k, &ki, sa, &err) == LG_OK);
    CHECK_EQ_INT(lg_guard_n_keys(g), 2); /* seen without reopening */

    CHECK(lg_guard_authenticate(g, NULL, "/v1/chat/completions", &id, &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 401);
    CHECK_EQ_STR(r.code, "invalid_api_key");
    CHECK(lg_guard_authenticate(g, "", "/v1/chat/completions", &id, &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 401);
    snprintf(hdr, sizeof hdr, "Basic %s", sg);
    CHECK(lg_guard_authenticate(g, hdr, "/v1/chat/completions", &id, &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 401);
    CHECK(lg_guard_authenticate(g, "Bearer lg-wrongwrongwrong", "/v1/models", &id, &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 401);
    CHECK(strstr(r.message, "wrongwrong") == NULL);
    CHECK(!id.anonymous && id.key.name[0] == '\0');
    snprintf(hdr, sizeof hdr, "Bearer %s", sg);
    CHECK(lg_guard_authenticate(g, hdr, "/v1/chat/completions", &id, &r) == LG_OK);
    CHECK_EQ_STR(id.key.name, "gen");
    snprintf(hdr, sizeof hdr, "bearer   %s ", sg);
    CHECK(lg_guard_authenticate(g, hdr, "/api/chat", &id, &r) == LG_OK);
    /* scope: generate ⊂ admin */
    CHECK(lg_guard_authenticate(g, hdr, "/api/pull", &id, &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 403);
    CHECK(lg_guard_authenticate(g, hdr, "/api/delete", &id, &r) != LG_OK);
    CHECK(lg_guard_authenticate(g, hdr, "/v1/keys/x", &id, &r) != LG_OK);
    CHECK(lg_guard_authenticate(g, hdr, "/api/pullx", &id, &r) == LG_OK);
    snprintf(hdr, sizeof hdr, "Bearer %s", sa);
    CHECK(lg_guard_authenticate(g, hdr, "/api/pull", &id, &r) == LG_OK);
    CHECK(lg_guard_authenticate(g, hdr, "/v1/chat/completions", &id, &r) == LG_OK);
    CHECK(lg_guard_route_scope("/api/pull") == LG_SCOPE_ADMIN);
    CHECK(lg_guard_route_scope("/api/tags") == LG_SCOPE_GENERATE);

    /* admission: model allow-list then rate limit with Retry-After */
    snprintf(hdr, sizeof hdr, "Bearer %s", sg);
    CHECK(lg_guard_authenticate(g, hdr, "/v1/chat/completions", &id, &r) == LG_OK);
    CHECK(lg_guard_admit(g, &id, "gemma4", &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 403);
    CHECK(lg_guard_admit(g, &id, "gemma3", &r) == LG_OK);
    lg_guard_finish(g, &id, 10);
    lg_guard_finish(g, &id, 10); /* second call is a no-op */
    CHECK(lg_guard_admit(g, &id, "gemma3", &r) == LG_OK);
    lg_guard_finish(g, &id, 10);
    CHECK(lg_guard_admit(g, &id, "gemma3", &r) == LG_ERR_BUSY);
    CHECK_EQ_INT(r.http_status, 429);
    CHECK(r.retry_after_s >= 29 && r.retry_after_s <= 30);
    CHECK_EQ_STR(r.code, "rate_limit_exceeded");

    /* revoke takes effect at once */
    CHECK(lg_keys_revoke(k, "gen", &err) == LG_OK);
    CHECK(lg_guard_authenticate(g, hdr, "/v1/chat/completions", &id, &r) != LG_OK);
    CHECK_EQ_INT(r.http_status, 401);
    lg_keys_close(k);
    lg_guard_close(g);
}

int main(void)
{
    snprintf(home, sizeof home, "/tmp/lg_test_guard_keys_XXXXXX");
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        return 1;
    }
    test_ct_equal();
    test_keys();
    test_auth();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    return lg_test_done("test_guard_keys");
}
