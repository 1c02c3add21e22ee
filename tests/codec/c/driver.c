/*
 * C oracle for tests/codec/test_differential_rpcgen.py: libtirpc + the rpcgen output of
 * tests/codec/schemas/rich.x. One process handles a whole batch of records, read from
 * stdin and answered on stdout; every integer in the framing is a big-endian u32.
 *
 *   driver roundtrip   as described in xdr_oracle.h (shared with schema_driver.c).
 *   driver describe    request as for roundtrip; response = status, text_len, text where
 *                      text is "key=value\n" lines of selected decoded fields.
 *   driver generate SEED COUNT
 *                      no input; for every type, COUNT pseudo-random values (xorshift64
 *                      seeded with SEED) are filled in C and encoded;
 *                      response = name_len, name, data_len, data per value.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rich.h"
#include "xdr_oracle.h"

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

/* ---- fillers, one per type -------------------------------------------------------- */

static const rs_color COLORS[] = {RS_RED, RS_GREEN, RS_BLUE, RS_INFRARED, RS_ULTRAVIOLET};
/* rs_by_enum has no arm for RS_ULTRAVIOLET: its discriminant uses the first four only */

static void fill_rs_point(rs_point *p)
{
    p->x = r_i32();
    p->y = r_i32();
}

static void fill_rs_limits(rs_limits *p)
{
    p->lo = r_i64();
    p->hi = r_u64();
    p->ratio = r_float();
    p->precise = r_double();
}

static void fill_rs_by_int(rs_by_int *p)
{
    static const int codes[] = {0, 1, 2, -3};
    p->code = below(5) == 0 ? r_i32() : codes[below(4)];
    switch (p->code) {
    case 0:
        break;
    case 1:
    case 2:
        p->rs_by_int_u.small = r_i32();
        break;
    case -3:
        p->rs_by_int_u.text = r_string(16);
        break;
    default:
        p->rs_by_int_u.other = r_u64();
    }
}

static void fill_rs_by_unsigned(rs_by_unsigned *p)
{
    static const u_int kinds[] = {0, 0x10, RS_MAX_POINTS, 0xffffffffU};
    p->kind = kinds[below(4)];
    switch (p->kind) {
    case 0:
        fill_rs_point(&p->rs_by_unsigned_u.pt);
        break;
    case 0x10:
        p->rs_by_unsigned_u.blob.blob_val = r_opaque(8, &p->rs_by_unsigned_u.blob.blob_len);
        break;
    case RS_MAX_POINTS:
        fill_rs_point(&p->rs_by_unsigned_u.pts[0]);
        fill_rs_point(&p->rs_by_unsigned_u.pts[1]);
        break;
    }
}

static void fill_rs_by_enum(rs_by_enum *p)
{
    p->color = COLORS[below(4)];
    switch (p->color) {
    case RS_RED:
    case RS_GREEN:
        p->rs_by_enum_u.label = r_string(RS_MAX_NAME);
        break;
    case RS_INFRARED:
        p->rs_by_enum_u.weight = r_double();
        break;
    default:
        break;
    }
}

static void fill_rs_by_bool(rs_by_bool *p)
{
    p->present = below(2);
    if (p->present)
        fill_rs_limits(&p->rs_by_bool_u.limits);
}

static rs_list r_list(void)
{
    rs_list head = NULL;
    for (uint32_t n = below(6); n > 0; n--) {
        rs_node *node = xmalloc(sizeof *node);
        node->value = r_i32();
        node->tag = r_string(RS_MAX_NAME);
        node->next = head;
        head = node;
    }
    return head;
}

static void fill_rs_node(rs_node *p)
{
    p->value = r_i32();
    p->tag = r_string(RS_MAX_NAME);
    p->next = r_list();
}

static void fill_rs_list(rs_list *p) { *p = r_list(); }

