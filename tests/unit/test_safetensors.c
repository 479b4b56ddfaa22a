/* test_safetensors.c — the safetensors reader (single files, sharded checkpoints, hostile
 * headers) and config.json mapping (real DeepSeek-V3, V2-Lite and R1-Distill-Qwen configs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "check.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"

/* ---- writer helpers ------------------------------------------------------------------------ */

/* A safetensors file: u64 header length, header text, data_len bytes of pattern data. */
static unsigned char *st_build_file(const char *header, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    unsigned char *b = malloc(*size);
    uint64_t hl = h;
    memcpy(b, &hl, 8);
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)i;
    return b;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static int write_st(const char *path, const char *header, size_t data_len) {
    size_t n;
    unsigned char *b = st_build_file(header, data_len, &n);
    int rc = write_file(path, b, n);
    free(b);
    return rc;
}

static int write_text(const char *path, const char *text) {
    return write_file(path, text, strlen(text));
}

/* Open header+data from memory; returns the status and leaves the message in *err. */
static int open_mem(const char *header, size_t data_len, whale_err *err) {
    size_t n;
    unsigned char *b = st_build_file(header, data_len, &n);
    st_model m;
    err_clear(err);
    int rc = st_open_memory(&m, b, n, err);
    st_close(&m);
    free(b);
    return rc;
}

static char tmpdir[256];

static int mkdir_p_ok(const char *path) {
    return mkdir(path, 0700) == 0;
}

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* ---- single files ---------------------------------------------------------------------------- */

static const char *VALID_HEADER =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
    "\"model.embed.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"layers.0.attn.wq\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"layers.0.mlp.w1.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,2],\"data_offsets\":[32,36]},"
    "\"layers.0.mlp.w1.weight_scale_inv\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[36,40]},"
    "\"scalar\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[40,48]},"
    "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[48,48]},"
    "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[48,50]}}";

static void test_valid_memory(void) {
    size_t n;
    unsigned char *b = st_build_file(VALID_HEADER, 50, &n);
    st_model m;
    whale_err err = {0};
    int rc = st_open_memory(&m, b, n, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc) {
        free(b);
        return;
    }
    const unsigned char *data = m.shards[0].data + 8 + strlen(VALID_HEADER);
    CHECK(m.n_tensors == 7);
    CHECK(m.n_shards == 1);
    for (size_t i = 1; i < m.n_tensors; i++) CHECK(strcmp(m.tensors[i - 1].name, m.tensors[i].name) < 0);
    const st_tensor *t = st_find(&m, "model.embed.weight");
    CHECK(t && t->dtype == WHALE_DTYPE_F32 && t->n_dims == 2 && t->shape[0] == 2 &&
          t->shape[1] == 3 && t->n_elems == 6 && t->nbytes == 24 && t->data == data);
    t = st_find(&m, "layers.0.attn.wq");
    CHECK(t && t->dtype == WHALE_DTYPE_BF16 && t->nbytes == 8 && t->data == data + 24);
    t = st_find(&m, "layers.0.mlp.w1.weight");
    CHECK(t && t->dtype == WHALE_DTYPE_F8_E4M3 && t->nbytes == 4 && t->data == data + 32);
    CHECK(t && ((const unsigned char *)t->data)[0] == 32);
    t = st_find(&m, "layers.0.mlp.w1.weight_scale_inv");
    CHECK(t && t->dtype == WHALE_DTYPE_F32 && t->n_elems == 1);
    t = st_find(&m, "scalar");
    CHECK(t && t->n_dims == 0 && t->n_elems == 1 && t->nbytes == 8);
    t = st_find(&m, "empty");
    CHECK(t && t->n_elems == 0 && t->nbytes == 0);
    t = st_find(&m, "mask");
    CHECK(t && t->dtype == WHALE_DTYPE_U8 && t->nbytes == 2);
    CHECK(st_find(&m, "__metadata__") == NULL);
    CHECK(st_find(&m, "nope") == NULL);
    CHECK(st_metadata(&m, "format") && !strcmp(st_metadata(&m, "format"), "pt"));
    CHECK(st_metadata(&m, "note") && !strcmp(st_metadata(&m, "note"), "x"));
    CHECK(st_metadata(&m, "absent") == NULL);
    st_close(&m);
    st_close(&m); /* twice is safe */
    free(b);
}

