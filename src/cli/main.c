/* main.c: the localgemma command dispatcher.
 *
 * Every subcommand is declared weak here, so a command whose file has not been written yet
 * links as NULL and answers "not implemented yet" instead of breaking the build. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "localgemma.h"

#define LG_CLI_WEAK(name, help) extern int lg_cmd_##name(int, char **) __attribute__((weak));
LG_CLI_COMMANDS(LG_CLI_WEAK)
#undef LG_CLI_WEAK

struct cli_cmd {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
};

static const struct cli_cmd cli_cmds[] = {
#define LG_CLI_ENTRY(name, help) {#name, lg_cmd_##name, help},
    LG_CLI_COMMANDS(LG_CLI_ENTRY)
#undef LG_CLI_ENTRY
};

static void cli_usage(FILE *f)
{
    fprintf(f, "localgemma %s: run Gemma 4 and Gemma 3 locally from GGUF files\n\n",
            LG_VERSION_STRING);
    fprintf(f, "usage: localgemma COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        if (cli_cmds[i].fn)
            fprintf(f, "  %-11s %s\n", cli_cmds[i].name, cli_cmds[i].help);
    fprintf(f, "  %-11s %s\n", "version", "print the version");
    fprintf(f, "\nRun 'localgemma COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        cli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("localgemma %s\n", LG_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++) {
        if (strcmp(argv[1], cli_cmds[i].name) != 0)
            continue;
        if (!cli_cmds[i].fn) {
            fprintf(stderr, "localgemma %s: not implemented yet in this build\n", argv[1]);
            return 1;
        }
        return cli_cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "localgemma: unknown command '%s' (see 'localgemma help')\n", argv[1]);
    return 2;
}
