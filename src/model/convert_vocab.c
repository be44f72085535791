/* convert_vocab.c: the SentencePiece (Gemma 3) vocabulary and the special-token metadata of a
 * conversion, as llama.cpp's converter writes them (see convert.h).
 *
 * Two parts, each following what the reference converter does, quirks included:
 *  - lg_convert_spm_vocab: tokenizer.model -> tokens / scores / token_type, then
 *    added_tokens.json and tokenizer_config.json's added_tokens_decoder override entries
 *    (score -1000; CONTROL when "special" or when the text looks special, else USER_DEFINED
 *    with U+2581 turned back into spaces). Ids past the model's vocab_size are ignored; ids
 *    the tokenizer lacks stay "[PADi]" / -10000 / UNUSED. SentencePiece USER_DEFINED pieces
 *    that no added-token list names come out NORMAL (the reference asks the tokenizer for
 *    unknown/control/unused/byte only).
 *  - special_vocab: gguf-py's SpecialVocab: bos/eos/unk/sep/pad/(cls)/mask ids from
 *    tokenizer_config.json's *_token matched against tokenizer.json's added_tokens, then from
 *    config.json's *_token_id (first found wins; ints only; ids >= n_vocab skipped);
 *    add_bos/add_eos/add_sep from tokenizer.json's post_processor (TemplateProcessing,
 *    RobertaProcessing, ByteLevel) and tokenizer_config.json's add_*_token; normalizer
 *    lowercase/strip_accents; the chat template (tokenizer_config.json's chat_template, else
 *    chat_template.jinja [+ additional_chat_templates/NAME.jinja], else chat_template.json), only
 *    when tokenizer_config.json exists.
 * Malformed JSON or wrongly typed entries that make the reference converter fail are errors
 * here too (LG_ERR_FORMAT naming the file and entry). */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "model/convert.h"

enum {
    GGUF_TOK_NORMAL = 1,
    GGUF_TOK_UNKNOWN = 2,
    GGUF_TOK_CONTROL = 3,
    GGUF_TOK_USER_DEFINED = 4,
    GGUF_TOK_UNUSED = 5,
    GGUF_TOK_BYTE = 6,
    /* transformers' Gemma3TextConfig default, used when config.json has no vocab_size */
    GEMMA3_DEFAULT_VOCAB = 262208,
    MAX_TEMPLATE_BYTES = 16 << 20,
};

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads DIR/NAME when it is a file: *out NULL when absent; LG_ERR_FORMAT when malformed. */
static enum lg_status load_json(const char *dir, const char *name, json_t **out,
                                struct lg_err *err)
{
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!is_file(path))
        return LG_OK;
    json_error_t je;
    *out = json_load_file(path, JSON_DECODE_ANY, &je);
    /* HF writes model_max_length = 1e30 as an integer, which jansson cannot hold: read such
     * files with every number as a double (py_int takes integral doubles). */
    if (!*out && strstr(je.text, "too big integer"))
        *out = json_load_file(path, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    if (!*out)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: %s (line %d)", name, je.text, je.line);
    return LG_OK;
}

/* Python truthiness of a JSON value (NULL = absent = None). */
static bool truthy(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_TRUE: return true;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0.0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_OBJECT: return json_object_size(v) > 0;
    default: return false;
    }
}

/* Python ==, with NULL and JSON null both None. */
static bool py_eq(const json_t *a, const json_t *b)
{
    bool an = !a || json_is_null(a), bn = !b || json_is_null(b);
    if (an || bn)
        return an && bn;
    return json_equal((json_t *)a, (json_t *)b);
}

/* Python's int check: true/false count as 1/0 (bool is an int there). Integral doubles pass
 * too, for files read with JSON_DECODE_INT_AS_REAL (load_json). */
static bool py_int(const json_t *v, json_int_t *out)
{
    if (json_is_integer(v))
        *out = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) > -9.0e15 && json_real_value(v) < 9.0e15 &&
             json_real_value(v) == (double)(json_int_t)json_real_value(v))
        *out = (json_int_t)json_real_value(v);
    else if (json_is_boolean(v))
        *out = json_is_true(v);
    else
        return false;
    return true;
}

/* ---- SpecialVocab ---- */

enum { MAX_TYPES = 9 };

