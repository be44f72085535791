/* cmd_template.c: `localgemma template` prints the exact prompt text a chat renders to.
 *
 *   localgemma template MODEL --messages FILE.json [--tools FILE.json] [--think]
 *                       [--flavour gemma4-small|gemma4-large|gemma3] [--no-generation-prompt]
 *                       [--tool-response-json]
 *
 * MODEL is a GGUF file; its general.architecture and gemma4.embedding_length_per_layer_input pick
 * the template flavour. With --flavour the model is not opened (MODEL may then be omitted).
 * --messages takes an OpenAI `messages` array (or an object holding "messages" and optionally
 * "tools", like a /v1/chat/completions body); "-" reads stdin. The prompt goes to stdout as is,
 * with no trailing newline added.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "cli/cli.h"
#include "gguf/gguf.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: localgemma template MODEL --messages FILE.json [--tools FILE.json] [--think]\n"
               "                           [--flavour gemma4-small|gemma4-large|gemma3]\n"
               "                           [--no-generation-prompt] [--tool-response-json]\n"
               "Prints the exact prompt text the model would be fed. FILE may be '-' (stdin).\n");
}

static json_t *load_json(const char *path, const char *what)
{
    json_error_t je;
    json_t *v = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_DECODE_ANY, &je)
                                       : json_load_file(path, JSON_DECODE_ANY, &je);
    if (!v)
        fprintf(stderr, "localgemma template: %s %s: line %d: %s\n", what, path, je.line, je.text);
    return v;
}

static int flavour_from_model(const char *path, enum lg_chat_flavour *out)
{
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    if (lg_gguf_open(path, &g, &err) != LG_OK) {
        fprintf(stderr, "localgemma template: %s: %s\n", path, err.msg);
        return 1;
    }
    enum lg_status st = lg_chat_flavour_from_gguf(g, out, &err);
    lg_gguf_close(g);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma template: %s: %s (use --flavour)\n", path, err.msg);
        return 1;
    }
    return 0;
}

int lg_cmd_template(int argc, char **argv)
{
    const char *model = NULL, *messages_path = NULL, *tools_path = NULL, *flavour = NULL;
    struct lg_chat_opts opts = lg_chat_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--messages") && i + 1 < argc) {
            messages_path = argv[++i];
        } else if (!strcmp(a, "--tools") && i + 1 < argc) {
            tools_path = argv[++i];
        } else if (!strcmp(a, "--flavour") && i + 1 < argc) {
            flavour = argv[++i];
        } else if (!strcmp(a, "--think")) {
            opts.enable_thinking = true;
        } else if (!strcmp(a, "--no-generation-prompt")) {
            opts.add_generation_prompt = false;
        } else if (!strcmp(a, "--tool-response-json")) {
            opts.tool_response_json = true;
        } else if (a[0] == '-' && a[1] != 0) {
            fprintf(stderr, "localgemma template: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "localgemma template: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!messages_path || (!model && !flavour)) {
        usage(stderr);
        return 2;
    }
    if (flavour) {
        if (!lg_chat_flavour_parse(flavour, &opts.flavour)) {
            fprintf(stderr, "localgemma template: unknown flavour '%s'\n", flavour);
            return 2;
        }
    } else if (flavour_from_model(model, &opts.flavour) != 0) {
        return 1;
    }

    json_t *msgs = load_json(messages_path, "messages");
    if (!msgs)
        return 1;
    json_t *tools = NULL;
    if (json_is_object(msgs)) { /* a whole request body */
        json_t *body = msgs;
        msgs = json_incref(json_object_get(body, "messages"));
        tools = json_incref(json_object_get(body, "tools"));
        json_decref(body);
        if (!msgs) {
            fprintf(stderr, "localgemma template: %s: no \"messages\" array\n", messages_path);
            json_decref(tools);
            return 1;
        }
    }
    if (tools_path) {
        json_decref(tools);
        tools = load_json(tools_path, "tools");
        if (!tools) {
            json_decref(msgs);
            return 1;
        }
    }
    char *out = NULL;
    size_t len = 0;
    struct lg_err err = {0};
    enum lg_status st = lg_chat_render(msgs, tools, &opts, &out, &len, &err);
    json_decref(msgs);
    json_decref(tools);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma template: %s\n", err.msg);
        return 1;
    }
    int rc = fwrite(out, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
    if (rc)
        fprintf(stderr, "localgemma template: write error\n");
    free(out);
    return rc;
}
