/* chat.h: Gemma 3 / Gemma 4 prompt rendering and output parsing.
 *
 * Rendering turns OpenAI-style `messages` (+ optional `tools`) into the exact prompt text the
 * official chat templates produce when rendered with Python jinja2 the way Hugging Face
 * transformers does (tests/golden/chat, tools/make-chat-golden.py). The output starts with
 * "<bos>" as the templates do: tokenize it with special-token parsing on and without adding a
 * second BOS.
 *
 * Parsing splits a Gemma 4 generation, fed piece by piece as it streams, into reasoning (the
 * thought channel), answer text and tool calls (converted to JSON arguments).
 *
 * Thread-safety: every function is reentrant; a parser object belongs to one thread at a time.
 */
#ifndef LG_CHAT_H
#define LG_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

enum lg_chat_flavour {
    LG_CHAT_GEMMA4_SMALL = 0, /* E2B / E4B: no empty thought block in the generation prompt */
    LG_CHAT_GEMMA4_LARGE = 1, /* 26B / 31B: `<|channel>thought\n<channel|>` when thinking is off */
    LG_CHAT_GEMMA3 = 2        /* <start_of_turn>/<end_of_turn> */
};

/* Picks the template flavour from GGUF metadata: arch = general.architecture,
 * n_embd_per_layer_input = gemma4.embedding_length_per_layer_input (0 when absent).
 * gemma4 with n > 0 -> small, other gemma4 -> large, gemma3 -> gemma3; anything else is
 * LG_ERR_UNSUPPORTED. */
enum lg_status lg_chat_flavour_select(const char *arch, uint64_t n_embd_per_layer_input,
                                      enum lg_chat_flavour *out, struct lg_err *err);

/* The same choice read from an open GGUF (general.architecture and
 * <arch>.embedding_length_per_layer_input, a u32 that may be absent). Errors name the key. */
struct lg_gguf;
enum lg_status lg_chat_flavour_from_gguf(const struct lg_gguf *g, enum lg_chat_flavour *out,
                                         struct lg_err *err);

/* "gemma4-small" | "gemma4-large" | "gemma3" <-> enum. parse returns false on unknown names. */
const char *lg_chat_flavour_name(enum lg_chat_flavour f);
bool lg_chat_flavour_parse(const char *name, enum lg_chat_flavour *out);

struct lg_chat_opts {
    enum lg_chat_flavour flavour;
    bool enable_thinking;       /* template variable enable_thinking (Gemma 4) */
    bool add_generation_prompt; /* default true */
    bool preserve_thinking;     /* template variable preserve_thinking (Gemma 4) */
    /* Gemma 4: fold assistant tool_calls + following role:tool messages into one message with
     * tool_responses whose content is parsed as JSON where possible (llama.cpp's
     * convert_tool_responses_gemma4). Off = the canonical template's own forward scan, which
     * renders tool content strings as response:NAME{value:<|"|>...<|"|>}. */
    bool tool_response_json;
};

/* Defaults: gemma4-small, thinking off, generation prompt on, the rest off. */
struct lg_chat_opts lg_chat_opts_default(void);

/* Renders messages (a JSON array) and tools (JSON array, or NULL / JSON null) into *out, a
 * malloc'd NUL-terminated string of *out_len bytes (out_len may be NULL); the caller frees it.
 * tool_calls[].function.arguments may be an object or a JSON string (parsed here).
 * Errors: LG_ERR_INVALID_ARG for input the template rejects (its raise_exception cases,
 * non-alternating Gemma 3 roles, arguments that are not a JSON object, a message without a
 * role, ...), with a message naming the message index; LG_ERR_NOMEM. */
enum lg_status lg_chat_render(const json_t *messages, const json_t *tools,
                              const struct lg_chat_opts *opts, char **out, size_t *out_len,
                              struct lg_err *err);

/* End-of-generation strings per flavour (spec §4.2): Gemma 4 {"<eos>", "<turn|>",
 * "<|tool_response>"}, Gemma 3 {"<eos>", "<end_of_turn>"}. NULL-terminated static array. */
const char *const *lg_chat_eog_strings(enum lg_chat_flavour f);

/* ---- Output parsing ------------------------------------------------------------------------
 * Feed decoded text pieces in order; special tokens must be passed as their exact text (e.g.
 * "<|channel>") with special = true, ordinary text with special = false (text that merely looks
 * like a marker is then treated as a marker too: the model cannot tell them apart either).
 * Each call appends events to the parser's queue; read them with lg_chat_parser_next().
 * The parser never emits part of a marker as answer text: a tail that could be the start of a
 * marker is held back until the next piece decides it. */

enum lg_chat_event_type {
    LG_CHAT_EV_CONTENT = 0,   /* answer text delta */
    LG_CHAT_EV_REASONING = 1, /* thought channel text delta */
    LG_CHAT_EV_TOOL_CALL = 2, /* a complete tool call: name + arguments (JSON object text) */
    LG_CHAT_EV_ERROR = 3      /* a malformed tool call: text holds a JSON error object */
};

/* Opt-in (lg_chat_parser_stream_calls), so it is kept out of enum lg_chat_event_type and the
 * switches over it: an event of this type (compare `(int)ev.type`) is a piece of the arguments
 * of the tool call being generated, as JSON text, emitted while the call streams. The first
 * delta of a call carries its name (NULL on later ones). The call still ends with a TOOL_CALL
 * event (whose `streamed` counts the bytes these deltas delivered) or an ERROR event. Deltas
 * are only emitted while the call is written in the canonical Gemma 4 syntax that converts one
 * way only (what a grammar-constrained model writes); anything the final parse might repair or
 * coerce stops the deltas for that call, and the rest of the arguments then arrive with the
 * TOOL_CALL event. */
