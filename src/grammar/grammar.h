/* grammar.h: constrained decoding — JSON Schema -> grammar, an incremental byte matcher, token
 * masks over a vocabulary, the Gemma 4 tool-call grammar, and schema validation.
 *
 * Grammar model. A compiled grammar is a set of rules, each a small automaton over bytes whose
 * edges either consume a byte range, are empty, or call another rule (with a return node): a
 * pushdown automaton. Every schema location becomes at most one rule, `$ref` targets are called
 * (so recursion costs nothing at compile time), and counted repetitions (minItems, maxLength)
 * are chains of calls, linear in the count. Budgets (hardening.md G6): at most
 * LG_GRAMMAR_MAX_NODES automaton nodes and repetition bounds up to LG_GRAMMAR_MAX_REPEAT; beyond
 * that, or for contradictions ({minItems 2, maxItems 1}), compilation fails with LG_ERR_RANGE
 * naming the keyword and its JSON pointer. Unsupported keywords give LG_ERR_UNSUPPORTED naming
 * the keyword and pointer; malformed schemas LG_ERR_INVALID_ARG. Either maps to HTTP 400.
 *
 * Generation policy (what the grammar lets a model write; every output is valid for the schema,
 * but not every valid document can be written):
 *  - Whitespace: compact JSON plus, after `{` `[` `,` `:` and before `}` `]`, at most one
 *    optional run of either one space or one newline followed by up to 24 spaces. The model can
 *    pretty-print, but can never loop on whitespace.
 *  - Properties are written in the order of `properties` (sorted by key in the Gemma surface),
 *    required ones always, optional ones optionally. Extra properties only when
 *    additionalProperties is true or a schema (or the object declares no properties), with keys
 *    [A-Za-z_][A-Za-z0-9_-]{0,63} that differ from every declared name.
 *  - Numbers: at most 16 integer digits, 6 fraction digits, 2 exponent digits; bounded numbers
 *    and integers are written without exponent; open integer ranges are clamped to ±10^15.
 *  - Strings: any UTF-8 except control characters, escapes \" \\ \/ \b \f \n \r \t and \uXXXX
 *    outside the surrogate range. Lengths count code points, as JSON Schema does.
 *  - Formats: date (days valid in every year: Feb ≤ 28), date-time, time (RFC 3339 with
 *    offset), uuid, email (a conservative address subset).
 *  - oneOf is generated like anyOf; lg_schema_validate checks exactly-one afterwards.
 *  - Recursion ($ref cycles, nested "any" values) is bounded at match time by
 *    LG_GRAMMAR_MAX_STACK call frames.
 *
 * Thread-safety: a compiled grammar and a grammar vocab are immutable and may be shared by any
 * number of threads. A state (and its clones) belongs to one thread (the engine thread).
 */
#ifndef LG_GRAMMAR_H
#define LG_GRAMMAR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

struct lg_vocab;

enum {
    LG_GRAMMAR_MAX_NODES = 100000,  /* automaton nodes per grammar (G6: rules <= 1e5) */
    LG_GRAMMAR_MAX_REPEAT = 2000,   /* largest minItems/maxItems/minLength/maxLength */
    LG_GRAMMAR_MAX_STACK = 160,     /* call depth at match time (bounds recursion) */
    LG_GRAMMAR_MAX_HEADS = 1024,    /* simultaneous parse positions (ambiguity bound) */
    LG_GRAMMAR_MAX_SCHEMA_DEPTH = 64 /* nesting of the schema document itself */
};

struct lg_grammar;

/* Compiles a JSON Schema (an object, or true) into *out. Errors as described above. */
enum lg_status lg_grammar_from_schema(const json_t *schema, struct lg_grammar **out,
                                      struct lg_err *err);

/* Any JSON object (`response_format: {type: json_object}`, Ollama `format: "json"`). */
enum lg_status lg_grammar_json_object(struct lg_grammar **out, struct lg_err *err);

/* Gemma 4 tool calls from an OpenAI `tools` array ([{type:"function", function:{name,
 * parameters}}]): `call:NAME{args}<tool_call|>` with NAME one of the tools and args in the
 * Gemma 4 syntax (bare sorted keys, <|"|>strings<|"|>, no whitespace) following the tool's
 * parameters schema. With LG_GRAMMAR_TOOL_OPEN the grammar starts with `<|tool_call>` (for
 * tool_choice required / named, applied from the first token); with LG_GRAMMAR_TOOL_MULTI
 * further `<|tool_call>call:...<tool_call|>` may follow (parallel calls). only_name, when not
 * NULL, restricts the calls to that tool (tool_choice naming a function). */
enum lg_grammar_tool_flags {
    LG_GRAMMAR_TOOL_OPEN = 1u << 0,
    LG_GRAMMAR_TOOL_MULTI = 1u << 1
};
enum lg_status lg_grammar_from_tools(const json_t *tools, const char *only_name, unsigned flags,
                                     struct lg_grammar **out, struct lg_err *err);

void lg_grammar_free(struct lg_grammar *g);

/* Number of automaton nodes (for budgets and tests). */
uint32_t lg_grammar_n_nodes(const struct lg_grammar *g);

