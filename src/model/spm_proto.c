/* spm_proto.c: a strict reader for SentencePiece's tokenizer.model (protobuf ModelProto).
 *
 * Only the parts a GGUF conversion needs are decoded (see convert.h): the pieces (text,
 * score, type), trainer_spec.model_type / byte_fallback and normalizer_spec.add_dummy_prefix.
 * The rest of the message is walked, not decoded, so a malformed nested message is still an
 * error, as it is for protobuf's own parser.
 *
 * Wire format (protobuf): a message is a run of fields, each a varint key
 * (field_number << 3 | wire_type) followed by the value:
 *   wire 0 varint (1..10 bytes, 7 bits each, little-endian groups, high bit = more)
 *   wire 1 fixed64, wire 5 fixed32 (little-endian)
 *   wire 2 length-delimited (varint length, then that many bytes: strings, sub-messages)
 *   wire 3/4 groups (obsolete; never used by sentencepiece: refused here)
 *   ModelProto:     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec,
 *                   4 self_test_data, 5 denormalizer_spec
 *   SentencePiece:  1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 * A scalar field given twice takes the last value, as protobuf does.
 * One loop, walk_message, reads every message; a schema per message type names the fields it
 * decodes (with their wire types) and the function that takes their values.
 * Invariant: every read checks the remaining length before touching a byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "model/convert.h"

/* A cursor over one message: [p, end) inside the file that starts at base. */
struct pb {
    const uint8_t *p, *end, *base;
};

enum pb_wire { PB_WIRE_VARINT = 0, PB_WIRE_FIXED64 = 1, PB_WIRE_BYTES = 2, PB_WIRE_FIXED32 = 5 };

/* One value as read off the wire; the member set follows the wire type (fixed64: none). */
union pb_value {
    uint64_t u;      /* PB_WIRE_VARINT */
    uint32_t u32;    /* PB_WIRE_FIXED32 (a float's bits, for scores) */
    struct pb bytes; /* PB_WIRE_BYTES: points into the buffer being parsed */
};

/* Receives each field a schema decodes, in file order, its wire type already checked. */
typedef enum lg_status (*pb_take_fn)(void *ctx, uint32_t field, const union pb_value *v,
                                     struct lg_err *err);

struct pb_field {
    uint32_t field;
    enum pb_wire wire; /* the wire type the field must have */
};

/* What walk_message decodes of one message type: the fields listed go to take; every other
 * field is still read and bounds-checked, then dropped. */
struct pb_schema {
    const char *what; /* the message's name in errors */
    pb_take_fn take;  /* NULL when no field is decoded */
    int n_fields;
    struct pb_field fields[5];
};

static size_t off(const struct pb *r)
{
    return (size_t)(r->p - r->base);
}

static enum lg_status rd_varint(struct pb *r, uint64_t *v, const char *what, struct lg_err *err)
{
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end)
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: truncated varint at "
                              "byte %zu", what, off(r));
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: varint overflows 64 "
                              "bits at byte %zu", what, off(r) - 1);
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return LG_OK;
        }
    }
    return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: varint longer than 10 bytes "
                      "at byte %zu", what, off(r));
}

/* Reads a field key; *field > 0, *wire is one of enum pb_wire. */
static enum lg_status rd_key(struct pb *r, uint32_t *field, uint32_t *wire, const char *what,
                             struct lg_err *err)
{
    uint64_t k;
    size_t at = off(r);
    enum lg_status s = rd_varint(r, &k, what, err);
    if (s)
        return s;
    uint64_t f = k >> 3;
    *wire = (uint32_t)(k & 7);
    if (f == 0 || f > 536870911u)
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: bad field number %llu at "
                          "byte %zu", what, (unsigned long long)f, at);
    if (*wire == 3 || *wire == 4)
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: group field %llu at byte "
                          "%zu (not used by sentencepiece)", what, (unsigned long long)f, at);
    if (*wire > 5)
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: bad wire type %u at byte "
                          "%zu", what, *wire, at);
    *field = (uint32_t)f;
    return LG_OK;
}

/* The bytes of a length-delimited value, as a sub-cursor. */
static enum lg_status rd_bytes(struct pb *r, struct pb *sub, const char *what,
                               struct lg_err *err)
{
    uint64_t len;
    enum lg_status s = rd_varint(r, &len, what, err);
    if (s)
        return s;
    if (len > (uint64_t)(r->end - r->p))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: length %llu at byte %zu "
                          "runs past the end (%zu bytes left)", what, (unsigned long long)len,
                          off(r), (size_t)(r->end - r->p));
    sub->base = r->base;
    sub->p = r->p;
    sub->end = r->p + len;
    r->p += len;
    return LG_OK;
}

