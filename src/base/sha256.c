/* sha256.c: SHA-256 per FIPS 180-4, written from the standard's pseudo-code, plus a path
 * for the x86 SHA extensions (sha256rnds2/msg1/msg2), picked once at first use from cpuid.
 * The scalar code defines "correct"; tests run both on the same vectors.
 *
 * Invariant: c->n_buf < 64 between calls; whole blocks are compressed straight from the
 * caller's buffer, only the tail is copied. Big-endian word order as the standard says. */
#include "base/sha256.h"

#include <stdatomic.h>

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

static void sha_blocks_ref(uint32_t h[8], const uint8_t *p, size_t n_blocks)
{
    for (size_t i = 0; i < n_blocks; i++)
        sha_compress(h, p + 64 * i);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* The SHA extensions keep the state as two vectors, ABEF and CDGH (dword 3 first); each
 * sha256rnds2 does two rounds with the low two dwords of W+K, and after two rounds the old
 * ABEF is the new CDGH, so the two vectors swap roles every call. The message schedule
 * W[t..t+3] = msg2(msg1(W[t-16..], W[t-12..]) + W[t-7..t-4], W[t-4..t-1]). */
__attribute__((target("sha,sse4.1,ssse3"))) static void
sha_blocks_shani(uint32_t h[8], const uint8_t *p, size_t n_blocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i abcd = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i efgh = _mm_loadu_si128((const __m128i *)&h[4]);
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);   /* [F E B A] in dwords 0..3 */
    __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xF0); /* [H G D C] */
    for (size_t b = 0; b < n_blocks; b++, p += 64) {
        __m128i w[16];
        for (int i = 0; i < 4; i++)
            w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        for (int i = 4; i < 16; i++)
            w[i] = _mm_sha256msg2_epu32(
                _mm_add_epi32(_mm_sha256msg1_epu32(w[i - 4], w[i - 3]),
                              _mm_alignr_epi8(w[i - 1], w[i - 2], 4)),
                w[i - 1]);
        __m128i s0 = abef, s1 = cdgh;
        for (int i = 0; i < 16; i++) {
            __m128i m = _mm_add_epi32(w[i], _mm_loadu_si128((const __m128i *)&sha_k[4 * i]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
        }
        abef = _mm_add_epi32(abef, s0);
        cdgh = _mm_add_epi32(cdgh, s1);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);  /* [A B E F] */
    __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xB1);  /* [G H C D] */
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, ghcd, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(ghcd, feba, 8));
}

static bool sha_hw_available(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    bool sha = (b >> 29) & 1u;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool sse41 = (c >> 19) & 1u, ssse3 = (c >> 9) & 1u;
    return sha && sse41 && ssse3;
}
#else
static void sha_blocks_shani(uint32_t h[8], const uint8_t *p, size_t n_blocks)
{
    sha_blocks_ref(h, p, n_blocks);
}

static bool sha_hw_available(void)
{
    return false;
}
#endif

/* 0 = not chosen yet, 1 = reference, 2 = SHA extensions */
static _Atomic int sha_impl;

bool lg_sha256_select(enum lg_sha256_impl impl)
{
    bool hw = sha_hw_available();
    const char *isa = getenv("LG_ISA");
    if (impl == LG_SHA256_IMPL_AUTO)
        impl = hw && !(isa && !strcmp(isa, "ref")) ? LG_SHA256_IMPL_HW : LG_SHA256_IMPL_REF;
    if (impl == LG_SHA256_IMPL_HW && !hw)
        return false;
    atomic_store(&sha_impl, impl == LG_SHA256_IMPL_HW ? 2 : 1);
    return true;
}

static void sha_blocks(uint32_t h[8], const uint8_t *p, size_t n_blocks)
{
    int impl = atomic_load_explicit(&sha_impl, memory_order_relaxed);
    if (impl == 0) {
        lg_sha256_select(LG_SHA256_IMPL_AUTO);
        impl = atomic_load(&sha_impl);
    }
    if (impl == 2)
        sha_blocks_shani(h, p, n_blocks);
    else
        sha_blocks_ref(h, p, n_blocks);
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
        sha_blocks(c->h, c->buf, 1);
        c->n_buf = 0;
    }
    if (n >= 64) {
        size_t n_blocks = n / 64;
        sha_blocks(c->h, p, n_blocks);
        p += 64 * n_blocks;
        n -= 64 * n_blocks;
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
        sha_blocks(c->h, c->buf, 1);
        c->n_buf = 0;
    }
    memset(c->buf + c->n_buf, 0, 56 - c->n_buf);
    for (int i = 0; i < 8; i++)
        c->buf[56 + i] = (uint8_t)(n_bits >> (56 - 8 * i));
    sha_blocks(c->h, c->buf, 1);
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