struct special {
    const char *types[MAX_TYPES]; /* bos eos unk sep pad cls mask (+ eot, eom) */
    int n_types;
    json_int_t ids[MAX_TYPES];    /* -1: unset; indexed like types */
    int id_order[MAX_TYPES], n_ids;
    int8_t add[MAX_TYPES];        /* -1 unset, 0/1 */
    int8_t lowercase, strip_accents;
    int64_t n_vocab;
};

static int type_index(struct special *sv, const char *typ, bool create)
{
    for (int i = 0; i < sv->n_types; i++)
        if (!strcmp(sv->types[i], typ))
            return i;
    if (!create || sv->n_types == MAX_TYPES)
        return -1;
    sv->types[sv->n_types] = typ;
    sv->ids[sv->n_types] = -1;
    sv->add[sv->n_types] = -1;
    return sv->n_types++;
}

static bool has_type(struct special *sv, const char *typ)
{
    return type_index(sv, typ, false) >= 0;
}

static void set_add(struct special *sv, const char *typ, bool v, bool only_if_unset)
{
    int i = type_index(sv, typ, true);
    if (i >= 0 && (!only_if_unset || sv->add[i] < 0))
        sv->add[i] = v;
}

/* _set_special_token: non-ints are ignored, negatives are an error, the first id wins. */
static enum lg_status set_special(struct special *sv, const char *typ, const json_t *tid,
                                  const char *src, struct lg_err *err)
{
    json_int_t id;
    if (!tid || !py_int(tid, &id))
        return LG_OK;
    if (id < 0)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: invalid %s token id %lld", src, typ,
                          (long long)id);
    if (id >= sv->n_vocab)
        return LG_OK;
    int i = type_index(sv, typ, true);
    if (i < 0 || sv->ids[i] >= 0)
        return LG_OK;
    sv->ids[i] = id;
    sv->id_order[sv->n_ids++] = i;
    return LG_OK;
}

static void parse_normalizer(struct special *sv, const json_t *nz, int depth)
{
    const char *t = json_string_value(json_object_get(nz, "type"));
    if (!t || depth > 16)
        return;
    if (!strcmp(t, "Lowercase")) {
        sv->lowercase = 1;
    } else if (!strcmp(t, "StripAccents")) {
        sv->strip_accents = 1;
    } else if (!strcmp(t, "BertNormalizer")) {
        if (json_object_get(nz, "lowercase"))
            sv->lowercase = truthy(json_object_get(nz, "lowercase"));
        if (json_object_get(nz, "strip_accents"))
            sv->strip_accents = truthy(json_object_get(nz, "strip_accents"));
    } else if (!strcmp(t, "Sequence")) {
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(nz, "normalizers"), i, n)
            parse_normalizer(sv, n, depth + 1);
    }
}

/* x.get(kind, {}).get('id') of a template item; x must be an object. */
static enum lg_status item_id(const json_t *x, const char *kind, json_t **id,
                              struct lg_err *err)
{
    *id = NULL;
    if (!json_is_object(x))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: post_processor template item "
                          "is not an object");
    json_t *k = json_object_get(x, kind);
    if (!k)
        return LG_OK;
    if (!json_is_object(k))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: post_processor %s is not an "
                          "object", kind);
    *id = json_object_get(k, "id");
    return LG_OK;
}

static bool id_is(const json_t *id, const char *s)
{
    return json_is_string(id) && !strcmp(json_string_value(id), s);
}

/* tokenizer_config[key] = v (None when v is NULL), as the reference mutates its copy. */
static void tc_set(json_t *tc, const char *key, json_t **var, json_t *v)
{
    json_object_set(tc, key, v ? v : json_null());
    *var = json_object_get(tc, key);
}