static void test_dtypes(void) {
    static const struct {
        const char *name;
        whale_dtype t;
        size_t size;
    } cases[] = {
        {"F64", WHALE_DTYPE_F64, 8},         {"F32", WHALE_DTYPE_F32, 4},
        {"F16", WHALE_DTYPE_F16, 2},         {"BF16", WHALE_DTYPE_BF16, 2},
        {"F8_E4M3", WHALE_DTYPE_F8_E4M3, 1}, {"F8_E5M2", WHALE_DTYPE_F8_E5M2, 1},
        {"I64", WHALE_DTYPE_I64, 8},         {"I32", WHALE_DTYPE_I32, 4},
        {"I16", WHALE_DTYPE_I16, 2},         {"I8", WHALE_DTYPE_I8, 1},
        {"U8", WHALE_DTYPE_U8, 1},           {"BOOL", WHALE_DTYPE_U8, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        whale_dtype t;
        CHECK(st_dtype_parse(cases[i].name, &t) == 0 && t == cases[i].t);
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
                 cases[i].name, 3 * cases[i].size);
        size_t n;
        unsigned char *b = st_build_file(hdr, 3 * cases[i].size, &n);
        st_model m;
        whale_err err = {0};
        int rc = st_open_memory(&m, b, n, &err);
        CHECKF(rc == 0 && m.tensors[0].dtype == cases[i].t, "%s: %s", cases[i].name, err.msg);
        st_close(&m);
        free(b);
    }
    CHECK(!strcmp(st_dtype_name(WHALE_DTYPE_F8_E4M3), "F8_E4M3"));
    CHECK(!strcmp(st_dtype_name(WHALE_DTYPE_BF16), "BF16"));
    CHECK(!strcmp(st_dtype_name(WHALE_DTYPE_Q4_K), "?"));
    whale_dtype t;
    CHECK(st_dtype_parse("F4", &t) == -1);
}

static void test_padding_and_empty(void) {
    whale_err err;
    /* The Python writer pads the header with spaces to a multiple of 8. */
    CHECK(open_mem("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}      ", 4, &err) == 0);
    /* No tensors at all is a valid (empty) file. */
    CHECK(open_mem("{}", 0, &err) == 0);
    CHECK(open_mem("{\"__metadata__\":{}}", 0, &err) == 0);
}

