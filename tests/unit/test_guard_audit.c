/* test_guard_audit.c: the hash-chained audit log — append and verify, tamper detection by
 * editing the SQLite rows directly (edit a field, delete a middle row, delete the newest row,
 * swap two rows, insert a forged row), export as JSON lines (--since), the privacy canary
 * (request text absent from every guard.db file without audit_content, present with it), and
 * crash safety: a child appends in a loop and reports each acknowledged seq through a pipe;
 * the parent kills it with SIGKILL at random times; afterwards verify passes and every
 * acknowledged record is present (hardening G16). */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guard/guard.h"
#include "test.h"

static char root[256];

static void mkhome(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", root, name);
}

static void append_n(struct lg_audit *a, int n, bool content)
{
    for (int i = 0; i < n; i++) {
        char route[64];
        snprintf(route, sizeof route, "POST /v1/chat/completions#%d", i);
        struct lg_audit_rec r = {
            .t_ms = 1700000000000LL + (int64_t)i * 1000,
            .key = i % 2 ? "alice" : "",
            .route = route,
            .model = "gemma3",
            .status = 200,
            .n_prompt = 10 + i,
            .n_completion = 20 + i,
            .latency_ms = 5,
            .finish = "stop",
            .decisions = "input:allow",
            .client = "127.0.0.1",
            .security = i % 5 == 0,
            .prompt_text = content ? "hello" : NULL,
        };
        struct lg_err err = {0};
        int64_t seq = 0;
        CHECK(lg_audit_append(a, &r, &seq, &err) == LG_OK);
        CHECK_EQ_INT(seq, i + 1);
    }
}

static int64_t verify(const char *home, int64_t *n)
{
    struct lg_audit *a = NULL;
    struct lg_err err = {0};
    int64_t bad = -1;
    char why[256];
    if (lg_audit_open(home, false, &a, &err) == LG_OK)
        lg_audit_verify(a, n, &bad, why, sizeof why, &err);
    lg_audit_close(a);
    return bad;
}

