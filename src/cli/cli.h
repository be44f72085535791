/* cli.h: the localgemma subcommands. Each lives in its own file src/cli/cmd_<name>.c and
 * defines `int lg_cmd_<name>(int argc, char **argv)`, where argv[0] is the subcommand name.
 * It returns the process exit code (0 ok, 1 error, 2 usage). Errors go to stderr as one line
 * "localgemma <cmd>: <message>". */
#ifndef LG_CLI_H
#define LG_CLI_H

#define LG_CLI_COMMANDS(X)                                                                     \
    X(run, "run a model on a prompt, or chat interactively")                                  \
    X(chat, "interactive chat (same as run without a prompt)")                                \
    X(serve, "start the OpenAI/Ollama-compatible server")                                     \
    X(bench, "measure load time, TTFT, prefill and decode speed")                             \
    X(pull, "download a model over HTTP(S) into the store")                                   \
    X(import, "add a local GGUF file to the store")                                           \
    X(list, "list models in the store")                                                       \
    X(show, "show a GGUF file's metadata and tensors")                                        \
    X(rm, "remove a model from the store")                                                    \
    X(cp, "copy a model name in the store")                                                   \
    X(ps, "list models loaded by a running server")                                           \
    X(quantize, "quantize a GGUF file to another type")                                       \
    X(convert, "convert a Hugging Face checkpoint to GGUF")                                   \
    X(estimate, "plan memory for a model and context")                                        \
    X(logits, "run tokens through a model and print/write logits")                            \
    X(perplexity, "perplexity of a model over a text file")                                   \
    X(tokenize, "tokenize text with a model's vocabulary")                                    \
    X(detokenize, "turn token ids back into text")                                            \
    X(template, "print the exact prompt a chat renders to")                                   \
    X(keys, "manage API keys")                                                                \
    X(audit, "verify or export the audit log")                                                \
    X(policy, "try a policy file on a text")

#define LG_CLI_DECLARE(name, help) int lg_cmd_##name(int argc, char **argv);
LG_CLI_COMMANDS(LG_CLI_DECLARE)
#undef LG_CLI_DECLARE

#endif
