/* open.h: opening what a subcommand's MODEL argument names (a .gguf path or a store name). */
#ifndef LG_CLI_OPEN_H
#define LG_CLI_OPEN_H

struct lg_gguf;
struct lg_vocab;

/* Resolves MODEL and loads its vocabulary. On failure prints "localgemma CMD: MODEL: why" to
 * stderr, leaves *g and *v NULL and returns 1; 0 on success (close both when done). */
int lg_cli_open_vocab(const char *cmd, const char *model, struct lg_gguf **g,
                      struct lg_vocab **v);

#endif