/* Each hostile input must give an error whose message contains `want`. */
static void expect_bad(const char *header, size_t data_len, const char *want) {
    whale_err err;
    int rc = open_mem(header, data_len, &err);
    CHECKF(rc < 0, "accepted: %.80s", header);
    CHECKF(rc >= 0 || strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

static void test_hostile(void) {
    whale_err err;
    st_model m;
    /* truncated: fewer than 8 bytes */
    CHECK(st_open_memory(&m, "\x05\x00\x00", 3, &err) == WHALE_E_FORMAT && strstr(err.msg, "too short"));
    CHECK(st_open_memory(&m, "", 0, &err) == WHALE_E_FORMAT);
    /* header length past the end */
    unsigned char b[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(st_open_memory(&m, b, 10, &err) == WHALE_E_FORMAT && strstr(err.msg, "runs past the end"));
    /* absurd header length (2^63): refused before any allocation */
    unsigned char big[10] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    CHECK(st_open_memory(&m, big, 10, &err) == WHALE_E_FORMAT && strstr(err.msg, "limit"));
    unsigned char ff[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(st_open_memory(&m, ff, 10, &err) == WHALE_E_FORMAT);
    /* zero-length header */
    unsigned char zero[8] = {0};
    CHECK(st_open_memory(&m, zero, 8, &err) == WHALE_E_FORMAT);

    expect_bad("not json at all", 0, "not valid JSON");
    expect_bad("{\"a\":", 0, "not valid JSON");
    expect_bad("{} trailing", 0, "trailing");
    expect_bad("[1,2,3]", 0, "not a JSON object");
    expect_bad("\"str\"", 0, "not a JSON object");
    expect_bad("{\"w\":5}", 0, "tensor 'w': entry is not a JSON object");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing or non-string \"dtype\"");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "non-array \"shape\"");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "two non-negative");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "two non-negative");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "two non-negative");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4]}}", 4, "two non-negative");
    /* data_offsets past the end of the data */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the 8 bytes");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 8, "two non-negative");
    /* begin > end */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "end before they begin");
    /* shape * dtype size != span */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "span 8 bytes but shape [3] of F32 needs 12");
    expect_bad("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 8, "needs 8");
    /* negative and non-integer dims */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 8, "dimension 0 is negative");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,0]}}", 8, "dimension 1 is negative");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8, "not an integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "not an integer");
    /* overflowing shapes: elements past 2^63, and bytes past SIZE_MAX */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}", 8, "more than 2^63 elements");
    expect_bad("{\"w\":{\"dtype\":\"F64\",\"shape\":[1125899906842624,4096],\"data_offsets\":[0,0]}}", 8, "does not fit");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,0]}}", 8, "not an integer");
    /* unknown dtype, named with its tensor */
    expect_bad("{\"blk.0.w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 8, "tensor 'blk.0.w': unsupported dtype 'F4'");
    expect_bad("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,1]}}", 8, "dtype");
    /* too many dims */
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8, "more than 8 dimensions");
    /* bad metadata */
    expect_bad("{\"__metadata__\":[1]}", 0, "__metadata__");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "value is not a string");
    /* duplicate names in one header */
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 8, "appears twice");
    /* every message starts with the path */
    open_mem("{\"w\":5}", 0, &err);
    CHECK(!strncmp(err.msg, "<memory>: ", 10));
}

/* ---- files, directories and shards ----------------------------------------------------------- */

static const char *SHARD1 =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"b.weight\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]}}";
static const char *SHARD2 =
    "{\"__metadata__\":{\"format\":\"pt\",\"extra\":\"2\"},"
    "\"c.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[4,4],\"data_offsets\":[0,16]},"
    "\"c.weight_scale_inv\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[16,20]}}";
static const char *INDEX =
    "{\"metadata\":{\"total_size\":44},\"weight_map\":{"
    "\"a.weight\":\"model-00001-of-00002.safetensors\","
    "\"b.weight\":\"model-00001-of-00002.safetensors\","
    "\"c.weight\":\"model-00002-of-00002.safetensors\","
    "\"c.weight_scale_inv\":\"model-00002-of-00002.safetensors\"}}";