/* One value of the given wire type (from rd_key). A fixed64 is only skipped: sentencepiece
 * has no field of that type that we decode. */
static enum lg_status rd_value(struct pb *r, uint32_t wire, union pb_value *v, const char *what,
                               struct lg_err *err)
{
    switch (wire) {
    case PB_WIRE_VARINT:
        return rd_varint(r, &v->u, what, err);
    case PB_WIRE_FIXED64:
        if (r->end - r->p < 8)
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: truncated fixed64 at "
                              "byte %zu", what, off(r));
        r->p += 8;
        return LG_OK;
    case PB_WIRE_BYTES:
        return rd_bytes(r, &v->bytes, what, err);
    default:
        if (r->end - r->p < 4)
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s: truncated fixed32 at "
                              "byte %zu", what, off(r));
        v->u32 = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
        r->p += 4;
        return LG_OK;
    }
}

/* The one loop over a message's fields: every value is read and bounds-checked; a field the
 * schema names must have the schema's wire type and is handed to schema->take. */
static enum lg_status walk_message(struct pb *r, const struct pb_schema *sc, void *ctx,
                                   struct lg_err *err)
{
    while (r->p < r->end) {
        uint32_t f = 0, wire = 0;
        union pb_value v;
        enum lg_status s = rd_key(r, &f, &wire, sc->what, err);
        if (s)
            return s;
        int i = 0;
        while (i < sc->n_fields && sc->fields[i].field != f)
            i++;
        bool decoded = i < sc->n_fields;
        if (decoded && wire != (uint32_t)sc->fields[i].wire)
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: %s field %u has wire type "
                              "%u, want %u (before byte %zu)", sc->what, f, wire,
                              (uint32_t)sc->fields[i].wire, off(r));
        if ((s = rd_value(r, wire, &v, sc->what, err)))
            return s;
        if (decoded && (s = sc->take(ctx, f, &v, err)))
            return s;
    }
    return LG_OK;
}

/* ---- the messages we decode, each a take function and its schema ---- */

/* TrainerSpec: 3 model_type (1 unigram .. 4 char), 35 byte_fallback. ctx: the model. */
static enum lg_status take_trainer(void *ctx, uint32_t field, const union pb_value *v,
                                   struct lg_err *err)
{
    struct lg_spm_model *m = ctx;
    if (field == 35) {
        m->byte_fallback = v->u != 0;
        return LG_OK;
    }
    if (v->u < 1 || v->u > 4)
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: trainer_spec.model_type %llu "
                          "is not 1..4", (unsigned long long)v->u);
    m->model_type = (int32_t)v->u;
    return LG_OK;
}

static const struct pb_schema TRAINER_SPEC = {
    .what = "trainer_spec", .take = take_trainer, .n_fields = 2,
    .fields = {{3, PB_WIRE_VARINT}, {35, PB_WIRE_VARINT}},
};

/* NormalizerSpec: 3 add_dummy_prefix. ctx: the model. */
static enum lg_status take_normalizer(void *ctx, uint32_t field, const union pb_value *v,
                                      struct lg_err *err)
{
    struct lg_spm_model *m = ctx;
    m->add_dummy_prefix = v->u != 0;
    return LG_OK;
}

static const struct pb_schema NORMALIZER_SPEC = {
    .what = "normalizer_spec", .take = take_normalizer, .n_fields = 1,
    .fields = {{3, PB_WIRE_VARINT}},
};

/* Messages walked only to check that they are well formed. */
static const struct pb_schema SELF_TEST_DATA = {.what = "self_test_data"};
static const struct pb_schema DENORMALIZER_SPEC = {.what = "denormalizer_spec"};

/* SentencePiece: 1 piece, 2 score, 3 type. */
struct piece_read {
    struct lg_spm_piece *pc;
    int32_t id;
    struct pb text; /* the last piece field seen; points into the buffer */
    bool have_text;
};

static enum lg_status take_piece(void *ctx, uint32_t field, const union pb_value *v,
                                 struct lg_err *err)
{
    struct piece_read *pr = ctx;
    if (field == 1) {
        pr->text = v->bytes;
        pr->have_text = true;
    } else if (field == 2) {
        memcpy(&pr->pc->score, &v->u32, sizeof v->u32);
    } else {
        if (v->u < LG_SPM_NORMAL || v->u > LG_SPM_BYTE)
            return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: piece %d: type %llu is "
                              "not 1..6", (int)pr->id, (unsigned long long)v->u);
        pr->pc->type = (int32_t)v->u;
    }
    return LG_OK;
}

static const struct pb_schema PIECE = {
    .what = "pieces", .take = take_piece, .n_fields = 3,
    .fields = {{1, PB_WIRE_BYTES}, {2, PB_WIRE_FIXED32}, {3, PB_WIRE_VARINT}},
};