/* The TemplateProcessing heuristics of SpecialVocab (crude by its own admission). */
static enum lg_status template_processing(struct special *sv, const json_t *proc, json_t *tc,
                                          json_t **bos, json_t **cls, json_t **eos,
                                          json_t **sep, struct lg_err *err)
{
    enum lg_status s;
    const json_t *single = json_object_get(proc, "single");
    const json_t *pair = json_object_get(proc, "pair");
    if ((single && !json_is_array(single)) || (pair && !json_is_array(pair)))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: TemplateProcessing single/pair "
                          "is not a list");
    bool tc_ok = truthy(tc);
    json_t *first = NULL, *last = NULL;
    size_t n_single = single ? json_array_size(single) : 0;
    if (n_single > 1) {
        if ((s = item_id(json_array_get(single, 0), "SpecialToken", &first, err)))
            return s;
        if (truthy(first)) {
            if (!tc_ok) {
                *bos = first;
            } else if (!py_eq(first, *bos) && !py_eq(first, *cls)) {
                if (!truthy(*bos))
                    tc_set(tc, "bos_token", bos, first);
                if (!truthy(*cls))
                    tc_set(tc, "cls_token", cls, first);
            }
            set_add(sv, "bos", py_eq(first, *bos) || py_eq(first, *cls), false);
        } else {
            first = NULL;
        }
        if ((s = item_id(json_array_get(single, n_single - 1), "SpecialToken", &last, err)))
            return s;
        if (truthy(last)) {
            if (!tc_ok) {
                *eos = last;
            } else if (!py_eq(last, *eos)) {
                json_t *old = *eos ? json_incref(*eos) : NULL;
                if (!has_type(sv, "eot")) {
                    type_index(sv, "eot", true);
                    json_object_set(tc, "eot_token", old ? old : json_null());
                } else if (!has_type(sv, "eom")) {
                    type_index(sv, "eom", true);
                    json_object_set(tc, "eom_token", old ? old : json_null());
                }
                json_decref(old);
                tc_set(tc, "eos_token", eos, last);
            }
            set_add(sv, "eos", py_eq(last, *eos), false);
        } else {
            last = NULL;
        }
    }
    size_t n_pair = pair ? json_array_size(pair) : 0;
    if (n_pair == 0)
        return LG_OK;
    size_t start = 0, stop = n_pair; /* [start, stop) */
    json_t *p;
    if (first) {
        if ((s = item_id(json_array_get(pair, 0), "SpecialToken", &p, err)))
            return s;
        start = py_eq(p, first) ? 1 : 0;
    }
    if (last) {
        if ((s = item_id(json_array_get(pair, n_pair - 1), "SpecialToken", &p, err)))
            return s;
        stop = py_eq(p, last) ? n_pair - 1 : n_pair;
    }
    if (start >= stop)
        return LG_OK;
    json_t *a, *b;
    if ((s = item_id(json_array_get(pair, start), "Sequence", &a, err)) ||
        (s = item_id(json_array_get(pair, stop - 1), "Sequence", &b, err)))
        return s;
    /* A [middle...] B with at least one middle item */
    if (!id_is(a, "A") || !id_is(b, "B") || stop - start < 3)
        return LG_OK;
    size_t m0 = start + 1, n_mid = stop - start - 2;
    bool add_sep = false;
    json_t *e;
    if ((s = item_id(json_array_get(pair, m0), "SpecialToken", &e, err)))
        return s;
    if (truthy(e) && (py_eq(e, *sep) || py_eq(e, *eos)) && !last)
        add_sep = true;
    if (n_mid == 2) {
        if ((s = item_id(json_array_get(pair, m0 + 1), "SpecialToken", &e, err)))
            return s;
        if (truthy(e) && (py_eq(e, *sep) || py_eq(e, *eos)))
            add_sep = true;
    }
    set_add(sv, "sep", add_sep, false);
    if (add_sep && !truthy(*sep) && tc_ok)
        tc_set(tc, "sep_token", sep, *eos);
    return LG_OK;
}

