/*
 * C oracle for tests/realschemas: the roundtrip and generate modes of xdr_oracle.h over the
 * types of real .x files. Built at test time with the files' rpcgen headers force-included
 * (gcc -include X.h ...), a generated "types.inc" of TYPE(name) lines (FILLED(name) for a
 * type that "fill.inc", also generated, has a fill_<name> for), one per type the test
 * exercises.
 */
#include "xdr_oracle.h"

#include "fill.inc"

#define TYPE(T) CODEC(T)
#define FILLED(T) CODEC(T)
#include "types.inc"
#undef TYPE
#undef FILLED

#define TYPE(T) {#T, codec_##T, NULL, sizeof(T)},
#define FILLED(T) {#T, codec_##T, (fill_fn)fill_##T, sizeof(T)},
static const struct type_entry TYPES[] = {
#include "types.inc"
};
#undef TYPE
#undef FILLED
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "roundtrip") == 0)
        return run_roundtrip(TYPES, NTYPES);
    if (argc == 4 && strcmp(argv[1], "generate") == 0)
        return run_generate(TYPES, NTYPES, strtoull(argv[2], NULL, 0),
                            (unsigned)strtoul(argv[3], NULL, 0));
    fprintf(stderr, "usage: schema_driver roundtrip | generate SEED COUNT\n");
    return 2;
}