/* ---- Matching ---------------------------------------------------------------------------------
 * A state is the set of parse positions reachable after the bytes accepted so far. States made
 * by lg_grammar_state_clone share one frame store with their origin (so copies are cheap:
 * a few dozen bytes per position); keep them on the same thread. */
struct lg_grammar_state;

/* The grammar must outlive the state. LG_ERR_NOMEM. */
enum lg_status lg_grammar_state_create(const struct lg_grammar *g, struct lg_grammar_state **out,
                                       struct lg_err *err);
void lg_grammar_state_destroy(struct lg_grammar_state *s);
/* Back to the start of the grammar. */
void lg_grammar_state_reset(struct lg_grammar_state *s);
/* A new state equal to s (shares its frame store). NULL on allocation failure. */
struct lg_grammar_state *lg_grammar_state_clone(const struct lg_grammar_state *s);
/* Makes dst equal to src (both must come from the same create/clone family): undo by
 * copying back a snapshot. LG_ERR_INVALID_ARG for unrelated states, LG_ERR_NOMEM. */
enum lg_status lg_grammar_state_copy(struct lg_grammar_state *dst,
                                     const struct lg_grammar_state *src, struct lg_err *err);

/* Consumes n bytes. LG_OK, or LG_ERR_RANGE when some byte is not allowed (the state is then
 * unchanged: acceptance is all or nothing); LG_ERR_NOMEM. */
enum lg_status lg_grammar_accept_bytes(struct lg_grammar_state *s, const void *bytes, size_t n,
                                       struct lg_err *err);
/* True when the bytes so far form a complete sentence of the grammar (it may continue). */
bool lg_grammar_is_complete(const struct lg_grammar_state *s);
/* True when no byte can follow (complete and nothing may be appended). */
bool lg_grammar_is_finished(const struct lg_grammar_state *s);
/* Bytes that may come next: fills allowed[256]. */
void lg_grammar_next_bytes(const struct lg_grammar_state *s, bool allowed[256]);

/* ---- Token masks ------------------------------------------------------------------------------
 * A grammar vocab is the vocabulary's tokens as the bytes the detokenizer produces for them
 * (U+2581 -> space, <0xHH> -> that byte, user-defined tokens as their text) in a trie. Control,
 * unknown and unused tokens are never allowed; end-of-generation tokens (whatever their type)
 * are allowed exactly when the grammar is complete, never as text. Build once per vocab
 * (about 0.2 s and 10 MB for 262144 tokens); immutable.
 * Memory per state family (a state and its clones): the last 4 masks (cached: a repeated
 * state's mask is a copy) and a walk memo of up to 4096 position sets x 1 KB. */
struct lg_grammar_vocab;

enum lg_status lg_grammar_vocab_build(const struct lg_vocab *v, struct lg_grammar_vocab **out,
                                      struct lg_err *err);
void lg_grammar_vocab_free(struct lg_grammar_vocab *gv);
uint32_t lg_grammar_vocab_n_tokens(const struct lg_grammar_vocab *gv);
uint32_t lg_grammar_vocab_n_trie_nodes(const struct lg_grammar_vocab *gv);
/* The bytes of token id (NULL/0 for ids out of range or never-allowed tokens). */
const uint8_t *lg_grammar_vocab_bytes(const struct lg_grammar_vocab *gv, int32_t id, size_t *n);

/* ORs into allowed[] (n_tokens bits; word i bit b = token 32*i+b) the tokens whose bytes the
 * grammar accepts now, plus EOG tokens when complete. Masks of recently seen states are cached
 * in the state's frame store. LG_ERR_NOMEM. */
enum lg_status lg_grammar_mask(struct lg_grammar_state *s, const struct lg_grammar_vocab *gv,
                               uint32_t *allowed, struct lg_err *err);

/* Advances by one token: its bytes, or for an EOG token, the end (allowed only when complete;
 * afterwards nothing more is allowed). LG_ERR_RANGE when the grammar rejects it (state unchanged). */
enum lg_status lg_grammar_accept_token(struct lg_grammar_state *s,
                                       const struct lg_grammar_vocab *gv, int32_t id,
                                       struct lg_err *err);

/* Sampler adapter (src/sample/sample.h lg_sample_mask_fn): install with
 * lg_sampler_set_mask(sampler, lg_grammar_sample_mask, &hook); after each sampled token call
 * lg_grammar_accept_token(hook.state, hook.vocab, token, err). */
struct lg_grammar_hook {
    struct lg_grammar_state *state;
    const struct lg_grammar_vocab *vocab;
};
enum lg_status lg_grammar_sample_mask(void *hook, uint32_t *allowed, int32_t n_vocab,
                                      struct lg_err *err);

/* ---- Validation -------------------------------------------------------------------------------
 * Checks value against schema (the keywords the compiler knows, plus format checks) and appends
 * {"path": JSON pointer into value, "message": text} objects to errors (a JSON array), at most
 * 100. oneOf requires exactly one match. Returns LG_OK when validation ran (valid iff nothing was
 * appended), LG_ERR_UNSUPPORTED / LG_ERR_INVALID_ARG for schemas the compiler would reject too,
 * LG_ERR_NOMEM. */
enum lg_status lg_schema_validate(const json_t *schema, const json_t *value, json_t *errors,
                                  struct lg_err *err);

#endif