static enum lg_status post_processor(struct special *sv, const json_t *tok, json_t *tc,
                                     json_t **bos, json_t **cls, json_t **eos, json_t **sep,
                                     struct lg_err *err)
{
    const json_t *pp = json_object_get(tok, "post_processor");
    if (!truthy(pp))
        return LG_OK;
    if (!json_is_object(pp))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: post_processor is not an object");
    const json_t *list = json_object_get(pp, "processors");
    size_t n = list ? json_array_size(list) : 1;
    if (list && !json_is_array(list))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: processors is not a list");
    bool tc_ok = truthy(tc);
    for (size_t i = 0; i < n; i++) {
        const json_t *proc = list ? json_array_get(list, i) : pp;
        if (!json_is_object(proc))
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: processor %zu is not an "
                              "object", i);
        const char *t = json_string_value(json_object_get(proc, "type"));
        if (!t)
            continue;
        if (!strcmp(t, "ByteLevel")) {
            set_add(sv, "bos", false, true);
            set_add(sv, "eos", false, true);
        } else if (!strcmp(t, "RobertaProcessing")) {
            set_add(sv, "bos", true, false);
            set_add(sv, "eos", true, false);
            set_add(sv, "sep", true, false);
            const char *keys[2] = {"cls", "sep"};
            json_t **vars[2] = {cls, sep};
            json_t *dflt[2] = {*bos, *eos};
            for (int k = 0; k < 2; k++) {
                if (truthy(*vars[k]) || !tc_ok)
                    continue;
                const json_t *l = json_object_get(proc, keys[k]);
                json_t *v = dflt[k];
                if (l) {
                    if (!json_is_array(l) || json_array_size(l) == 0)
                        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: "
                                          "RobertaProcessing %s is not a non-empty list",
                                          keys[k]);
                    v = json_array_get(l, 0);
                }
                json_t *hold = v ? json_incref(v) : NULL;
                tc_set(tc, k ? "sep_token" : "cls_token", vars[k], hold);
                json_decref(hold);
            }
        } else if (!strcmp(t, "TemplateProcessing")) {
            enum lg_status s = template_processing(sv, proc, tc, bos, cls, eos, sep, err);
            if (s)
                return s;
        }
    }
    return LG_OK;
}

/* Sanitised template name: [A-Za-z0-9] kept, anything else '_' (per byte, as the reference
 * does per character; names are ASCII in practice). */
static void template_name(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        out[i] = ok ? (char)c : '_';
    }
    out[i] = 0;
}

