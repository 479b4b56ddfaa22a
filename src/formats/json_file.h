/* json_file.h — a whole JSON file parsed with cJSON, bounded: the one way config, catalog,
 * registry, manifest and state files are read. */
#ifndef WHALE_FORMATS_JSON_FILE_H
#define WHALE_FORMATS_JSON_FILE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "whale.h"

/* The parsed contents of path (free with cJSON_Delete), or NULL with err set: WHALE_E_NOTFOUND
 * when the file does not exist, WHALE_E_IO when it cannot be read or is larger than max_bytes,
 * WHALE_E_FORMAT when it is not JSON. */
cJSON *json_read_file(const char *path, size_t max_bytes, whale_err *err);

#endif
