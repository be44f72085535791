/* sha256.c: SHA-256 per FIPS 180-4, written from the standard's pseudo-code.
 *
 * Invariant: c->n_buf < 64 between calls; whole blocks are compressed straight from the
 * caller's buffer, only the tail is copied. Big-endian word order as the standard says. */
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static inline uint32_t sha_rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void sha_compress(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = sha_rotr(w[t - 15], 7) ^ sha_rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = sha_rotr(w[t - 2], 17) ^ sha_rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = sha_rotr(e, 6) ^ sha_rotr(e, 11) ^ sha_rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + sha_k[t] + w[t];
        uint32_t S0 = sha_rotr(a, 2) ^ sha_rotr(a, 13) ^ sha_rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void lg_sha256_init(struct lg_sha256 *c)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->n_bytes = 0;
    c->n_buf = 0;
}

void lg_sha256_update(struct lg_sha256 *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    c->n_bytes += n;
    if (c->n_buf) {
        size_t take = 64 - c->n_buf;
        if (take > n)
            take = n;
        memcpy(c->buf + c->n_buf, p, take);
        c->n_buf += (uint32_t)take;
        p += take;
        n -= take;
        if (c->n_buf < 64)
            return;
        sha_compress(c->h, c->buf);
        c->n_buf = 0;
    }
    while (n >= 64) {
        sha_compress(c->h, p);
        p += 64;
        n -= 64;
    }
    if (n) {
        memcpy(c->buf, p, n);
        c->n_buf = (uint32_t)n;
    }
}

void lg_sha256_final(struct lg_sha256 *c, uint8_t out[LG_SHA256_BYTES])
{
    uint64_t n_bits = c->n_bytes * 8;
    c->buf[c->n_buf++] = 0x80;
    if (c->n_buf > 56) {
        memset(c->buf + c->n_buf, 0, 64 - c->n_buf);
        sha_compress(c->h, c->buf);
        c->n_buf = 0;
    }
    memset(c->buf + c->n_buf, 0, 56 - c->n_buf);
    for (int i = 0; i < 8; i++)
        c->buf[56 + i] = (uint8_t)(n_bits >> (56 - 8 * i));
    sha_compress(c->h, c->buf);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
    c->n_buf = 0;
}

void lg_sha256(const void *data, size_t n, uint8_t out[LG_SHA256_BYTES])
{
    struct lg_sha256 c;
    lg_sha256_init(&c);
    lg_sha256_update(&c, data, n);
    lg_sha256_final(&c, out);
}

void lg_sha256_hex(const uint8_t digest[LG_SHA256_BYTES], char hex[LG_SHA256_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < LG_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[LG_SHA256_HEX_LEN] = '\0';
}

enum lg_status lg_sha256_file(const char *path, char hex[LG_SHA256_HEX_LEN + 1],
                              uint64_t *n_bytes, struct lg_err *err)
{
    enum { BUF_BYTES = 1 << 20 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lg_err_set(err, LG_ERR_IO, "%s: %s", path, strerror(errno));
    uint8_t *buf = malloc(BUF_BYTES);
    if (!buf) {
        close(fd);
        return lg_err_set(err, LG_ERR_NOMEM, "sha256: no memory for read buffer");
    }
    struct lg_sha256 c;
    lg_sha256_init(&c);
    enum lg_status st = LG_OK;
    for (;;) {
        ssize_t r = read(fd, buf, BUF_BYTES);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = lg_err_set(err, LG_ERR_IO, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        lg_sha256_update(&c, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    if (st != LG_OK)
        return st;
    if (n_bytes)
        *n_bytes = c.n_bytes;
    uint8_t d[LG_SHA256_BYTES];
    lg_sha256_final(&c, d);
    lg_sha256_hex(d, hex);
    return LG_OK;
}
