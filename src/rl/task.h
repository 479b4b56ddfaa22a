/* task.h — verifiable reasoning tasks: problems with a reference answer and the verifier that
 * checks a reply (verify.h), for `whale eval` and reinforcement learning.
 *
 * Owns the built-in generators and user task files. Does not own prompting the model (eval.h)
 * or judging replies (verify.h).
 *
 * Built-in tasks are seeded generators: item `index` of a split for a seed is always the same
 * problem. The train and test ("held-out") splits are disjoint by construction: a problem's
 * split is a function of the problem itself (a hash of its numbers, not of its index or its
 * wording), so no problem can be drawn into both; about one problem in RL_TEST_ONE_IN is a
 * test problem. Items may repeat within a split (draws are independent).
 *   arith      multi-digit +, -, *            answer: a number
 *   arith_small  2-3 digit + and - only (arith at a size tiny models learn)
 *   countdown  reach a target from 3-4 numbers with + - * / (each number at most once)
 *   linear     solve a*x + b = c for integer x
 *   word_en    English word problems: money, rates with hours and minutes, percent discounts,
 *              perimeters, two numbers from their sum and difference, multi-digit
 *              multiplication, sharing by division; integer answers
 *   word_zh    the same problems in Chinese
 *   word       word_en and word_zh, half each; each problem keyed as its language's task, so
 *              the three share one held-out split
 * User tasks are JSONL files, one problem a line:
 *   {"prompt": "...", "answer": "..." or a number, "verifier": "number"|"exact"|"regex"}
 * ("verifier" may be left out: number). A file is one set: both splits give its lines in
 * order (keep training and held-out problems in two files). */
#ifndef WHALE_RL_TASK_H
#define WHALE_RL_TASK_H

#include <stdint.h>

#include "rl/verify.h"
#include "whale.h"

/* One problem in RL_TEST_ONE_IN goes to the test split: 10% held out, as is usual. */
#define RL_TEST_ONE_IN 10
/* A generated problem's text: the longest template with its numbers is under 400 bytes. */
#define RL_PROMPT_MAX 512
/* A generated reference answer. */
#define RL_REF_MAX 32
/* A user task file larger than this is a mistake (a JSONL of a million problems is ~100 MiB). */
#define RL_JSONL_MAX_BYTES (256u << 20)

enum rl_split { RL_SPLIT_TRAIN = 0, RL_SPLIT_TEST = 1 };

typedef struct rl_task rl_task;

/* One problem. Do not copy an rl_item by value: prompt and ref.answer may point into its own
 * buffers (generated tasks) or into the task (files; valid while the task lives). */
typedef struct rl_item {
    const char *prompt; /* the problem, UTF-8 */
    rl_ref ref;         /* what rl_verify compares the reply's answer with */
    uint64_t key;       /* hash of the problem (its split follows from it); 0 for file tasks */
    char text[RL_PROMPT_MAX];
    char answer[RL_REF_MAX];
} rl_item;

/* A built-in task by name, or NULL. Static: never freed. */
const rl_task *rl_task_find(const char *name);
/* The i-th built-in task, or NULL past the last (for listings). */
const rl_task *rl_task_builtin(int i);
const char *rl_task_name(const rl_task *t);
const char *rl_task_about(const rl_task *t); /* one line for --help */
/* The built-in tasks' names joined by ", " into buf (cut to cap), for help and error texts. */
void rl_task_names(char *buf, size_t cap);

/* Load a JSONL task file. Returns 0 and *out (free with rl_task_free), or WHALE_E_IO (cannot
 * read), WHALE_E_FORMAT with "FILE:LINE: what is wrong" for the first malformed line (not JSON,
 * not an object, prompt missing or not a string, answer missing, an unknown verifier, a number
 * answer that is not one number, a regex that does not compile), or for a file with no
 * problems. */
int rl_task_load_jsonl(const char *path, rl_task **out, whale_err *err);
/* A built-in task by name, else a JSONL task file: *out is the task, *owned the loaded file's
 * (free it with rl_task_free; NULL for a built-in one). WHALE_E_NOTFOUND naming the argument
 * when it is neither, or rl_task_load_jsonl's error. */
int rl_task_open(const char *arg, const rl_task **out, rl_task **owned, whale_err *err);
/* Free a loaded task; built-in tasks and NULL are left alone. */
void rl_task_free(const rl_task *t);

/* Problems in a split: the number of lines for a file task, -1 for a generator (unbounded). */
int64_t rl_task_size(const rl_task *t, int split);

/* Problem `index` of `split` for `seed` into *out. Returns 0, or WHALE_E_ARG for a split other
 * than the two, a negative index, or an index past a file's last line. */
int rl_task_item(const rl_task *t, int split, int64_t index, uint64_t seed, rl_item *out,
                 whale_err *err);

#endif
