/* listdir.h — a directory's entries in name order, hidden ones (".", "..", ".git") left out:
 * the one listing behind every "files of a directory" walk (corpora, inputs, shards), so the
 * same directory is always read in the same order. */
#ifndef WHALE_BASE_LISTDIR_H
#define WHALE_BASE_LISTDIR_H

#include <stddef.h>

#include "whale.h"

/* The names (not paths) in *names, sorted by strcmp; *n of them. Free with list_dir_free. */
int list_dir(const char *path, char ***names, size_t *n, whale_err *err);
void list_dir_free(char **names, size_t n);
/* Remove dir and the plain files in it (a work or checkpoint directory: nothing nested).
 * Best effort: what cannot be removed stays. */
void remove_flat_dir(const char *dir);

#endif