static enum lg_status read_text(const char *path, char **out, struct lg_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lg_err_set(err, LG_ERR_IO, "%s: cannot open", path);
    char *buf = malloc(MAX_TEMPLATE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_TEMPLATE_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    if (n > MAX_TEMPLATE_BYTES) {
        free(buf);
        return lg_err_set(err, LG_ERR_RANGE, "%s: larger than %d bytes", path,
                          (int)MAX_TEMPLATE_BYTES);
    }
    buf[n] = 0;
    if (strlen(buf) != n) {
        free(buf);
        return lg_err_set(err, LG_ERR_FORMAT, "%s: contains a NUL byte", path);
    }
    *out = buf;
    return LG_OK;
}

/* chat_template.jinja (+ additional_chat_templates/NAME.jinja as a list), else
 * chat_template.json's chat_template. New reference in *out (NULL when none). */
static enum lg_status chat_template_alt(const char *dir, json_t **out, struct lg_err *err)
{
    char path[4096];
    enum lg_status s;
    *out = NULL;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (is_file(path)) {
        char *text;
        if ((s = read_text(path, &text, err)))
            return s;
        json_t *def = json_string(text);
        free(text);
        if (!def)
            return lg_err_set(err, LG_ERR_FORMAT, "chat_template.jinja is not valid UTF-8");
        snprintf(path, sizeof path, "%s/additional_chat_templates", dir);
        DIR *d = opendir(path);
        json_t *list = NULL;
        struct dirent *de;
        while (d && (de = readdir(d))) {
            size_t nl = strlen(de->d_name);
            if (nl <= 6 || strcmp(de->d_name + nl - 6, ".jinja"))
                continue;
            char p2[4600];
            snprintf(p2, sizeof p2, "%s/%s", path, de->d_name);
            if (!is_file(p2))
                continue;
            if (!list) {
                list = json_array();
                json_array_append_new(list, json_pack("{s:s,s:O}", "name", "default",
                                                      "template", def));
            }
            char *more;
            if ((s = read_text(p2, &more, err))) {
                closedir(d);
                json_decref(list);
                json_decref(def);
                return s;
            }
            char stem[256];
            snprintf(stem, sizeof stem, "%.*s", (int)(nl - 6), de->d_name);
            json_t *item = json_pack("{s:s,s:s}", "name", stem, "template", more);
            free(more);
            if (!item) {
                closedir(d);
                json_decref(list);
                json_decref(def);
                return lg_err_set(err, LG_ERR_FORMAT, "%s: not valid UTF-8", p2);
            }
            json_array_append_new(list, item);
        }
        if (d)
            closedir(d);
        if (list) {
            json_decref(def);
            *out = list;
        } else {
            *out = def;
        }
        return LG_OK;
    }
    json_t *cj;
    if ((s = load_json(dir, "chat_template.json", &cj, err)))
        return s;
    if (cj) {
        if (!json_is_object(cj)) {
            json_decref(cj);
            return lg_err_set(err, LG_ERR_FORMAT, "chat_template.json is not an object");
        }
        json_t *t = json_object_get(cj, "chat_template");
        *out = t ? json_incref(t) : NULL;
        json_decref(cj);
    }
    return LG_OK;
}

static enum lg_status write_chat_template(struct lg_gguf_writer *w, const json_t *ct,
                                          struct lg_err *err)
{
    enum lg_status s = LG_OK;
    if (json_is_string(ct))
        return lg_gguf_writer_add_str(w, "tokenizer.chat_template", json_string_value(ct));
    /* A list of {name, template}: named ones get their own key and are listed in
     * tokenizer.chat_templates; "default" becomes tokenizer.chat_template. */
    const char *def = NULL;
    size_t n = json_array_size(ct), n_names = 0;
    char(*names)[128] = calloc(n + 1, sizeof *names);
    const char **name_ptrs = calloc(n + 1, sizeof *name_ptrs);
    if (!names || !name_ptrs) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(ct, i);
        const json_t *jn = json_object_get(c, "name"), *jt = json_object_get(c, "template");
        if (!json_is_object(c) || (jn && !json_is_string(jn)) ||
            (jt && !json_is_null(jt) && !json_is_string(jt))) {
            s = lg_err_set(err, LG_ERR_FORMAT, "chat_template[%zu]: want {name, template} "
                           "strings", i);
            goto done;
        }
        char name[128];
        template_name(jn ? json_string_value(jn) : "", name, sizeof name);
        if (!name[0] || !json_is_string(jt))
            continue;
        if (!strcmp(name, "default")) {
            def = json_string_value(jt);
            continue;
        }
        char key[200];
        snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
        s |= lg_gguf_writer_add_str(w, key, json_string_value(jt));
        size_t k = 0;
        while (k < n_names && strcmp(names[k], name))
            k++;
        if (k == n_names) {
            memcpy(names[n_names], name, sizeof name);
            name_ptrs[n_names] = names[n_names];
            n_names++;
        }
    }
    if (n_names)
        s |= lg_gguf_writer_add_str_arr(w, "tokenizer.chat_templates", name_ptrs, n_names);
    if (def)
        s |= lg_gguf_writer_add_str(w, "tokenizer.chat_template", def);
    if (s != LG_OK)
        s = lg_err_set(err, LG_ERR_NOMEM, "writer: out of memory");
done:
    free(names);
    free(name_ptrs);
    return s;
}

static const char *const ID_KEYS[][2] = {
    {"bos", "tokenizer.ggml.bos_token_id"},      {"eos", "tokenizer.ggml.eos_token_id"},
    {"unk", "tokenizer.ggml.unknown_token_id"},  {"sep", "tokenizer.ggml.seperator_token_id"},
    {"pad", "tokenizer.ggml.padding_token_id"},  {"mask", "tokenizer.ggml.mask_token_id"},
    {"eot", "tokenizer.ggml.eot_token_id"},      {"eom", "tokenizer.ggml.eom_token_id"},
};

