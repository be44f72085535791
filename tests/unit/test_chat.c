/* test_chat.c: prompt rendering against the jinja2 golden files (tests/golden/chat, made by
 * tools/make-chat-golden.py), byte for byte, plus the Python value-formatting helpers and the
 * flavour selection. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "test.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n > 0 ? n : 0] = 0;
        if (len)
            *len = n > 0 ? (size_t)n : 0;
    }
    return buf;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int n_golden_match, n_golden_err;

static void first_diff(const char *want, size_t wl, const char *got, size_t gl)
{
    size_t i = 0;
    while (i < wl && i < gl && want[i] == got[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  first difference at byte %zu\n  want: %.*s\n  got:  %.*s\n", i,
            (int)((wl - from) < 100 ? wl - from : 100), want + from,
            (int)((gl - from) < 100 ? gl - from : 100), got + from);
}

static void run_case(const char *dir, const char *name)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/cases/%s", dir, name);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    CHECK_MSG(c != NULL, "%s: %s", path, je.text);
    if (!c)
        return;
    const json_t *o = json_object_get(c, "options");
    char base[512];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - 5), name);
    static const enum lg_chat_flavour fl[] = {LG_CHAT_GEMMA4_SMALL, LG_CHAT_GEMMA4_LARGE,
                                              LG_CHAT_GEMMA3};
    for (size_t f = 0; f < 3; f++) {
        struct lg_chat_opts opts = lg_chat_opts_default();
        opts.flavour = fl[f];
        const json_t *v;
        if ((v = json_object_get(o, "enable_thinking")))
            opts.enable_thinking = json_is_true(v);
        if ((v = json_object_get(o, "add_generation_prompt")))
            opts.add_generation_prompt = json_is_true(v);
        if ((v = json_object_get(o, "preserve_thinking")))
            opts.preserve_thinking = json_is_true(v);
        if ((v = json_object_get(o, "tool_response_json")))
            opts.tool_response_json = json_is_true(v);
        char *out = NULL;
        size_t out_len = 0;
        struct lg_err err = {0};
        enum lg_status st = lg_chat_render(json_object_get(c, "messages"),
                                           json_object_get(c, "tools"), &opts, &out, &out_len, &err);
        snprintf(path, sizeof path, "%s/expected/%s.%s.txt", dir, base, lg_chat_flavour_name(fl[f]));
        size_t wl = 0;
        char *want = read_file(path, &wl);
        if (want) {
            bool same = st == LG_OK && out_len == wl && memcmp(out, want, wl) == 0;
            CHECK_MSG(same, "%s (%s): status %d %s", path, base, (int)st, err.msg);
            if (!same && st == LG_OK)
                first_diff(want, wl, out, out_len);
            n_golden_match += same;
        } else {
            snprintf(path, sizeof path, "%s/expected/%s.%s.error", dir, base,
                     lg_chat_flavour_name(fl[f]));
            char *e = read_file(path, NULL);
            CHECK_MSG(e != NULL, "no expected file for %s %s", base, lg_chat_flavour_name(fl[f]));
            CHECK_MSG(st == LG_ERR_INVALID_ARG && err.msg[0], "%s: expected an error, got %d",
                      path, (int)st);
            n_golden_err += st == LG_ERR_INVALID_ARG;
            free(e);
        }
        free(want);
        free(out);
    }
    json_decref(c);
}

static void test_golden(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/golden/chat", lg_test_data_dir());
    char cases[600];
    snprintf(cases, sizeof cases, "%s/cases", dir);
    DIR *d = opendir(cases);
    CHECK_MSG(d != NULL, "cannot open %s", cases);
    if (!d)
        return;
    char *names[1024];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    CHECK_MSG(n >= 50, "only %zu golden cases", n);
    for (size_t i = 0; i < n; i++) {
        run_case(dir, names[i]);
        free(names[i]);
    }
    printf("test_chat: golden: %zu cases, %d renderings byte-identical, %d expected errors\n", n,
           n_golden_match, n_golden_err);
}

static void check_float(double d, const char *want)
{
    struct lg_chat_buf b = {0};
    lg_py_repr_float(&b, d);
    CHECK_EQ_STR(b.ptr, want);
    lg_chat_buf_free(&b);
}

static void test_pyval(void)
{
    check_float(3.0, "3.0");
    check_float(1e-5, "1e-05");
    check_float(-0.0, "-0.0");
    check_float(0.1, "0.1");
    check_float(1e16, "1e+16");
    check_float(1e15, "1000000000000000.0");
    check_float(0.0001, "0.0001");
    check_float(123.456, "123.456");
    check_float(1.0 / 3.0, "0.3333333333333333");
    check_float(5e-324, "5e-324");
    check_float(1.7976931348623157e308, "1.7976931348623157e+308");
    check_float(2.5e-7, "2.5e-07");
    check_float(-12.75, "-12.75");
    check_float(123456789.125, "123456789.125");

    json_t *v = json_loads("[1, \"it's\", \"a\\\"b'c\", true, null, 2.0, {\"k\": [false]}, \"\\n\\u0001\"]",
                           0, NULL);
    struct lg_chat_buf b = {0};
    lg_py_str(&b, v);
    CHECK_EQ_STR(b.ptr, "[1, \"it's\", 'a\"b\\'c', True, None, 2.0, {'k': [False]}, '\\n\\x01']");
    lg_chat_buf_free(&b);
    json_decref(v);

    CHECK(!lg_py_truthy(NULL));
    json_t *t = json_loads("[0, 0.0, \"\", [], {}, null, false, 1, \"x\", [0], {\"a\":0}, true]", 0, NULL);
    for (size_t i = 0; i < json_array_size(t); i++)
        CHECK_EQ_INT(lg_py_truthy(json_array_get(t, i)), i >= 7);
    json_decref(t);

    size_t s, e;
    const char *ws = "\xc2\xa0 \t\nx y\xe3\x80\x80\r\n";
    lg_py_strip(ws, strlen(ws), &s, &e);
    CHECK_EQ_INT(s, 5);
    CHECK_EQ_INT(e, 8);

    lg_py_upper(&b, "straße é", strlen("straße é"));
    CHECK_EQ_STR(b.ptr, "STRASSE É");
    lg_chat_buf_free(&b);

    json_t *o = json_loads("{\"b\":1,\"B\":2,\"a\":3,\"_\":4,\"A\":5,\"Z\":6}", 0, NULL);
    size_t n = 0;
    bool oom = false;
    const char **keys = lg_py_dictsort(o, &n, &oom);
    CHECK_EQ_INT(n, 6);
    if (n == 6) {
        const char *want[] = {"_", "a", "A", "b", "B", "Z"};
        for (size_t i = 0; i < 6; i++)
            CHECK_EQ_STR(keys[i], want[i]);
    }
    free(keys);
    json_decref(o);
}

static void test_flavour(void)
{
    enum lg_chat_flavour f = LG_CHAT_GEMMA3;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_chat_flavour_select("gemma4", 256, &f, &err), LG_OK);
    CHECK_EQ_INT(f, LG_CHAT_GEMMA4_SMALL);
    CHECK_EQ_INT(lg_chat_flavour_select("gemma4", 0, &f, &err), LG_OK);
    CHECK_EQ_INT(f, LG_CHAT_GEMMA4_LARGE);
    CHECK_EQ_INT(lg_chat_flavour_select("gemma3", 0, &f, &err), LG_OK);
    CHECK_EQ_INT(f, LG_CHAT_GEMMA3);
    CHECK_EQ_INT(lg_chat_flavour_select("llama", 0, &f, &err), LG_ERR_UNSUPPORTED);
    CHECK_EQ_INT(lg_chat_flavour_select(NULL, 0, &f, &err), LG_ERR_UNSUPPORTED);
    CHECK(lg_chat_flavour_parse("gemma4-large", &f) && f == LG_CHAT_GEMMA4_LARGE);
    CHECK(!lg_chat_flavour_parse("gemma5", &f));
    const char *const *eog = lg_chat_eog_strings(LG_CHAT_GEMMA4_SMALL);
    CHECK_EQ_STR(eog[0], "<eos>");
    CHECK_EQ_STR(eog[1], "<turn|>");
    CHECK_EQ_STR(eog[2], "<|tool_response>");
    CHECK(eog[3] == NULL);
    eog = lg_chat_eog_strings(LG_CHAT_GEMMA3);
    CHECK_EQ_STR(eog[1], "<end_of_turn>");
    CHECK(eog[2] == NULL);
}

static void test_bad_input(void)
{
    static const char *const bad[] = {
        "{}", "[1]", "[{\"content\":\"no role\"}]", "[{\"role\":\"user\",\"content\":{\"a\":1}}]",
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{x\"}}]}]",
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":7,\"arguments\":{}}}]}]",
        "[{\"role\":\"assistant\",\"tool_calls\":\"nope\"}]",
        "[{\"role\":\"assistant\",\"content\":\"x\",\"reasoning_content\":5}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *m = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        CHECK(m != NULL);
        struct lg_chat_opts o = lg_chat_opts_default();
        char *out = (char *)1;
        struct lg_err err = {0};
        enum lg_status st = lg_chat_render(m, NULL, &o, &out, NULL, &err);
        CHECK_MSG(st == LG_ERR_INVALID_ARG && out == NULL && err.msg[0], "case %zu: %d", i, (int)st);
        json_decref(m);
    }
    /* tools that are not a list, and a tool without a function object */
    json_t *m = json_loads("[{\"role\":\"user\",\"content\":\"x\"}]", 0, NULL);
    json_t *t1 = json_loads("{\"a\":1}", 0, NULL), *t2 = json_loads("[{\"name\":\"f\"}]", 0, NULL);
    struct lg_chat_opts o = lg_chat_opts_default();
    char *out = NULL;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_chat_render(m, t1, &o, &out, NULL, &err), LG_ERR_INVALID_ARG);
    CHECK_EQ_INT(lg_chat_render(m, t2, &o, &out, NULL, &err), LG_ERR_INVALID_ARG);
    /* Deep nesting is an error, not a stack overflow. */
    char deep[8200];
    size_t p = 0;
    p += (size_t)snprintf(deep, sizeof deep, "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":");
    for (int i = 0; i < 1000; i++)
        deep[p++] = '[';
    for (int i = 0; i < 1000; i++)
        deep[p++] = ']';
    p += (size_t)snprintf(deep + p, sizeof deep - p, "}}}]}]");
    json_t *dm = json_loads(deep, 0, NULL);
    if (dm) { /* jansson may refuse the depth itself, which is fine too */
        CHECK_EQ_INT(lg_chat_render(dm, NULL, &o, &out, NULL, &err), LG_ERR_INVALID_ARG);
        json_decref(dm);
    }
    json_decref(m);
    json_decref(t1);
    json_decref(t2);
}

int main(void)
{
    test_pyval();
    test_flavour();
    test_golden();
    test_bad_input();
    return lg_test_done("test_chat");
}