static void fill_rs_everything(rs_everything *p)
{
    p->i = r_i32();
    p->u = r_u32();
    p->bare = r_u32();
    p->h = r_i64();
    p->uh = r_u64();
    p->flag = below(2);
    p->f = r_float();
    p->d = r_double();
    p->color = COLORS[below(5)];
    p->temp = r_i32();
    r_bytes(p->fixed_blob, 5);
    p->var_blob.var_blob_val = r_opaque(RS_MAX_BLOB, &p->var_blob.var_blob_len);
    p->any_blob.any_blob_val = r_opaque(300, &p->any_blob.any_blob_len);
    p->name = r_string(RS_MAX_NAME);
    p->anything = r_string(300);
    r_bytes(p->uuid, RS_UUID_LEN);
    p->alias = r_string(RS_MAX_NAME);
    p->big = r_u64();
    fill_rs_point(&p->corners[0]);
    fill_rs_point(&p->corners[1]);
    ALLOC_ARRAY(p->path.path, rs_point, RS_MAX_POINTS);
    for (u_int k = 0; k < p->path.path_len; k++)
        fill_rs_point(&p->path.path_val[k]);
    ALLOC_ARRAY(p->counts.counts, int, 40);
    for (u_int k = 0; k < p->counts.counts_len; k++)
        p->counts.counts_val[k] = r_i32();
    for (int k = 0; k < 3; k++)
        p->palette[k] = COLORS[below(5)];
    ALLOC_ARRAY(p->hypers.hypers, quad_t, 4);
    for (u_int k = 0; k < p->hypers.hypers_len; k++)
        p->hypers.hypers_val[k] = r_i64();
    ALLOC_ARRAY(p->names.names, rs_name, 4);
    for (u_int k = 0; k < p->names.names_len; k++)
        p->names.names_val[k] = r_string(RS_MAX_NAME);
    if (below(2)) {
        p->maybe_point = xmalloc(sizeof *p->maybe_point);
        fill_rs_point(p->maybe_point);
    }
    if (below(2)) {
        p->maybe_limits = xmalloc(sizeof *p->maybe_limits);
        fill_rs_limits(p->maybe_limits);
    }
    fill_rs_by_int(&p->by_int);
    fill_rs_by_unsigned(&p->by_unsigned);
    fill_rs_by_enum(&p->by_enum);
    fill_rs_by_bool(&p->by_bool);
    ALLOC_ARRAY(p->choices.choices, rs_by_int, 3);
    for (u_int k = 0; k < p->choices.choices_len; k++)
        fill_rs_by_int(&p->choices.choices_val[k]);
    p->list = r_list();
}

static void fill_rs_header(rs_header *p)
{
    p->prog = r_u32();
    p->vers = r_u32();
    p->proc = r_i32();
    p->type = (rs_msg_type)below(7);
    p->serial = r_u32();
    p->status = (rs_msg_status)below(3);
}

static void fill_rs_domain_ref(rs_domain_ref *p)
{
    p->name = r_string(RS_STRING_MAX);
    r_bytes(p->uuid, RS_UUID_LEN);
    p->id = r_i32();
}

static void fill_rs_body(rs_body *p)
{
    p->name = r_string(RS_STRING_MAX);
    p->capacity = r_u64();
    p->allocation = r_u64();
    p->flags = r_u32();
    ALLOC_ARRAY(p->cpus.cpus, int, RS_NUM_CPUS);
    for (u_int k = 0; k < p->cpus.cpus_len; k++)
        p->cpus.cpus_val[k] = r_i32();
    if (below(2)) {
        p->domain = xmalloc(sizeof *p->domain);
        fill_rs_domain_ref(p->domain);
    }
}

static void fill_rs_message(rs_message *p)
{
    fill_rs_header(&p->header);
    fill_rs_body(&p->body);
}

static void fill_rs_chunk(rs_chunk *p)
{
    p->data.data_val = r_opaque(2000, &p->data.data_len);
}

static void fill_rs_color(rs_color *p) { *p = COLORS[below(5)]; }
static void fill_rs_u64(rs_u64 *p) { *p = r_u64(); }
static void fill_rs_temp(rs_temp *p) { *p = r_i32(); }
static void fill_rs_name(rs_name *p) { *p = r_string(RS_MAX_NAME); }
static void fill_rs_uuid(char *p) { r_bytes(p, RS_UUID_LEN); }

/* ---- type table ------------------------------------------------------------------- */

CODEC(rs_color)
CODEC(rs_u64)
CODEC(rs_uuid)
CODEC(rs_name)
CODEC(rs_temp)
CODEC(rs_point)
CODEC(rs_limits)
CODEC(rs_by_int)
CODEC(rs_by_unsigned)
CODEC(rs_by_enum)
CODEC(rs_by_bool)
CODEC(rs_node)
CODEC(rs_list)
CODEC(rs_everything)
CODEC(rs_msg_type)
CODEC(rs_msg_status)
CODEC(rs_header)
CODEC(rs_domain_ref)
CODEC(rs_body)
CODEC(rs_message)
CODEC(rs_chunk)

#define ENTRY(T) {#T, codec_##T, (fill_fn)fill_##T, sizeof(T)}
#define DECODE_ONLY(T) {#T, codec_##T, NULL, sizeof(T)}
static const struct type_entry TYPES[] = {
    ENTRY(rs_color),   ENTRY(rs_u64),         ENTRY(rs_uuid),       ENTRY(rs_name),
    ENTRY(rs_temp),    ENTRY(rs_point),       ENTRY(rs_limits),     ENTRY(rs_by_int),
    ENTRY(rs_by_unsigned), ENTRY(rs_by_enum), ENTRY(rs_by_bool),    ENTRY(rs_node),
    ENTRY(rs_list),    ENTRY(rs_everything),  DECODE_ONLY(rs_msg_type),
    DECODE_ONLY(rs_msg_status), ENTRY(rs_header), ENTRY(rs_domain_ref), ENTRY(rs_body),
    ENTRY(rs_message), ENTRY(rs_chunk),
};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

/* ---- modes -------------------------------------------------------------------------- */