/* Strict UTF-8 (no overlong forms, no surrogates, at most U+10FFFF); NUL is refused too,
 * since GGUF token strings are handled as C strings on the way in. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

/* One SentencePiece sub-message; the text is copied to *text_at (advanced). */
static enum lg_status parse_piece(struct pb *r, int32_t id, struct lg_spm_piece *pc,
                                  char **text_at, struct lg_err *err)
{
    struct piece_read pr = {.pc = pc, .id = id};
    pc->score = 0.0f;
    pc->type = LG_SPM_NORMAL;
    enum lg_status s = walk_message(r, &PIECE, &pr, err);
    if (s)
        return s;
    size_t len = pr.have_text ? (size_t)(pr.text.end - pr.text.p) : 0;
    if (len == 0)
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: piece %d is empty", (int)id);
    if (!utf8_ok(pr.text.p, len))
        return lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: piece %d is not valid UTF-8 "
                          "(or contains NUL)", (int)id);
    memcpy(*text_at, pr.text.p, len);
    (*text_at)[len] = 0;
    pc->text = *text_at;
    pc->len = (uint32_t)len;
    *text_at += len + 1;
    return LG_OK;
}

/* ModelProto, walked twice: pass 1 checks the whole file, decodes the specs and counts the
 * pieces (1 pieces, 2 trainer_spec, 3 normalizer_spec, 4 self_test_data, 5
 * denormalizer_spec); pass 2, once the arrays are allocated, decodes the pieces. */
struct model_read {
    struct lg_spm_model *m;
    uint64_t n_pieces; /* pass 1: counted; pass 2: read so far */
    char *text_at;     /* pass 2: where the next piece's text goes in m->text_buf */
};

static enum lg_status take_model_scan(void *ctx, uint32_t field, const union pb_value *v,
                                      struct lg_err *err)
{
    static const struct pb_schema *const SUB[] = {NULL, NULL, &TRAINER_SPEC, &NORMALIZER_SPEC,
                                                  &SELF_TEST_DATA, &DENORMALIZER_SPEC};
    struct model_read *mr = ctx;
    if (field == 1) {
        mr->n_pieces++;
        return LG_OK;
    }
    struct pb sub = v->bytes;
    return walk_message(&sub, SUB[field], mr->m, err);
}

static const struct pb_schema MODEL_SCAN = {
    .what = "ModelProto", .take = take_model_scan, .n_fields = 5,
    .fields = {{1, PB_WIRE_BYTES}, {2, PB_WIRE_BYTES}, {3, PB_WIRE_BYTES}, {4, PB_WIRE_BYTES},
               {5, PB_WIRE_BYTES}},
};

static enum lg_status take_model_piece(void *ctx, uint32_t field, const union pb_value *v,
                                       struct lg_err *err)
{
    struct model_read *mr = ctx;
    struct pb sub = v->bytes;
    int32_t id = (int32_t)mr->n_pieces++; /* < m->n_pieces: pass 1 counted the same fields */
    return parse_piece(&sub, id, &mr->m->pieces[id], &mr->text_at, err);
}

static const struct pb_schema MODEL_PIECES = {
    .what = "ModelProto", .take = take_model_piece, .n_fields = 1,
    .fields = {{1, PB_WIRE_BYTES}},
};

/* <0xHH> with upper-case hex, as sentencepiece spells byte pieces; -1 otherwise. */
static int byte_piece_value(const struct lg_spm_piece *pc)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *t = pc->text;
    if (pc->len != 6 || memcmp(t, "<0x", 3) || t[5] != '>')
        return -1;
    const char *a = memchr(hex, t[3], 16), *b = memchr(hex, t[4], 16);
    if (!a || !b)
        return -1;
    return (int)((a - hex) * 16 + (b - hex));
}

/* UNKNOWN, CONTROL and BYTE pieces: a namespace of their own for duplicate checks. */
static bool is_reserved(int32_t type)
{
    return type == LG_SPM_UNKNOWN || type == LG_SPM_CONTROL || type == LG_SPM_BYTE;
}

static uint64_t hash_piece(const struct lg_spm_piece *pc, bool reserved)
{
    uint64_t h = reserved ? 0x9e3779b97f4a7c15ull : 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < pc->len; i++)
        h = (h ^ (uint8_t)pc->text[i]) * 0x100000001b3ull;
    return h;
}