enum lg_status lg_convert_special_vocab(struct lg_gguf_writer *w, const char *dir,
                                        int64_t n_vocab, struct lg_err *err)
{
    static const char *const DEFAULT_TYPES[] = {"bos", "eos", "unk", "sep", "pad", "cls",
                                                "mask"};
    struct special sv = {.n_vocab = n_vocab, .lowercase = -1, .strip_accents = -1};
    for (int i = 0; i < 7; i++)
        type_index(&sv, DEFAULT_TYPES[i], true);
    json_t *tok = NULL, *tc = NULL, *cfg = NULL, *ct_alt = NULL;
    enum lg_status s;
    if ((s = load_json(dir, "tokenizer.json", &tok, err)) ||
        (s = load_json(dir, "tokenizer_config.json", &tc, err)) ||
        (s = load_json(dir, "config.json", &cfg, err)))
        goto done;
    if ((tok && !json_is_object(tok)) || (tc && !json_is_object(tc)) ||
        (cfg && !json_is_object(cfg))) {
        s = lg_err_set(err, LG_ERR_FORMAT, "%s is not a JSON object",
                       tok && !json_is_object(tok) ? "tokenizer.json"
                       : tc && !json_is_object(tc) ? "tokenizer_config.json" : "config.json");
        goto done;
    }
    const json_t *added = tok ? json_object_get(tok, "added_tokens") : NULL;
    if (added && !json_is_array(added)) {
        s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: added_tokens is not a list");
        goto done;
    }
    if (tok) {
        const json_t *nz = json_object_get(tok, "normalizer");
        if (truthy(nz))
            parse_normalizer(&sv, nz, 0);
    }
    if (truthy(tok)) {
        json_t *bos = json_object_get(tc, "bos_token"), *cls = json_object_get(tc, "cls_token");
        json_t *eos = json_object_get(tc, "eos_token"), *sep = json_object_get(tc, "sep_token");
        if (!truthy(bos) && truthy(cls) && truthy(tc))
            tc_set(tc, "bos_token", &bos, cls);
        if (!truthy(eos) && truthy(sep) && truthy(tc))
            tc_set(tc, "eos_token", &eos, sep);
        if ((s = post_processor(&sv, tok, tc, &bos, &cls, &eos, &sep, err)))
            goto done;
    }
    if (truthy(tc)) {
        if ((s = chat_template_alt(dir, &ct_alt, err)))
            goto done;
        json_t *ct = json_object_get(tc, "chat_template");
        if (!ct)
            ct = ct_alt;
        if (json_is_string(ct) || json_is_array(ct)) {
            if ((s = write_chat_template(w, ct, err)))
                goto done;
        }
        for (int i = 0; i < sv.n_types; i++) {
            char key[64];
            const char *typ = sv.types[i];
            snprintf(key, sizeof key, "add_%s_token", typ);
            const json_t *a = json_object_get(tc, key);
            if (json_is_boolean(a))
                set_add(&sv, typ, json_is_true(a), true);
            snprintf(key, sizeof key, "%s_token", typ);
            const json_t *e = json_object_get(tc, key);
            const char *content = NULL;
            if (json_is_string(e))
                content = json_string_value(e);
            else if (json_is_object(e))
                content = json_string_value(json_object_get(e, "content"));
            if (!content)
                continue;
            size_t k;
            const json_t *at;
            json_array_foreach(added, k, at) {
                if (!json_is_object(at)) {
                    s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.json: added_tokens[%zu] is "
                                   "not an object", k);
                    goto done;
                }
                const json_t *c = json_object_get(at, "content");
                if (json_is_string(c) && !strcmp(json_string_value(c), content)) {
                    if ((s = set_special(&sv, typ, json_object_get(at, "id"),
                                         "tokenizer.json", err)))
                        goto done;
                    break;
                }
            }
        }
    }
    if (cfg) {
        const json_t *text_cfg = json_object_get(cfg, "text_config");
        for (int i = 0; i < sv.n_types; i++) {
            char key[64];
            snprintf(key, sizeof key, "%s_token_id", sv.types[i]);
            const json_t *v = json_object_get(cfg, key);
            if ((!v || json_is_null(v)) && json_is_object(text_cfg))
                v = json_object_get(text_cfg, key);
            if ((s = set_special(&sv, sv.types[i], v, "config.json", err)))
                goto done;
        }
    }
    for (int k = 0; k < sv.n_ids; k++) {
        int i = sv.id_order[k];
        for (size_t j = 0; j < sizeof ID_KEYS / sizeof ID_KEYS[0]; j++)
            if (!strcmp(ID_KEYS[j][0], sv.types[i]))
                s |= lg_gguf_writer_add_u32(w, ID_KEYS[j][1], (uint32_t)sv.ids[i]);
    }
    for (int i = 0; i < sv.n_types; i++) {
        char key[64];
        const char *typ = sv.types[i];
        if (sv.add[i] < 0 || (strcmp(typ, "bos") && strcmp(typ, "eos") && strcmp(typ, "sep")))
            continue;
        snprintf(key, sizeof key, "tokenizer.ggml.add_%s_token", typ);
        s |= lg_gguf_writer_add_bool(w, key, sv.add[i] == 1);
    }
    if (sv.lowercase >= 0)
        s |= lg_gguf_writer_add_bool(w, "tokenizer.ggml.normalizer.lowercase", sv.lowercase);
    if (sv.strip_accents >= 0)
        s |= lg_gguf_writer_add_bool(w, "tokenizer.ggml.normalizer.strip_accents",
                                     sv.strip_accents);
    if (s != LG_OK)
        s = lg_err_set(err, LG_ERR_NOMEM, "writer: out of memory");
