/* cmd_ps.c: `localgemma ps` — asks a running server (GET /api/ps) which models it has
 * loaded, like `ollama ps`: NAME, ID, SIZE, CONTEXT, UNTIL. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct ps_body {
    char *p;
    size_t n;
};

static size_t ps_write(char *data, size_t size, size_t nmemb, void *user)
{
    struct ps_body *b = user;
    size_t n = size * nmemb;
    if (b->n + n > (1u << 24)) /* 16 MiB: far beyond any real answer */
        return 0;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->n, data, n);
    b->p = q;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

static void fmt_size(double bytes, char *out, size_t n)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (bytes >= 1000 && i < 4) {
        bytes /= 1000;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

int lg_cmd_ps(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 11434;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: localgemma ps [--host H] [--port P]\n"
                   "  Lists the models a running `localgemma serve` has loaded.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            char *end;
            errno = 0;
            port = strtol(argv[++i], &end, 10);
            if (errno || *end || port < 1 || port > 65535) {
                fprintf(stderr, "localgemma ps: --port '%s': expected 1..65535\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "localgemma ps: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    char url[512];
    bool v6 = strchr(host, ':') != NULL;
    snprintf(url, sizeof url, "http://%s%s%s:%ld/api/ps", v6 ? "[" : "", host, v6 ? "]" : "",
             port);
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "localgemma ps: cannot initialise libcurl\n");
        return 1;
    }
    struct ps_body b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ps_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    const char *key = getenv("LOCALGEMMA_API_KEY");
    struct curl_slist *hdr = NULL;
    if (key && *key) {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdr = curl_slist_append(hdr, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    }
    CURLcode cr = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    if (cr != CURLE_OK) {
        fprintf(stderr, "localgemma ps: cannot reach a server at %s (%s); is `localgemma "
                "serve` running?\n", url, curl_easy_strerror(cr));
        free(b.p);
        return 1;
    }
    json_error_t je;
    json_t *root = b.p ? json_loads(b.p, 0, &je) : NULL;
    free(b.p);
    if (status != 200 || !json_is_object(root)) {
        json_t *e = json_object_get(root, "error");
        fprintf(stderr, "localgemma ps: server answered HTTP %ld%s%s\n", status,
                json_is_string(e) ? ": " : "", json_is_string(e) ? json_string_value(e) : "");
        json_decref(root);
        return 1;
    }
    json_t *models = json_object_get(root, "models");
    printf("%-32s  %-12s  %-10s  %-8s  %s\n", "NAME", "ID", "SIZE", "CONTEXT", "UNTIL");
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *digest = json_string_value(json_object_get(m, "digest"));
        const char *until = json_string_value(json_object_get(m, "expires_at"));
        json_t *sz = json_object_get(m, "size");
        char size[32];
        fmt_size(json_is_number(sz) ? json_number_value(sz) : 0, size, sizeof size);
        json_t *ctx = json_object_get(m, "context_length");
        if (digest && !strncmp(digest, "sha256:", 7))
            digest += 7;
        printf("%-32s  %-12.12s  %-10s  %-8lld  %s\n", name ? name : "?", digest ? digest : "",
               size, json_is_integer(ctx) ? (long long)json_integer_value(ctx) : 0LL,
               until && strncmp(until, "0001-", 5) ? until : "Forever");
    }
    json_decref(root);
    return 0;
}