static void make_sharded(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(write_st(p, SHARD1, 24) == 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(write_st(p, SHARD2, 20) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CHECK(write_text(p, INDEX) == 0);
}

static void check_sharded(const st_model *m) {
    CHECK(m->n_shards == 2);
    CHECK(m->n_tensors == 4);
    const st_tensor *a = st_find(m, "a.weight"), *c = st_find(m, "c.weight");
    const st_tensor *s = st_find(m, "c.weight_scale_inv");
    CHECK(a && a->shard == 0 && a->nbytes == 16);
    CHECK(c && c->shard == 1 && c->dtype == WHALE_DTYPE_F8_E4M3 && c->nbytes == 16);
    CHECK(s && s->shard == 1 && s->dtype == WHALE_DTYPE_F32);
    CHECK(c && c->data == m->shards[1].data + 8 + strlen(SHARD2));
    CHECK(st_metadata(m, "format") && !strcmp(st_metadata(m, "format"), "pt"));
    CHECK(st_metadata(m, "extra") && !strcmp(st_metadata(m, "extra"), "2"));
    CHECK(m->n_metadata == 2);
}

static void test_single_file_and_dir(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/single", tmpdir);
    CHECK(mkdir_p_ok(dir));
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(write_st(p, VALID_HEADER, 50) == 0);
    st_model m;
    whale_err err = {0};
    int rc = st_open(&m, p, &err);
    CHECKF(rc == 0 && m.n_tensors == 7 && !strcmp(m.dir, dir), "%s", err.msg);
    st_close(&m);
    rc = st_open(&m, dir, &err);
    CHECKF(rc == 0 && m.n_tensors == 7 && m.n_shards == 1, "%s", err.msg);
    st_close(&m);
    /* a file in the current directory: dir is "." */
    CHECK(st_open(&m, "definitely-not-here.safetensors", &err) == WHALE_E_IO);
    CHECK(strstr(err.msg, "definitely-not-here.safetensors: cannot open") != NULL);
    /* a directory without weights */
    char empty[512];
    snprintf(empty, sizeof empty, "%s/empty", tmpdir);
    CHECK(mkdir_p_ok(empty));
    CHECK(st_open(&m, empty, &err) == WHALE_E_NOTFOUND && strstr(err.msg, "no model.safetensors"));
    /* a truncated file on disk names its path */
    snprintf(p, sizeof p, "%s/trunc.safetensors", empty);
    CHECK(write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8) == 0);
    CHECK(st_open(&m, p, &err) == WHALE_E_FORMAT && strstr(err.msg, p) == err.msg &&
          strstr(err.msg, "tensor 'w'") && strstr(err.msg, "truncated download?"));
    /* and a directory scan finds it (and reports the same error) */
    CHECK(st_open(&m, empty, &err) == WHALE_E_FORMAT);
}

static void test_sharded(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    CHECK(mkdir_p_ok(dir));
    make_sharded(dir);
    st_model m;
    whale_err err = {0};
    int rc = st_open(&m, dir, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!rc) check_sharded(&m);
    st_close(&m);
    char idx[1024];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    rc = st_open(&m, idx, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!rc) {
        check_sharded(&m);
        CHECK(!strcmp(m.dir, dir));
    }
    st_close(&m);

    /* Shards without the index: a directory scan still finds both. */
    char dir2[512], p[1024];
    snprintf(dir2, sizeof dir2, "%s/noindex", tmpdir);
    CHECK(mkdir_p_ok(dir2));
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir2);
    CHECK(write_st(p, SHARD1, 24) == 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir2);
    CHECK(write_st(p, SHARD2, 20) == 0);
    rc = st_open(&m, dir2, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!rc) check_sharded(&m);
    st_close(&m);
}