done:
    json_decref(tok);
    json_decref(tc);
    json_decref(cfg);
    json_decref(ct_alt);
    return s;
}

/* ---- SentencePiece vocabulary (Gemma 3) ---- */

/* does_token_look_special() of the reference converter. */
static bool looks_special(const char *t)
{
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") ||
        !strcmp(t, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>"))
        return true;
    /* fullwidth vertical bar U+FF5C = EF BD 9C */
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>"))
        return true;
    return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* Copy of s with every U+2581 (E2 96 81) replaced by a space. */
static char *unescape_spaces(const char *s)
{
    size_t n = strlen(s), j = 0;
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
            o[j++] = ' ';
            i += 3;
        } else {
            o[j++] = s[i++];
        }
    }
    o[j] = 0;
    return o;
}

struct vocab {
    int64_t n;
    const char **toks;
    char **own; /* strings owned per id (replaced entries freed) */
    float *scores;
    int32_t *types;
};

static enum lg_status vocab_set(struct vocab *v, int64_t id, const char *text, bool copy,
                                float score, int32_t type, struct lg_err *err)
{
    char *c = NULL;
    if (copy && !(c = strdup(text)))
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    free(v->own[id]);
    v->own[id] = c;
    v->toks[id] = c ? c : text;
    v->scores[id] = score;
    v->types[id] = type;
    return LG_OK;
}

/* vocab_size as the reference finds it: vocab_size_per_layer_input or vocab_size, text_config
 * over the top level; transformers' default when absent; 0 falls back to the pieces. */
static enum lg_status config_vocab_size(const char *dir, int64_t n_pieces, int64_t *out,
                                        struct lg_err *err)
{
    json_t *cfg;
    enum lg_status s = load_json(dir, "config.json", &cfg, err);
    if (s)
        return s;
    const json_t *tc = json_object_get(cfg, "text_config");
    const json_t *v = NULL;
    const char *keys[2] = {"vocab_size_per_layer_input", "vocab_size"};
    for (int k = 0; k < 2 && !v; k++) {
        v = json_is_object(tc) ? json_object_get(tc, keys[k]) : NULL;
        if (!v)
            v = json_object_get(cfg, keys[k]);
    }
    json_int_t n = GEMMA3_DEFAULT_VOCAB;
    if (v && !json_is_null(v) && (!py_int(v, &n) || n < 0 || n > LG_SPM_MAX_PIECES))
        s = lg_err_set(err, LG_ERR_FORMAT, "config.json: vocab_size must be an integer in "
                       "[0, %d]", (int)LG_SPM_MAX_PIECES);
    else if (v && json_is_null(v))
        n = 0;
    json_decref(cfg);
    *out = n > 0 ? n : n_pieces;
    return s;
}

/* An id key of added_tokens_decoder: plain decimal digits. */
static bool parse_id(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (int64_t)1 << 40)
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