/* "key=value" lines; floats as C99 hex (%a) so Python can compare them exactly. */
static char text[1 << 16];
static size_t text_len;

static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text + text_len, sizeof text - text_len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof text - text_len)
        die("describe text overflow");
    text_len += (size_t)n;
}

static void put_hex(const char *key, const char *p, u_int n)
{
    put("%s=", key);
    for (u_int k = 0; k < n; k++)
        put("%02x", (unsigned char)p[k]);
    put("\n");
}

static void describe_header(const char *prefix, const rs_header *h)
{
    put("%sprog=%u\n%svers=%u\n%sproc=%d\n", prefix, h->prog, prefix, h->vers, prefix,
        h->proc);
    put("%stype=%d\n%sserial=%u\n%sstatus=%d\n", prefix, (int)h->type, prefix, h->serial,
        prefix, (int)h->status);
}

static void describe_everything(const rs_everything *e)
{
    put("i=%d\nu=%u\nbare=%u\n", e->i, e->u, e->bare);
    put("h=%" PRId64 "\nuh=%" PRIu64 "\n", (int64_t)e->h, (uint64_t)e->uh);
    put("flag=%d\nf=%a\nd=%a\n", (int)e->flag, (double)e->f, e->d);
    put("color=%d\ntemp=%d\n", (int)e->color, e->temp);
    put_hex("fixed_blob", e->fixed_blob, 5);
    put_hex("var_blob", e->var_blob.var_blob_val, e->var_blob.var_blob_len);
    put("name=%s\nalias=%s\nbig=%" PRIu64 "\n", e->name, e->alias, (uint64_t)e->big);
    put_hex("uuid", e->uuid, RS_UUID_LEN);
    put("corners=%d,%d;%d,%d\n", e->corners[0].x, e->corners[0].y, e->corners[1].x,
        e->corners[1].y);
    put("path_len=%u\n", e->path.path_len);
    put("counts=");
    for (u_int k = 0; k < e->counts.counts_len; k++)
        put("%s%d", k ? "," : "", e->counts.counts_val[k]);
    put("\nmaybe_point=");
    if (e->maybe_point)
        put("%d,%d", e->maybe_point->x, e->maybe_point->y);
    else
        put("null");
    put("\nby_int.code=%d\n", e->by_int.code);
    put("by_enum.color=%d\n", (int)e->by_enum.color);
    put("by_bool.present=%d\n", (int)e->by_bool.present);
    put("list=");
    for (const rs_node *n = e->list; n; n = n->next)
        put("%s%d:%s", n == e->list ? "" : ",", n->value, n->tag);
    put("\n");
}

static void describe_body(const char *prefix, const rs_body *b)
{
    put("%sname=%s\n%scapacity=%" PRIu64 "\n%sallocation=%" PRIu64 "\n%sflags=%u\n", prefix,
        b->name, prefix, (uint64_t)b->capacity, prefix, (uint64_t)b->allocation, prefix,
        b->flags);
    put("%scpus_len=%u\n", prefix, b->cpus.cpus_len);
    if (b->domain)
        put("%sdomain.name=%s\n%sdomain.id=%d\n", prefix, b->domain->name, prefix,
            b->domain->id);
    else
        put("%sdomain=null\n", prefix);
}

static int run_describe(void)
{
    void *obj = calloc(1, max_object_size(TYPES, NTYPES));
    const struct type_entry *t;
    char *data;
    uint32_t len;
    while (read_request(TYPES, NTYPES, &t, &data, &len)) {
        XDR x;
        xdrmem_create(&x, data, len, XDR_DECODE);
        int ok = t->codec(&x, obj);
        xdr_destroy(&x);
        text_len = 0;
        if (ok && strcmp(t->name, "rs_everything") == 0)
            describe_everything(obj);
        else if (ok && strcmp(t->name, "rs_message") == 0) {
            describe_header("header.", &((rs_message *)obj)->header);
            describe_body("body.", &((rs_message *)obj)->body);
        } else if (ok)
            die("describe supports rs_everything and rs_message");
        write_u32(ok ? 0 : 1);
        write_blob(text, (uint32_t)text_len);
        free(data);
        if (ok)
            release(t, obj);
    }
    free(obj);
    return 0;
}

static int run_generate(uint64_t seed, unsigned count)
{
    void *obj = calloc(1, max_object_size(TYPES, NTYPES));
    rng_state = seed ? seed : 1;
    for (size_t k = 0; k < NTYPES; k++) {
        const struct type_entry *t = &TYPES[k];
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

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "roundtrip") == 0)
        return run_roundtrip(TYPES, NTYPES);
    if (argc == 2 && strcmp(argv[1], "describe") == 0)
        return run_describe();
    if (argc == 4 && strcmp(argv[1], "generate") == 0)
        return run_generate(strtoull(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0));
    fprintf(stderr, "usage: driver roundtrip | describe | generate SEED COUNT\n");
    return 2;
}
