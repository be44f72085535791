/* fuzz_grammar.c: libFuzzer target for the schema -> grammar compiler, the matcher and the
 * validator.
 *
 * Input: <schema JSON> NUL <text>. Byte 0 of the schema part is not special; if the schema is
 * a JSON array it is compiled as an OpenAI tools list (Gemma 4 tool-call grammar), otherwise
 * as a JSON Schema. Checks, beyond memory safety and termination:
 *  - a failed compile leaves no grammar and a message;
 *  - feeding the text byte by byte and in one call agree (acceptance is all or nothing), and
 *    every accepted byte was listed by lg_grammar_next_bytes;
 *  - soundness: when a JSON-Schema grammar accepts the text as complete, the text is JSON and
 *    lg_schema_validate finds no error in it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_schema = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "";
    size_t n_text = nul ? size - n_schema - 1 : 0;
    json_t *schema = json_loadb((const char *)data, n_schema, JSON_DECODE_ANY, NULL);
    if (!schema)
        return 0;
    struct lg_err err = {0};
    struct lg_grammar *g = NULL;
    bool tools = json_is_array(schema);
    enum lg_status st = tools ? lg_grammar_from_tools(schema, NULL, LG_GRAMMAR_TOOL_MULTI, &g, &err)
                              : lg_grammar_from_schema(schema, &g, &err);
    if (st != LG_OK) {
        if (g || !err.msg[0]) {
            fprintf(stderr, "failed compile without message or with a grammar\n");
            abort();
        }
        json_decref(schema);
        return 0;
    }
    struct lg_grammar_state *a = NULL, *b = NULL;
    if (lg_grammar_state_create(g, &a, &err) != LG_OK || !(b = lg_grammar_state_clone(a)))
        goto out;
    size_t n_ok = 0;
    while (n_ok < n_text) {
        bool next[256];
        lg_grammar_next_bytes(a, next);
        uint8_t ch = (uint8_t)text[n_ok];
        if (lg_grammar_accept_bytes(a, &ch, 1, &err) != LG_OK)
            break;
        if (!next[ch]) {
            fprintf(stderr, "byte 0x%02x accepted but not listed\n", ch);
            abort();
        }
        n_ok++;
    }
    bool whole = lg_grammar_accept_bytes(b, text, n_text, &err) == LG_OK;
    if (whole != (n_ok == n_text)) {
        fprintf(stderr, "whole %d but byte-wise %zu of %zu\n", whole, n_ok, n_text);
        abort();
    }
    if (!whole) {
        /* All or nothing: b is unchanged, so the accepted prefix still goes in. */
        if (lg_grammar_accept_bytes(b, text, n_ok, &err) != LG_OK) {
            fprintf(stderr, "prefix rejected after a failed accept\n");
            abort();
        }
    }
    if (lg_grammar_is_complete(a) != lg_grammar_is_complete(b)) {
        fprintf(stderr, "completion differs\n");
        abort();
    }
    if (!tools && whole && lg_grammar_is_complete(a)) {
        json_error_t je;
        json_t *v = json_loadb(text, n_text, JSON_DECODE_ANY, &je);
        if (!v) {
            fprintf(stderr, "grammar accepted non-JSON: %s\n", je.text);
            abort();
        }
        json_t *errs = json_array();
        if (lg_schema_validate(schema, v, errs, &err) == LG_OK && json_array_size(errs) != 0) {
            char *e = json_dumps(errs, JSON_COMPACT);
            fprintf(stderr, "grammar accepted an invalid value: %s\n", e ? e : "");
            abort();
        }
        json_decref(errs);
        json_decref(v);
    }
out:
    lg_grammar_state_destroy(a);
    lg_grammar_state_destroy(b);
    lg_grammar_free(g);
    json_decref(schema);
    return 0;
}
