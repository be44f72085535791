/* open.c: the one place subcommands turn MODEL into an open GGUF and vocabulary. */
#include "cli/open.h"

#include <stdio.h>

#include "gguf/gguf.h"
#include "store/store.h"
#include "tok/tok.h"

int lg_cli_open_vocab(const char *cmd, const char *model, struct lg_gguf **g,
                      struct lg_vocab **v)
{
    struct lg_err err = {0};
    char path[4096];
    *g = NULL;
    *v = NULL;
    if (lg_store_resolve_default(model, false, path, sizeof path, &err) != LG_OK ||
        lg_gguf_open(path, g, &err) != LG_OK || lg_vocab_load(*g, v, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s: %s\n", cmd, model, err.msg);
        lg_gguf_close(*g);
        *g = NULL;
        return 1;
    }
    return 0;
}
