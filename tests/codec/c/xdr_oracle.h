/*
 * The shared part of the C oracles (driver.c for tests/codec's rich.x, schema_driver.c for
 * tests/realschemas' real .x files): libtirpc codecs of rpcgen-generated types behind a
 * batch protocol on stdin/stdout, every framing integer a big-endian u32.
 *
 *   roundtrip   request  = name_len, name, data_len, data
 *               response = status, consumed, out_len, out
 *               status 0: xdr_T decoded the data (consuming `consumed` bytes) and
 *               re-encoded it as `out`; 1: decode failed; 2: re-encode failed.
 *   generate SEED COUNT
 *               no input; for every type with a filler, COUNT pseudo-random values
 *               (xorshift64 seeded with SEED) are filled in C and encoded;
 *               response = name_len, name, data_len, data per value.
 *
 * Include after the rpcgen header(s); the includer defines its table of struct type_entry.
 */
#ifndef XDR_ORACLE_H
#define XDR_ORACLE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rpc/rpc.h>

/* ---- framing ---------------------------------------------------------------------- */

static int read_exact(void *buf, size_t n)
{
    return n == 0 || fread(buf, 1, n, stdin) == n;
}

static int read_u32(uint32_t *v)
{
    unsigned char b[4];
    if (!read_exact(b, 4))
        return 0;
    *v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
    return 1;
}

static void write_u32(uint32_t v)
{
    unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
    fwrite(b, 1, 4, stdout);
}

static void write_blob(const void *p, uint32_t n)
{
    write_u32(n);
    fwrite(p, 1, n, stdout);
}

