/* main.c — the `whale` command: dispatches to one cmd_*.c per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "version.h" /* generated: build/gen/version.h */
#include "whale.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"chat", cmd_chat, "talk with a model in the terminal (reasoning shown, then the answer)"},
    {"serve", cmd_serve, "serve the model over an OpenAI / DeepSeek-compatible HTTP API"},
    {"admin", cmd_admin, "users, API keys, balances and prices of `whale serve --accounts`"},
    {"run", cmd_run, "answer one prompt (scripts and pipes; --json for one JSON object)"},
    {"pull", cmd_pull, "fetch a model by name (`whale list` shows them), or name a local one"},
    {"list", cmd_list, "the models here, their size on disk, and what can be pulled"},
    {"show", cmd_show, "one model by name: its catalog entry, file, architecture, size"},
    {"rm", cmd_rm, "remove a pulled model or forget a registered name"},
    {"data", cmd_data, "curated token shards from text (prepare), a BPE vocabulary (tokenizer)"},
    {"train", cmd_train, "pretrain or fine-tune a model on token shards (AdamW; checkpoints, --resume)"},
    {"eval", cmd_eval, "a model's accuracy on checkable tasks: pass@1, maj@K, format (arithmetic, word problems)"},
    {"distill", cmd_distill, "a teacher's verified reasoning traces as SFT data (rejection sampling, as R1)"},
    {"grpo", cmd_grpo, "reinforcement learning with verifiable rewards, as DeepSeek-R1-Zero (GRPO)"},
    {"info", cmd_info, "show a model file's architecture, hyperparameters, tokenizer and tensors"},
    {"tokenize", cmd_tokenize, "turn standard input into token ids"},
    {"convert", cmd_convert, "convert a Hugging Face checkpoint to GGUF (f32, f16, bf16, q8_0)"},
    {"quantize", cmd_quantize, "re-quantize a GGUF file or a checkpoint (f16, bf16, q8_0, q4_k, q6_k, q4_k_m)"},
    {"merge", cmd_merge, "bake a LoRA adapter (PEFT) into a GGUF model (changed matrices as q8_0 or f16)"},
    {"synth", cmd_synth, "write a random-weight GGUF of a real model's shape (benchmarks, memory tests)"},
    {"bench", cmd_bench, "prompt and generation speed like llama-bench, with bytes/token and memory bandwidth"},
    {"perplexity", cmd_perplexity, "perplexity of the model on a text file"},
    {"logits", cmd_logits, "run a prompt and show the logits (checking against a reference)"},
};

static void usage(FILE *f) {
    fprintf(f, "whale %s — DeepSeek-family models in C\n\nusage: whale <command> [options]\n\n"
               "commands:\n", WHALE_VERSION_FULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`whale <command> --help` shows a command's options; `whale --version` (-V) the version\n"
               "and the git commit it was built from.\n"
               "Models: -m NAME (a catalog or registered name: `whale list`), -m PATH (a .gguf file, a\n"
               "safetensors directory) or nothing for the default model (in $WHALE_HOME/models, WHALE_HOME\n"
               "defaults to ~/.cache/whale).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("whale %s\n", WHALE_VERSION_FULL);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "whale: unknown command '%s' (see `whale --help`)\n", argv[1]);
    return 2;
}