enum { LG_CHAT_EV_TOOL_CALL_DELTA = 4 };

struct lg_chat_event {
    enum lg_chat_event_type type;
    char *text;      /* CONTENT / REASONING delta; TOOL_CALL: arguments JSON; ERROR: JSON object */
    size_t len;
    char *name;      /* TOOL_CALL: function name (NULL otherwise) */
    bool repaired;   /* TOOL_CALL: recovered from a malformed call (see toolcall.c / parse.c) */
    size_t streamed; /* TOOL_CALL: leading bytes of text already delivered by DELTA events
                      * (text always holds the complete arguments; text[0..streamed) equals the
                      * concatenated deltas, or the parser emits ERROR instead) */
};

struct lg_chat_parser;

/* tools (may be NULL) is the request's OpenAI tools array: when given, a call to a name not in
 * it becomes an ERROR event, and an argument its schema types as array / object that the model
 * wrote as a string holding that JSON is converted (spec §7.13). The parser keeps a copy.
 * NULL on allocation failure. */
struct lg_chat_parser *lg_chat_parser_create(enum lg_chat_flavour f, const json_t *tools);
void lg_chat_parser_destroy(struct lg_chat_parser *p);

/* Turns LG_CHAT_EV_TOOL_CALL_DELTA events on or off (off by default); takes effect from the
 * next piece fed. */
void lg_chat_parser_stream_calls(struct lg_chat_parser *p, bool on);

/* For a prompt that already ends inside the thought channel (the Gemma 4 generation prompt after
 * a tool response with thinking on ends in `<|channel>thought\n`): start in reasoning. Call
 * before the first feed. */
void lg_chat_parser_begin_in_reasoning(struct lg_chat_parser *p);

/* Feeds one piece. LG_ERR_NOMEM, or LG_ERR_RANGE when the buffered text exceeds the limit. */
enum lg_status lg_chat_parser_feed(struct lg_chat_parser *p, const char *text, size_t len,
                                   bool special);
/* End of generation: flushes held-back text. A tool call still open is parsed as it stands
 * (a TOOL_CALL if it can be completed, e.g. only its closing brace is missing, else ERROR). */
enum lg_status lg_chat_parser_finish(struct lg_chat_parser *p);

/* Pops the next event into *ev (ownership of its strings passes to the caller; free them with
 * lg_chat_event_free). Returns false when the queue is empty. */
bool lg_chat_parser_next(struct lg_chat_parser *p, struct lg_chat_event *ev);
void lg_chat_event_free(struct lg_chat_event *ev);

/* Converts one Gemma 4 call body (what follows "call:", e.g. `f{a:<|"|>x<|"|>,b:[1,2]}`) into
 * *name (malloc'd) and *args_json (malloc'd JSON object text). Tolerates the §7.13
 * malformations (see toolcall.c); *repaired says whether it had to. LG_ERR_FORMAT with a message
 * when nothing sensible can be recovered. */
enum lg_status lg_chat_parse_call(const char *body, size_t len, char **name, char **args_json,
                                  bool *repaired, struct lg_err *err);

/* ---- Internal helpers shared by the src/chat files -------------------------------------------- */

/* A growing byte buffer; on allocation failure it sets oom and drops further appends. */
struct lg_chat_buf {
    char *ptr;
    size_t len, cap;
    bool oom;
};
void lg_chat_buf_put(struct lg_chat_buf *b, const char *s, size_t n);
void lg_chat_buf_puts(struct lg_chat_buf *b, const char *s);
void lg_chat_buf_free(struct lg_chat_buf *b);

/* The Gemma 4 template over normalised messages (render_gemma4.c): appends to b; on failure
 * returns false with *status and err set (status LG_OK with b->oom set means out of memory). */
bool lg_chat_render_gemma4(struct lg_chat_buf *b, const json_t *messages, const json_t *tools,
                           const struct lg_chat_opts *opts, struct lg_err *err,
                           enum lg_status *status);

/* Appends s[0..len) as JSON string content, without quotes (toolcall.c): the escaping every
 * tool-call argument string gets. Invalid UTF-8 becomes U+FFFD. */
void lg_chat_json_escape(struct lg_chat_buf *b, const char *s, size_t len);

/* Python / Jinja value semantics over jansson values (pyval.c). */
bool lg_py_truthy(const json_t *v);                          /* Python bool(); NULL = Undefined */
void lg_py_str(struct lg_chat_buf *b, const json_t *v);      /* str(v); NULL = Undefined -> "" */
void lg_py_repr_float(struct lg_chat_buf *b, double d);      /* repr(float) */
void lg_py_upper(struct lg_chat_buf *b, const char *s, size_t n); /* str.upper() */
/* str.strip(): returns the trimmed span of s[0..n). */
void lg_py_strip(const char *s, size_t n, size_t *start, size_t *end);
/* Keys of an object in Jinja dictsort order (case-insensitive, stable). Returns a malloc'd
 * array of *n keys (borrowed from obj), NULL with *n = 0 for an empty object or no memory
 * (*oom set). */
const char **lg_py_dictsort(const json_t *obj, size_t *n, bool *oom);

#endif