static void die(const char *why)
{
    fprintf(stderr, "driver: %s\n", why);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- deterministic pseudo-random values ------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint32_t below(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }

/* Boundaries come up often: they are where encoders go wrong. */
static int32_t r_i32(void)
{
    static const int32_t edges[] = {INT32_MIN, INT32_MAX, 0, -1, 1};
    return below(3) == 0 ? edges[below(5)] : (int32_t)rnd();
}

static uint32_t r_u32(void)
{
    static const uint32_t edges[] = {0, 1, 0x7fffffffU, 0x80000000U, 0xffffffffU};
    return below(3) == 0 ? edges[below(5)] : (uint32_t)rnd();
}

static int64_t r_i64(void)
{
    static const int64_t edges[] = {INT64_MIN, INT64_MAX, 0, -1, ((int64_t)1) << 32};
    return below(3) == 0 ? edges[below(5)] : (int64_t)rnd();
}

static uint64_t r_u64(void)
{
    static const uint64_t edges[] = {0, 1, 0xffffffffULL, 0x100000000ULL, UINT64_MAX};
    return below(3) == 0 ? edges[below(5)] : rnd();
}

/* Any bit pattern but NaN (a NaN's payload is not a value to compare). */
static float r_float(void)
{
    uint32_t bits = (uint32_t)rnd();
    float f;
    if ((bits & 0x7f800000U) == 0x7f800000U)
        bits &= 0xff800000U; /* -> +/-infinity */
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double r_double(void)
{
    uint64_t bits = rnd();
    double d;
    if ((bits & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL)
        bits &= 0xfff0000000000000ULL;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Valid UTF-8 of at most max_bytes bytes, mixing 1- to 4-byte sequences. */
static char *r_string(uint32_t max_bytes)
{
    static const char *pieces[] = {"a", "Z", "0", " ", "~", "\xc3\xa9", "\xe2\x82\xac",
                                   "\xf0\x9f\x98\x80", "\x7f", "\x01"};
    uint32_t want = below(3) == 0 ? max_bytes : below(max_bytes + 1);
    char *s = xmalloc(want + 1);
    uint32_t n = 0;
    for (;;) {
        const char *p = pieces[below(10)];
        size_t len = strlen(p);
        if (n + len > want) {
            memset(s + n, 'x', want - n); /* reach exactly `want` bytes */
            n = want;
            break;
        }
        memcpy(s + n, p, len);
        n += (uint32_t)len;
    }
    s[n] = '\0';
    return s;
}

static void r_bytes(char *dst, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        dst[k] = (char)rnd();
}

static char *r_opaque(uint32_t max, u_int *len)
{
    *len = below(4) == 0 ? max : below(max + 1);
    char *p = xmalloc(*len);
    r_bytes(p, *len);
    return p;
}

#define ALLOC_ARRAY(field, elem_t, max)                                                    \
    do {                                                                                   \
        (field##_len) = below((max) + 1);                                                  \
        (field##_val) = xmalloc(sizeof(elem_t) * (field##_len));                           \
    } while (0)

/* ---- type table ------------------------------------------------------------------- */

typedef bool_t (*codec_fn)(XDR *, void *);
typedef void (*fill_fn)(void *);

struct type_entry {
    const char *name;
    codec_fn codec;
    fill_fn fill; /* NULL: the driver cannot make values of this type itself */
    size_t size;  /* sizeof the C type */
};

/* A codec_fn for rpcgen's xdr_T (whose second parameter is a T *). */
#define CODEC(T) \
    static bool_t codec_##T(XDR *x, void *o) { return xdr_##T(x, o); }

static size_t max_object_size(const struct type_entry *types, size_t n)
{
    size_t size = 1;
    for (size_t k = 0; k < n; k++)
        if (types[k].size > size)
            size = types[k].size;
    return size;
}

static const struct type_entry *lookup(const struct type_entry *types, size_t n,
                                       const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(types[k].name, name) == 0)
            return &types[k];
    return NULL;
}

static void release(const struct type_entry *t, void *obj)
{
    XDR x;
    memset(&x, 0, sizeof x);
    x.x_op = XDR_FREE;
    t->codec(&x, obj);
    memset(obj, 0, t->size);
}

/* Encodes obj into a fresh buffer; returns its length or -1. */
static long encode(const struct type_entry *t, void *obj, char **out)
{
    u_long size = xdr_sizeof((xdrproc_t)t->codec, obj);
    XDR x;
    *out = xmalloc(size);
    xdrmem_create(&x, *out, (u_int)size, XDR_ENCODE);
    long n = t->codec(&x, obj) ? (long)xdr_getpos(&x) : -1;
    xdr_destroy(&x);
    return n;
}

/* Reads one request; returns 0 at a clean end of input. */
static int read_request(const struct type_entry *types, size_t ntypes,
                        const struct type_entry **t, char **data, uint32_t *len)
{
    uint32_t name_len;
    char name[256];
    if (!read_u32(&name_len))
        return 0;
    if (name_len >= sizeof name || !read_exact(name, name_len))
        die("bad request name");
    name[name_len] = '\0';
    if (!(*t = lookup(types, ntypes, name))) {
        fprintf(stderr, "driver: unknown type name %s\n", name);
        exit(2);
    }
    if (!read_u32(len))
        die("truncated request");
    *data = xmalloc(*len);
    if (!read_exact(*data, *len))
        die("truncated request data");
    return 1;
}

static int run_roundtrip(const struct type_entry *types, size_t ntypes)
{
    void *obj = calloc(1, max_object_size(types, ntypes));
    const struct type_entry *t;
    char *data;
    uint32_t len;
    if (!obj)
        die("out of memory");
    while (read_request(types, ntypes, &t, &data, &len)) {
        XDR x;
        xdrmem_create(&x, data, len, XDR_DECODE);
        int ok = t->codec(&x, obj);
        uint32_t consumed = xdr_getpos(&x);
        xdr_destroy(&x);
        char *out = NULL;
        long n = ok ? encode(t, obj, &out) : 0;
        write_u32(!ok ? 1 : n < 0 ? 2 : 0);
        write_u32(consumed);
        write_blob(out, n < 0 ? 0 : (uint32_t)n);
        free(out);
        free(data);
        release(t, obj);
    }
    free(obj);
    return 0;
}

static int run_generate(const struct type_entry *types, size_t ntypes, uint64_t seed,
                        unsigned count)
{
    void *obj = calloc(1, max_object_size(types, ntypes));
    rng_state = seed ? seed : 1;
    for (size_t k = 0; k < ntypes; k++) {
        const struct type_entry *t = &types[k];
        if (!t->fill)
            continue;
        for (unsigned n = 0; n < count; n++) {
            char *out;
            t->fill(obj);
            long len = encode(t, obj, &out);
            if (len < 0)
                die("encoding a generated value failed");
            write_blob(t->name, (uint32_t)strlen(t->name));
            write_blob(out, (uint32_t)len);
            free(out);
            release(t, obj);
        }
    }
    free(obj);
    return 0;
}

#endif
