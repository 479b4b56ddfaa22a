/* info_safetensors.c — `whale info` for safetensors checkpoints (a directory, a .safetensors
 * file or a model.safetensors.index.json). Prints the same sections as the GGUF view in
 * cmd_info.c: where the weights are, config.json's hyperparameters when one sits beside them,
 * a per-dtype summary, and the first and last tensors. Owns only the printing. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"

/* Tensors listed from each end of the sorted table; the middle is summarized by a count. */
#define INFO_ST_SHOWN 5

static void print_tensor(const st_tensor *t) {
    char shape[128], bytes[32];
    int k = snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t->n_dims && k > 0 && (size_t)k < sizeof shape; d++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, d ? ", %" PRId64 : "%" PRId64,
                      t->shape[d]);
    if (k > 0 && (size_t)k < sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
    printf("  %-50s %-8s %-22s %s\n", t->name, st_dtype_name(t->dtype), shape,
           cli_bytes((double)t->nbytes, bytes, sizeof bytes));
}

int info_print_safetensors(const char *path) {
    st_model m;
    whale_err err = {0};
    if (st_open(&m, path, &err)) {
        fprintf(stderr, "whale: %s\n", err.msg);
        return 1;
    }
    char b1[32], b2[32];
    size_t mapped = 0;
    for (int i = 0; i < m.n_shards; i++) mapped += m.shards[i].size;
    printf("file                     %s\n", m.path);
    printf("format                   safetensors, %d shard%s, %s\n", m.n_shards,
           m.n_shards == 1 ? "" : "s", cli_bytes((double)mapped, b1, sizeof b1));
    const char *fmt = st_metadata(&m, "format");
    if (fmt) printf("saved by                 %s\n", fmt);

    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", m.dir);
    FILE *probe = fopen(cfg, "rb");
    if (probe) {
        fclose(probe);
        model_hparams hp;
        if (hf_config_load(&hp, cfg, &err)) {
            printf("hyperparameters          unreadable: %s\n", err.msg);
        } else {
            if (hp.name[0]) printf("name                     %s\n", hp.name);
            printf("architecture             %s\n", hp.arch_name);
            printf("hyperparameters          (config.json)\n");
            info_print_hparams(&hp);
        }
    } else {
        printf("hyperparameters          no config.json beside the weights\n");
    }

    /* Per-dtype summary, in the order dtypes first appear. */
    struct {
        whale_dtype type;
        size_t n;
        double bytes;
    } by[16];
    int nb = 0;
    double params = 0, bytes = 0;
    for (size_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        params += (double)t->n_elems;
        bytes += (double)t->nbytes;
        int j = 0;
        while (j < nb && by[j].type != t->dtype) j++;
        if (j == nb && nb < (int)(sizeof by / sizeof by[0])) {
            by[nb].type = t->dtype;
            by[nb].n = 0;
            by[nb].bytes = 0;
            nb++;
        }
        if (j < nb) {
            by[j].n++;
            by[j].bytes += (double)t->nbytes;
        }
    }
    char pbuf[32];
    if (params >= 1e9) snprintf(pbuf, sizeof pbuf, "%.2f B", params / 1e9);
    else if (params >= 1e6) snprintf(pbuf, sizeof pbuf, "%.2f M", params / 1e6);
    else snprintf(pbuf, sizeof pbuf, "%.0f", params);
    printf("tensors                  %zu, %s parameters, %s\n", m.n_tensors, pbuf,
           cli_bytes(bytes, b2, sizeof b2));
    for (int j = 0; j < nb; j++)
        printf("  %-8s %6zu tensors  %s\n", st_dtype_name(by[j].type), by[j].n,
               cli_bytes(by[j].bytes, b1, sizeof b1));

    printf("%-52s %-8s %-22s %s\n", "  name", "dtype", "shape", "bytes");
    for (size_t i = 0; i < m.n_tensors; i++) {
        if (m.n_tensors > 2 * INFO_ST_SHOWN && i == INFO_ST_SHOWN) {
            printf("  ... %zu more ...\n", m.n_tensors - 2 * INFO_ST_SHOWN);
            i = m.n_tensors - INFO_ST_SHOWN - 1;
            continue;
        }
        print_tensor(&m.tensors[i]);
    }
    st_close(&m);
    return 0;
}