enum lg_status lg_convert_spm_vocab(struct lg_gguf_writer *w, const char *dir,
                                    int64_t *n_vocab_out, struct lg_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    if (!is_file(path))
        return LG_ERR_NOT_FOUND;
    struct lg_spm_model *m = NULL;
    struct vocab v = {0};
    json_t *added = NULL, *tc = NULL;
    char *pad_buf = NULL;
    enum lg_status s = lg_spm_load(path, &m, err);
    if (s)
        return s;
    int64_t n;
    if ((s = config_vocab_size(dir, m->n_pieces, &n, err)))
        goto done;
    v.n = n;
    v.toks = calloc((size_t)n, sizeof *v.toks);
    v.own = calloc((size_t)n, sizeof *v.own);
    v.scores = malloc((size_t)n * sizeof *v.scores);
    v.types = malloc((size_t)n * sizeof *v.types);
    pad_buf = malloc((size_t)n * 16);
    if (!v.toks || !v.own || !v.scores || !v.types || !pad_buf) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        char *p = pad_buf + i * 16;
        snprintf(p, 16, "[PAD%d]", (int)i); /* i < LG_SPM_MAX_PIECES */
        v.toks[i] = p;
        v.scores[i] = -10000.0f;
        v.types[i] = GGUF_TOK_UNUSED;
    }
    for (int64_t i = 0; i < m->n_pieces && i < n; i++) {
        const struct lg_spm_piece *pc = &m->pieces[i];
        int32_t t = pc->type == LG_SPM_UNKNOWN   ? GGUF_TOK_UNKNOWN
                    : pc->type == LG_SPM_CONTROL ? GGUF_TOK_CONTROL
                    : pc->type == LG_SPM_UNUSED  ? GGUF_TOK_UNUSED
                    : pc->type == LG_SPM_BYTE    ? GGUF_TOK_BYTE
                                                 : GGUF_TOK_NORMAL;
        vocab_set(&v, i, pc->text, false, pc->score, t, err);
    }

    if ((s = load_json(dir, "added_tokens.json", &added, err)))
        goto done;
    if (added) {
        const char *key;
        json_t *val;
        if (!json_is_object(added)) {
            s = lg_err_set(err, LG_ERR_FORMAT, "added_tokens.json is not an object");
            goto done;
        }
        json_object_foreach(added, key, val) {
            json_int_t id;
            if (!py_int(val, &id) || id < 0) {
                s = lg_err_set(err, LG_ERR_FORMAT, "added_tokens.json: %.64s: id is not a "
                               "non-negative integer", key);
                goto done;
            }
            if (id >= n)
                continue;
            if ((s = vocab_set(&v, id, key, true, -1000.0f, GGUF_TOK_USER_DEFINED, err)))
                goto done;
        }
    }
    if ((s = load_json(dir, "tokenizer_config.json", &tc, err)))
        goto done;
    if (tc && !json_is_object(tc)) {
        s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer_config.json is not an object");
        goto done;
    }
    const json_t *dec = json_object_get(tc, "added_tokens_decoder");
    if (dec) {
        const char *key;
        json_t *val;
        if (!json_is_object(dec)) {
            s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer_config.json: added_tokens_decoder "
                           "is not an object");
            goto done;
        }
        json_object_foreach((json_t *)dec, key, val) {
            int64_t id;
            const char *content = json_string_value(json_object_get(val, "content"));
            if (!parse_id(key, &id) || !content) {
                s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer_config.json: added_tokens_decoder"
                               "[%.32s]: want a decimal id and a content string", key);
                goto done;
            }
            if (id >= n)
                continue;
            if (truthy(json_object_get(val, "special")) || looks_special(content)) {
                s = vocab_set(&v, id, content, true, -1000.0f, GGUF_TOK_CONTROL, err);
            } else {
                char *u = unescape_spaces(content);
                s = u ? vocab_set(&v, id, u, true, -1000.0f, GGUF_TOK_USER_DEFINED, err)
                      : lg_err_set(err, LG_ERR_NOMEM, "out of memory");
                free(u);
            }
            if (s)
                goto done;
        }
    }

    s |= lg_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    s |= lg_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default");
    s |= lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", v.toks, (uint64_t)n);
    s |= lg_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LG_GGUF_TYPE_FLOAT32, v.scores,
                                (uint64_t)n);
    s |= lg_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LG_GGUF_TYPE_INT32, v.types,
                                (uint64_t)n);
    if (s != LG_OK) {
        s = lg_err_set(err, LG_ERR_NOMEM, "writer: out of memory");
        goto done;
    }
    if ((s = lg_convert_special_vocab(w, dir, n, err)))
        goto done;
    if (lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false) != LG_OK) {
        s = lg_err_set(err, LG_ERR_NOMEM, "writer: out of memory");
        goto done;
    }
    *n_vocab_out = n;
done:
    if (v.own)
        for (int64_t i = 0; i < v.n; i++)
            free(v.own[i]);
    free(v.own);
    free(v.toks);
    free(v.scores);
    free(v.types);
    free(pad_buf);
    json_decref(added);
    json_decref(tc);
    lg_spm_destroy(m);
    return s;
}
