/*
 * C oracle for tests/realschemas: the roundtrip mode of xdr_oracle.h over the types of
 * real .x files. Built at test time with the files' rpcgen headers force-included
 * (gcc -include X.h ...) and a generated "types.inc" of TYPE(name) lines, one per type the
 * test exercises.
 */
#include "xdr_oracle.h"

#define TYPE(T) CODEC(T)
#include "types.inc"
#undef TYPE

#define TYPE(T) {#T, codec_##T, NULL, sizeof(T)},
static const struct type_entry TYPES[] = {
#include "types.inc"
};
#undef TYPE
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "roundtrip") == 0)
        return run_roundtrip(TYPES, NTYPES);
    fprintf(stderr, "usage: schema_driver roundtrip\n");
    return 2;
}