/* sentencepiece's load-time checks (ModelInterface): see convert.h. */
static enum lg_status check_model(const struct lg_spm_model *m, struct lg_err *err)
{
    enum lg_status s = LG_OK;
    size_t cap = 16;
    while (cap < 2 * (size_t)m->n_pieces)
        cap *= 2;
    int32_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cap; i++)
        slots[i] = -1;
    bool bytes_seen[256] = {false};
    int32_t unk = -1;
    for (int32_t i = 0; i < m->n_pieces; i++) {
        const struct lg_spm_piece *pc = &m->pieces[i];
        /* NORMAL, USER_DEFINED and UNUSED share one namespace, the reserved types another. */
        bool reserved = is_reserved(pc->type);
        size_t h = (size_t)hash_piece(pc, reserved) & (cap - 1);
        for (;; h = (h + 1) & (cap - 1)) {
            int32_t j = slots[h];
            if (j < 0) {
                slots[h] = i;
                break;
            }
            const struct lg_spm_piece *o = &m->pieces[j];
            if (is_reserved(o->type) == reserved && o->len == pc->len && !memcmp(o->text, pc->text, pc->len)) {
                s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: piece %d \"%.64s\" is "
                               "already defined as piece %d", (int)i, pc->text, (int)j);
                goto done;
            }
        }
        if (pc->type == LG_SPM_UNKNOWN) {
            if (unk >= 0) {
                s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: pieces %d and %d are both "
                               "UNKNOWN", (int)unk, (int)i);
                goto done;
            }
            unk = i;
        }
        if (pc->type == LG_SPM_BYTE) {
            int b = byte_piece_value(pc);
            if (!m->byte_fallback || b < 0) {
                s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: byte piece %d \"%.64s\" %s",
                               (int)i, pc->text,
                               b < 0 ? "is not <0xHH>" : "but byte_fallback is off");
                goto done;
            }
            bytes_seen[b] = true;
        }
    }
    if (unk < 0) {
        s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: no UNKNOWN piece");
        goto done;
    }
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (!bytes_seen[b]) {
                s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: byte_fallback is on but "
                               "there is no <0x%02X> piece", b);
                goto done;
            }
done:
    free(slots);
    return s;
}

enum lg_status lg_spm_parse(const uint8_t *buf, size_t n, struct lg_spm_model **out,
                            struct lg_err *err)
{
    *out = NULL;
    enum lg_status s;
    struct lg_spm_model *m = calloc(1, sizeof *m);
    if (!m)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    m->model_type = 1;
    m->add_dummy_prefix = true;

    /* Pass 1: validate the whole file, decode the specs, count the pieces. */
    struct model_read mr = {.m = m};
    struct pb r = {buf, buf + n, buf};
    if ((s = walk_message(&r, &MODEL_SCAN, &mr, err)))
        goto fail;
    uint64_t n_pieces = mr.n_pieces;
    if (n_pieces == 0) {
        s = lg_err_set(err, LG_ERR_FORMAT, "tokenizer.model: no pieces");
        goto fail;
    }
    if (n_pieces > LG_SPM_MAX_PIECES) {
        s = lg_err_set(err, LG_ERR_RANGE, "tokenizer.model: %llu pieces (limit %d)",
                       (unsigned long long)n_pieces, (int)LG_SPM_MAX_PIECES);
        goto fail;
    }
    m->n_pieces = (int32_t)n_pieces;
    m->pieces = calloc((size_t)n_pieces, sizeof *m->pieces);
    /* Texts are sub-ranges of buf, so n bytes plus one NUL each is enough. */
    m->text_buf = malloc(n + (size_t)n_pieces);
    if (!m->pieces || !m->text_buf) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto fail;
    }

    /* Pass 2: the pieces (the structure is known to be sound now). */
    r.p = buf;
    mr.n_pieces = 0;
    mr.text_at = m->text_buf;
    if ((s = walk_message(&r, &MODEL_PIECES, &mr, err)))
        goto fail;
    if ((s = check_model(m, err)))
        goto fail;
    *out = m;
    return LG_OK;
fail:
    lg_spm_destroy(m);
    return s;
}

enum lg_status lg_spm_load(const char *path, struct lg_spm_model **out, struct lg_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lg_err_set(err, LG_ERR_IO, "%s: cannot open", path);
    enum lg_status s = LG_OK;
    uint8_t *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        s = lg_err_set(err, LG_ERR_IO, "%s: cannot read", path);
        goto done;
    }
    if (size > LG_SPM_MAX_FILE_BYTES) {
        s = lg_err_set(err, LG_ERR_RANGE, "%s: %ld bytes (limit %d)", path, size,
                       (int)LG_SPM_MAX_FILE_BYTES);
        goto done;
    }
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) {
        s = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        s = lg_err_set(err, LG_ERR_IO, "%s: short read", path);
        goto done;
    }
    s = lg_spm_parse(buf, (size_t)size, out, err);
done:
    free(buf);
    fclose(f);
    return s;
}

void lg_spm_destroy(struct lg_spm_model *m)
{
    if (!m)
        return;
    free(m->pieces);
    free(m->text_buf);
    free(m);
}