static void expect_bad_index(const char *index_text, const char *want) {
    char dir[512], p[700];
    static int k;
    snprintf(dir, sizeof dir, "%s/badindex%d", tmpdir, k++);
    CHECK(mkdir_p_ok(dir));
    make_sharded(dir);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CHECK(write_text(p, index_text) == 0);
    st_model m;
    whale_err err = {0};
    int rc = st_open(&m, dir, &err);
    CHECKF(rc < 0, "accepted index %.60s", index_text);
    CHECKF(rc >= 0 || strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    st_close(&m);
}

static void test_bad_index(void) {
    expect_bad_index("{\"weight_map\":{\"a.weight\":\"model-00003-of-00003.safetensors\"}}",
                     "incomplete download?");
    expect_bad_index("{\"weight_map\":", "index is not valid JSON");
    expect_bad_index("", "index is not valid JSON");
    expect_bad_index("[]", "no \"weight_map\"");
    expect_bad_index("{\"metadata\":{}}", "no \"weight_map\"");
    expect_bad_index("{\"weight_map\":[]}", "no \"weight_map\"");
    expect_bad_index("{\"weight_map\":{}}", "weight_map is empty");
    expect_bad_index("{\"weight_map\":{\"a.weight\":3}}", "tensor 'a.weight': weight_map value");
    expect_bad_index("{\"weight_map\":{\"a.weight\":\"../x.safetensors\"}}", "not a shard file name");
    expect_bad_index("{\"weight_map\":{\"a.weight\":\"/etc/passwd\"}}", "not a shard file name");
    expect_bad_index("{\"weight_map\":{\"a.weight\":\"..\"}}", "not a shard file name");
    /* a tensor listed under the wrong shard, and one absent from every shard */
    expect_bad_index("{\"weight_map\":{\"a.weight\":\"model-00002-of-00002.safetensors\"}}",
                     "tensor 'a.weight': weight_map puts it in model-00002");
    expect_bad_index("{\"weight_map\":{\"zzz\":\"model-00001-of-00002.safetensors\"}}",
                     "tensor 'zzz'");
    /* a tensor in two shards */
    char dir[512], p[700];
    snprintf(dir, sizeof dir, "%s/dup", tmpdir);
    CHECK(mkdir_p_ok(dir));
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    CHECK(write_st(p, SHARD1, 24) == 0);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    CHECK(write_st(p, SHARD1, 24) == 0);
    st_model m;
    whale_err err = {0};
    CHECK(st_open(&m, dir, &err) == WHALE_E_FORMAT && strstr(err.msg, "appears twice"));
}

/* ---- config.json ----------------------------------------------------------------------------- */

static const char *CFG_V3 =
    "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"attention_bias\":false,"
    "\"attention_dropout\":0.0,\"auto_map\":{\"AutoConfig\":\"configuration_deepseek.DeepseekV3Config\","
    "\"AutoModel\":\"modeling_deepseek.DeepseekV3Model\",\"AutoModelForCausalLM\":"
    "\"modeling_deepseek.DeepseekV3ForCausalLM\"},\"aux_loss_alpha\":0.001,\"bos_token_id\":0,"
    "\"eos_token_id\":1,\"ep_size\":1,\"first_k_dense_replace\":3,\"hidden_act\":\"silu\","
    "\"hidden_size\":7168,\"initializer_range\":0.02,\"intermediate_size\":18432,"
    "\"kv_lora_rank\":512,\"max_position_embeddings\":163840,\"model_type\":\"deepseek_v3\","
    "\"moe_intermediate_size\":2048,\"moe_layer_freq\":1,\"n_group\":8,\"n_routed_experts\":256,"
    "\"n_shared_experts\":1,\"norm_topk_prob\":true,\"num_attention_heads\":128,"
    "\"num_experts_per_tok\":8,\"num_hidden_layers\":61,\"num_key_value_heads\":128,"
    "\"num_nextn_predict_layers\":1,\"pretraining_tp\":1,\"q_lora_rank\":1536,"
    "\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,\"quantization_config\":{"
    "\"activation_scheme\":\"dynamic\",\"fmt\":\"e4m3\",\"quant_method\":\"fp8\","
    "\"weight_block_size\":[128,128]},\"rms_norm_eps\":1e-06,\"rope_scaling\":{\"beta_fast\":32,"
    "\"beta_slow\":1,\"factor\":40,\"mscale\":1.0,\"mscale_all_dim\":1.0,"
    "\"original_max_position_embeddings\":4096,\"type\":\"yarn\"},\"rope_theta\":10000,"
    "\"routed_scaling_factor\":2.5,\"scoring_func\":\"sigmoid\",\"seq_aux\":true,"
    "\"tie_word_embeddings\":false,\"topk_group\":4,\"topk_method\":\"noaux_tc\","
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.33.1\",\"use_cache\":true,"
    "\"v_head_dim\":128,\"vocab_size\":129280}";

static const char *CFG_V2_LITE =
    "{\"architectures\":[\"DeepseekV2ForCausalLM\"],\"attention_bias\":false,"
    "\"attention_dropout\":0.0,\"aux_loss_alpha\":0.001,\"bos_token_id\":100000,"
    "\"eos_token_id\":100001,\"first_k_dense_replace\":1,\"hidden_act\":\"silu\","
    "\"hidden_size\":2048,\"initializer_range\":0.02,\"intermediate_size\":10944,"
    "\"kv_lora_rank\":512,\"max_position_embeddings\":163840,\"model_type\":\"deepseek_v2\","
    "\"moe_intermediate_size\":1408,\"moe_layer_freq\":1,\"n_group\":1,\"n_routed_experts\":64,"
    "\"n_shared_experts\":2,\"norm_topk_prob\":false,\"num_attention_heads\":16,"
    "\"num_experts_per_tok\":6,\"num_hidden_layers\":27,\"num_key_value_heads\":16,"
    "\"pretraining_tp\":1,\"q_lora_rank\":null,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":{\"beta_fast\":32,\"beta_slow\":1,\"factor\":40,"
    "\"mscale\":0.707,\"mscale_all_dim\":0.707,\"original_max_position_embeddings\":4096,"
    "\"type\":\"yarn\"},\"rope_theta\":10000,\"routed_scaling_factor\":1.0,"
    "\"scoring_func\":\"softmax\",\"seq_aux\":true,\"tie_word_embeddings\":false,"
    "\"topk_group\":1,\"topk_method\":\"greedy\",\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.33.1\",\"use_cache\":true,\"v_head_dim\":128,"
    "\"vocab_size\":102400}";

static const char *CFG_QWEN_1_5B =
    "{\"_name_or_path\":\"/cpfs01/shared/llm_ddd/doushihan/shared/models/Qwen2.5-Math-1.5B\","
    "\"architectures\":[\"Qwen2ForCausalLM\"],\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"eos_token_id\":151643,\"hidden_act\":\"silu\","
    "\"hidden_size\":1536,\"initializer_range\":0.02,\"intermediate_size\":8960,"
    "\"max_position_embeddings\":131072,\"max_window_layers\":21,\"model_type\":\"qwen2\","
    "\"num_attention_heads\":12,\"num_hidden_layers\":28,\"num_key_value_heads\":2,"
    "\"rms_norm_eps\":1e-06,\"rope_theta\":10000,\"sliding_window\":4096,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.44.0\","
    "\"use_cache\":true,\"use_mrope\":false,\"use_sliding_window\":false,\"vocab_size\":151936}";

#define FEQ(a, b) ((a) > (b) - 1e-6f * (1 + (b)) && (a) < (b) + 1e-6f * (1 + (b)))

static void test_config_v3(void) {
    model_hparams hp;
    whale_err err = {0};
    int rc = hf_config_parse(&hp, CFG_V3, strlen(CFG_V3), "config.json", &err);
    CHECKF(rc == 0, "%s", err.msg);
    CHECK(hp.arch == MODEL_ARCH_DEEPSEEK2 && !strcmp(hp.arch_name, "DeepseekV3ForCausalLM"));
    CHECK(!strcmp(hp.name, "deepseek_v3"));
    CHECK(hp.n_vocab == 129280 && hp.n_ctx_train == 163840 && hp.n_embd == 7168);
    CHECK(hp.n_layer == 61 && hp.n_ff == 18432 && hp.n_head == 128 && hp.n_head_kv == 128);
    CHECK(hp.head_dim == 192);
    CHECK(FEQ(hp.rms_eps, 1e-6f) && FEQ(hp.rope_theta, 10000.0f));
    CHECK(hp.tie_embeddings == 0 && hp.attn_bias == 0);
    CHECK(hp.rope_scaling_type == ROPE_SCALING_YARN && FEQ(hp.rope_factor, 40.0f));
    CHECK(hp.rope_orig_ctx == 4096 && FEQ(hp.yarn_beta_fast, 32.0f) && FEQ(hp.yarn_beta_slow, 1.0f));
    CHECK(FEQ(hp.yarn_mscale, 1.0f) && FEQ(hp.yarn_mscale_all_dim, 1.0f));
    CHECK(FEQ(hp.yarn_log_multiplier, 0.1f));
    CHECK(hp.q_lora_rank == 1536 && hp.kv_lora_rank == 512 && hp.qk_nope_head_dim == 128);
    CHECK(hp.qk_rope_head_dim == 64 && hp.v_head_dim == 128);
    CHECK(hp.n_expert == 256 && hp.n_expert_used == 8 && hp.n_expert_shared == 1);
    CHECK(hp.n_ff_expert == 2048 && hp.n_layer_dense_lead == 3 && hp.n_expert_group == 8);
    CHECK(hp.n_group_used == 4 && FEQ(hp.expert_weights_scale, 2.5f) && hp.expert_weights_norm == 1);
    CHECK(hp.gating == MOE_GATING_SIGMOID && hp.n_nextn_layer == 1);
    CHECK(!strcmp(model_arch_name(hp.arch), "deepseek2"));
}

static void test_config_v2_lite(void) {
    model_hparams hp;
    whale_err err = {0};
    int rc = hf_config_parse(&hp, CFG_V2_LITE, strlen(CFG_V2_LITE), "config.json", &err);
    CHECKF(rc == 0, "%s", err.msg);
    CHECK(hp.arch == MODEL_ARCH_DEEPSEEK2 && !strcmp(hp.arch_name, "DeepseekV2ForCausalLM"));
    CHECK(hp.n_embd == 2048 && hp.n_layer == 27 && hp.n_head == 16 && hp.n_head_kv == 16);
    CHECK(hp.q_lora_rank == 0 && hp.kv_lora_rank == 512 && hp.v_head_dim == 128);
    CHECK(hp.n_expert == 64 && hp.n_expert_used == 6 && hp.n_expert_shared == 2);
    CHECK(hp.n_ff_expert == 1408 && hp.n_ff == 10944 && hp.n_layer_dense_lead == 1);
    CHECK(hp.n_expert_group == 1 && hp.n_group_used == 1 && FEQ(hp.expert_weights_scale, 1.0f));
    CHECK(hp.gating == MOE_GATING_SOFTMAX && hp.expert_weights_norm == 0);
    CHECK(hp.n_vocab == 102400 && hp.n_ctx_train == 163840 && hp.n_nextn_layer == 0);
    CHECK(hp.rope_scaling_type == ROPE_SCALING_YARN && FEQ(hp.rope_factor, 40.0f));
    CHECK(hp.rope_orig_ctx == 4096 && FEQ(hp.yarn_mscale, 0.707f) && FEQ(hp.yarn_mscale_all_dim, 0.707f));
    CHECK(FEQ(hp.yarn_log_multiplier, 0.0707f));
}

static void test_config_qwen(void) {
    model_hparams hp;
    whale_err err = {0};
    /* from a file, as `whale info` reads it */
    CHECK(write_text(tmp("config.json"), CFG_QWEN_1_5B) == 0);
    int rc = hf_config_load(&hp, tmp("config.json"), &err);
    CHECKF(rc == 0, "%s", err.msg);
    CHECK(hp.arch == MODEL_ARCH_QWEN2 && !strcmp(hp.name, "qwen2"));
    CHECK(hp.n_embd == 1536 && hp.n_layer == 28 && hp.n_head == 12 && hp.n_head_kv == 2);
    CHECK(hp.head_dim == 128 && hp.n_ff == 8960 && hp.n_vocab == 151936);
    CHECK(hp.n_ctx_train == 131072 && hp.attn_bias == 1 && hp.tie_embeddings == 0);
    CHECK(hp.rope_scaling_type == ROPE_SCALING_NONE && hp.n_expert == 0);
    CHECK(hp.gating == MOE_GATING_NONE && hp.q_lora_rank == 0);
    CHECK(!strcmp(model_arch_name(hp.arch), "qwen2"));
    CHECK(!strcmp(model_arch_name(MODEL_ARCH_LLAMA), "llama"));
    CHECK(!strcmp(model_arch_name(MODEL_ARCH_UNKNOWN), "unknown"));
    CHECK(hf_config_load(&hp, tmp("no-config.json"), &err) == WHALE_E_IO);
}

static void test_config_other(void) {
    model_hparams hp;
    whale_err err = {0};
    const char *llama =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4096,\"num_hidden_layers\":32,"
        "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"rope_theta\":500000.0,"
        "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
        "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
        "\"tie_word_embeddings\":false,\"vocab_size\":128256}";
    CHECKF(hf_config_parse(&hp, llama, strlen(llama), "c", &err) == 0, "%s", err.msg);
    CHECK(hp.arch == MODEL_ARCH_LLAMA && hp.rope_scaling_type == ROPE_SCALING_LLAMA3);
    CHECK(FEQ(hp.rope_factor, 8.0f) && hp.rope_orig_ctx == 8192 && hp.head_dim == 128);
    CHECK(hp.attn_bias == 0 && FEQ(hp.rope_theta, 500000.0f));
    /* model_type alone; unknown architectures load with arch UNKNOWN */
    const char *mt = "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4}";
    CHECK(hf_config_parse(&hp, mt, strlen(mt), "c", &err) == 0 && hp.arch == MODEL_ARCH_LLAMA);
    const char *unk = "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\",\"hidden_size\":64,"
                      "\"num_hidden_layers\":2,\"num_attention_heads\":4}";
    CHECK(hf_config_parse(&hp, unk, strlen(unk), "c", &err) == 0 && hp.arch == MODEL_ARCH_UNKNOWN &&
          !strcmp(hp.arch_name, "MistralForCausalLM"));
}

static void expect_bad_config(const char *json, const char *want) {
    model_hparams hp;
    whale_err err = {0};
    int rc = hf_config_parse(&hp, json, strlen(json), "config.json", &err);
    CHECKF(rc < 0, "accepted %.60s", json);
    CHECKF(rc >= 0 || strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    CHECK(rc >= 0 || !strncmp(err.msg, "config.json: ", 13));
}

static void test_config_bad(void) {
#define BASE "\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4"
    expect_bad_config("", "not valid JSON");
    expect_bad_config("{", "not valid JSON");
    expect_bad_config("[1]", "not a JSON object");
    expect_bad_config("{\"hidden_size\":\"7168\",\"num_hidden_layers\":2,\"num_attention_heads\":4}",
                      "\"hidden_size\" should be a non-negative integer, got a string");
    expect_bad_config("{" BASE ",\"vocab_size\":-5}", "\"vocab_size\" should be a non-negative integer");
    expect_bad_config("{" BASE ",\"vocab_size\":1.5}", "\"vocab_size\"");
    expect_bad_config("{" BASE ",\"vocab_size\":1e300}", "\"vocab_size\"");
    expect_bad_config("{" BASE ",\"rms_norm_eps\":\"1e-6\"}", "\"rms_norm_eps\" should be a number");
    expect_bad_config("{" BASE ",\"tie_word_embeddings\":1}", "\"tie_word_embeddings\" should be true or false");
    expect_bad_config("{" BASE ",\"architectures\":\"Qwen2ForCausalLM\"}", "\"architectures\" should be an array");
    expect_bad_config("{" BASE ",\"architectures\":[5]}", "\"architectures[0]\" should be a string");
    expect_bad_config("{" BASE ",\"model_type\":{}}", "\"model_type\" should be a string");
    expect_bad_config("{" BASE ",\"rope_scaling\":\"yarn\"}", "\"rope_scaling\" should be an object");
    expect_bad_config("{" BASE ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":\"40\"}}",
                      "\"rope_scaling.factor\" should be a number");
    expect_bad_config("{" BASE ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}}", "not supported");
    expect_bad_config("{" BASE ",\"rope_scaling\":{\"type\":3}}", "\"rope_scaling.type\" should be a string");
    expect_bad_config("{" BASE ",\"scoring_func\":\"relu\"}", "scoring_func 'relu'");
    expect_bad_config("{" BASE ",\"num_key_value_heads\":3}", "not a multiple");
    expect_bad_config("{" BASE ",\"n_routed_experts\":4,\"num_experts_per_tok\":8}", "exceeds");
    expect_bad_config("{\"hidden_size\":64,\"num_hidden_layers\":2}", "must all be present");
    expect_bad_config("{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":0}", "positive");
#undef BASE
}

/* ---- main ------------------------------------------------------------------------------------ */

static int rm_rf(const char *path) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/whale_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_valid_memory);
    RUN(test_dtypes);
    RUN(test_padding_and_empty);
    RUN(test_hostile);
    RUN(test_single_file_and_dir);
    RUN(test_sharded);
    RUN(test_bad_index);
    RUN(test_config_v3);
    RUN(test_config_v2_lite);
    RUN(test_config_qwen);
    RUN(test_config_other);
    RUN(test_config_bad);
    if (rm_rf(tmpdir) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_report("test_safetensors");
}
