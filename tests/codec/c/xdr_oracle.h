/*
 * The shared part of the C oracles (driver.c for tests/codec's rich.x, schema_driver.c for
 * tests/realschemas' real .x files): libtirpc codecs of rpcgen-generated types behind a
 * batch protocol on stdin/stdout, every framing integer a big-endian u32.
 *
 *   roundtrip   request  = name_len, name, data_len, data
 *               response = status, consumed, out_len, out
 *               status 0: xdr_T decoded the data (consuming `consumed` bytes) and
 *               re-encoded it as `out`; 1: decode failed; 2: re-encode failed.
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

#endif