static void sql(const char *home, const char *stmt)
{
    char path[400];
    snprintf(path, sizeof path, "%s/guard.db", home);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    char *msg = NULL;
    CHECK_MSG(sqlite3_exec(db, stmt, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", stmt,
              msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
}

static void fresh(const char *name, char *home, size_t cap, int n)
{
    mkhome(home, cap, name);
    struct lg_audit *a = NULL;
    struct lg_err err = {0};
    CHECK(lg_audit_open(home, false, &a, &err) == LG_OK);
    if (a)
        append_n(a, n, false);
    lg_audit_close(a);
}

static void test_chain(void)
{
    char h[300];
    int64_t n = 0;
    fresh("clean", h, sizeof h, 30);
    CHECK_EQ_INT(verify(h, &n), 0);
    CHECK_EQ_INT(n, 30);

    fresh("edit", h, sizeof h, 30);
    sql(h, "UPDATE audit SET n_prompt = n_prompt + 1 WHERE seq = 17");
    CHECK_EQ_INT(verify(h, &n), 17);

    fresh("edit_key", h, sizeof h, 30);
    sql(h, "UPDATE audit SET key = 'mallory' WHERE seq = 4");
    CHECK_EQ_INT(verify(h, &n), 4);

    fresh("null_text", h, sizeof h, 30);
    sql(h, "UPDATE audit SET prompt_text = '' WHERE seq = 9"); /* NULL → "" is an edit too */
    CHECK_EQ_INT(verify(h, &n), 9);

    fresh("delete_mid", h, sizeof h, 30);
    sql(h, "DELETE FROM audit WHERE seq = 10");
    CHECK_EQ_INT(verify(h, &n), 10);
    CHECK_EQ_INT(n, 29);

    fresh("delete_tail", h, sizeof h, 30);
    sql(h, "DELETE FROM audit WHERE seq >= 28");
    CHECK_EQ_INT(verify(h, &n), 28);

    fresh("swap", h, sizeof h, 30);
    sql(h, "UPDATE audit SET seq = -5 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6;"
           "UPDATE audit SET seq = 6 WHERE seq = -5");
    CHECK_EQ_INT(verify(h, &n), 5);

    fresh("insert", h, sizeof h, 30);
    sql(h, "INSERT INTO audit SELECT 31,t_ms,key,route,model,status,n_prompt,n_completion,"
           "latency_ms,finish,decisions,client,prompt_text,answer_text,hash FROM audit "
           "WHERE seq = 30");
    CHECK_EQ_INT(verify(h, &n), 31);

    /* appends continue the chain after a reopen */
    fresh("reopen", h, sizeof h, 5);
    struct lg_audit *a = NULL;
    struct lg_err err = {0};
    CHECK(lg_audit_open(h, false, &a, &err) == LG_OK);
    struct lg_audit_rec r = {.route = "GET /v1/models", .status = 401, .security = true};
    int64_t seq = 0;
    CHECK(a && lg_audit_append(a, &r, &seq, &err) == LG_OK);
    CHECK_EQ_INT(seq, 6);
    lg_audit_close(a);
    CHECK_EQ_INT(verify(h, &n), 0);
    CHECK_EQ_INT(n, 6);
}

static void test_export(void)
{
    char h[300];
    fresh("export", h, sizeof h, 10);
    struct lg_audit *a = NULL;
    struct lg_err err = {0};
    CHECK(lg_audit_open(h, false, &a, &err) == LG_OK);
    if (!a)
        return;
    FILE *f = tmpfile();
    CHECK(lg_audit_export(a, 1700000000000LL + 4000, f, &err) == LG_OK);
    rewind(f);
    char line[4096];
    int n = 0;
    int64_t first_seq = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        CHECK_MSG(o != NULL, "bad JSON line: %s", line);
        if (!o)
            continue;
        if (n == 0)
            first_seq = json_integer_value(json_object_get(o, "seq"));
        CHECK(json_is_string(json_object_get(o, "hash")) &&
              strlen(json_string_value(json_object_get(o, "hash"))) == 64);
        CHECK(json_is_integer(json_object_get(o, "prompt_tokens")));
        CHECK(json_object_get(o, "prompt") == NULL);
        json_decref(o);
        n++;
    }
    fclose(f);
    CHECK_EQ_INT(n, 6); /* records 5..10 */
    CHECK_EQ_INT(first_seq, 5);
    lg_audit_close(a);
}

static bool db_contains(const char *home, const char *needle)
{
    const char *suf[] = {"", "-wal", "-shm", "-journal"};
    bool hit = false;
    for (int i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/guard.db%s", home, suf[i]);
        FILE *f = fopen(p, "rb");
        if (!f)
            continue;
        char *buf = malloc(1 << 24);
        size_t n = fread(buf, 1, 1 << 24, f);
        fclose(f);
        size_t m = strlen(needle);
        for (size_t j = 0; j + m <= n && !hit; j++)
            hit = !memcmp(buf + j, needle, m);
        free(buf);
    }
    return hit;
}

static void test_canary(void)
{
    const char *canary = "CANARY-7f3a9c1e-do-not-log";
    char h[2][300];
    for (int content = 0; content < 2; content++) {
        mkhome(h[content], sizeof h[content], content ? "canary_on" : "canary_off");
        struct lg_guard_config cfg = {.home = h[content], .audit_content = content == 1};
        struct lg_guard *g = NULL;
        struct lg_err err = {0};
        CHECK(lg_guard_open(&cfg, &g, &err) == LG_OK);
        if (!g)
            continue;
        /* the whole request path with the canary as the prompt */
        struct lg_identity id;
        struct lg_guard_reply rep;
        struct lg_decision d;
        char prompt[128];
        snprintf(prompt, sizeof prompt, "please repeat %s", canary);
        CHECK(lg_guard_authenticate(g, NULL, "/v1/chat/completions", &id, &rep) == LG_OK);
        CHECK(lg_guard_admit(g, &id, "gemma3", &rep) == LG_OK);
        CHECK(lg_guard_check_input(g, &id, prompt, strlen(prompt), &d, &rep) == LG_OK);
        char *red = NULL;
        size_t rn = 0;
        CHECK(lg_policy_redact(lg_guard_policy(g), prompt, strlen(prompt), &red, &rn, &d, &err) ==
              LG_OK);
        lg_guard_finish(g, &id, 42);
        struct lg_audit_rec r = {
            .key = id.key.name,
            .route = "POST /v1/chat/completions",
            .model = "gemma3",
            .status = 200,
            .n_prompt = 30,
            .n_completion = 12,
            .finish = "stop",
            .decisions = "input:allow",
            .client = "127.0.0.1",
            .prompt_text = prompt,
            .answer_text = red,
        };
        CHECK(lg_guard_audit(g, &r, &err) == LG_OK);
        free(red);
        lg_guard_close(g);
    }
    CHECK(!db_contains(h[0], canary));
    CHECK(!db_contains(h[0], "CANARY"));
    CHECK(db_contains(h[1], canary)); /* the check can see it when it is there */
}

static void test_kill9(void)
{
    char h[300];
    mkhome(h, sizeof h, "kill9");
    srand((unsigned)time(NULL));
    int64_t max_acked = 0;
    int rounds = 20;
    for (int round = 0; round < rounds; round++) {
        int fds[2];
        if (pipe(fds) != 0)
            break;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            struct lg_audit *a = NULL;
            struct lg_err err = {0};
            if (lg_audit_open(h, false, &a, &err) != LG_OK)
                _exit(3);
            for (int i = 0; i < 1000000; i++) {
                struct lg_audit_rec r = {.route = "POST /api/chat",
                                         .model = "m",
                                         .key = "k",
                                         .status = i % 3 ? 200 : 429,
                                         .n_prompt = i,
                                         .security = i % 3 == 0,
                                         .finish = "stop"};
                int64_t seq;
                if (lg_audit_append(a, &r, &seq, &err) != LG_OK)
                    _exit(4);
                /* acknowledged: the append returned */
                if (write(fds[1], &seq, sizeof seq) != (ssize_t)sizeof seq)
                    _exit(5);
            }
            _exit(0);
        }
        close(fds[1]);
        usleep(20000 + (useconds_t)(rand() % 150000));
        kill(pid, SIGKILL);
        int64_t seq;
        while (read(fds[0], &seq, sizeof seq) == (ssize_t)sizeof seq)
            if (seq > max_acked)
                max_acked = seq;
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status));
        int64_t n = 0;
        CHECK_EQ_INT(verify(h, &n), 0);
        CHECK_MSG(n >= max_acked, "round %d: %lld records, %lld acknowledged", round, (long long)n,
                  (long long)max_acked);
    }
    CHECK(max_acked > rounds); /* the loop did append */
    fprintf(stderr, "test_guard_audit: kill -9 x%d, %lld records acknowledged, chain intact\n",
            rounds, (long long)max_acked);
}

/* the server appends from several threads through one struct lg_guard */
static struct lg_guard *g_shared;
static void *append_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < 50; i++) {
        struct lg_audit_rec r = {.route = "POST /api/generate",
                                 .model = "m",
                                 .n_prompt = t * 1000 + i,
                                 .status = 200,
                                 .security = i % 10 == 0};
        struct lg_err err = {0};
        if (lg_guard_audit(g_shared, &r, &err) != LG_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void)
{
    char h[300];
    mkhome(h, sizeof h, "threads");
    struct lg_guard_config cfg = {.home = h};
    struct lg_err err = {0};
    CHECK(lg_guard_open(&cfg, &g_shared, &err) == LG_OK);
    if (!g_shared)
        return;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, append_thread, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        pthread_join(th[i], &ret);
        CHECK(ret == NULL);
    }
    lg_guard_close(g_shared);
    int64_t n = 0;
    CHECK_EQ_INT(verify(h, &n), 0);
    CHECK_EQ_INT(n, 200);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/lg_test_guard_audit_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_chain();
    test_export();
    test_canary();
    test_threads();
    test_kill9();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
    return lg_test_done("test_guard_audit");
}
