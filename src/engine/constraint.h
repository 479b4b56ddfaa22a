/* constraint.h — logit constraints for the scheduler (sched_constraint): JSON mode keeps an
 * answer a valid JSON object; tool mode keeps what a model writes between <tool_call> and
 * </tool_call> a JSON object, and can force a reply to start with a call.
 *
 * A constraint works on token bytes: a token may come next when its bytes keep the text a valid
 * JSON prefix (engine/json_grammar.h). Those bytes come from a constraint_vocab, built once per
 * model and shared, read-only, by every constraint made from it (any thread).
 * Owns: the vocabulary's byte table and each constraint's state. Does not own: the tokenizer
 * (borrowed), parsing requests or writing replies (the service, the CLI). */
#ifndef WHALE_ENGINE_CONSTRAINT_H
#define WHALE_ENGINE_CONSTRAINT_H

#include "engine/scheduler.h"
#include "tokenizer/tokenizer.h"

/* Every token's bytes, and the ids a constraint watches for (</think>, <tool_call>,
 * </tool_call>). */
typedef struct constraint_vocab constraint_vocab;

/* Build the table for tokenizer t. Returns it, or NULL on out of memory. t is borrowed: it must
 * outlive the table and every constraint made from it. */
constraint_vocab *constraint_vocab_new(const tokenizer *t);
void constraint_vocab_free(constraint_vocab *v);

/* JSON mode: the answer stays a valid JSON object, then the turn ends (EOS or a control token).
 * start_in_think: the reply starts inside a reasoning model's thinking, which is left free; the
 * object starts after </think>. Returns the constraint (hand it to sched_params.constraint: the
 * struct itself stays the caller's, its ctx goes to the scheduler on a successful submit; else
 * free both with k->free(k->ctx) and free(k)), or NULL on out of memory. */
sched_constraint *constraint_json(const constraint_vocab *v, int start_in_think);

/* Tools: once a call opens (the <tool_call> token, or the text spelled out), what follows is
 * kept a JSON object, then only whitespace and </tool_call> (token or text) may come; small
 * models otherwise drift into other syntaxes. A vocabulary without the marker tokens is
 * constrained through the spelled-out text alone. force: 0 the model may answer freely; 1
 * ("required") the reply starts with "<tool_call>\n"; 2 it starts with "<tool_call>\n{\"name\":
 * \"<name>\", \"arguments\": {" (name: required then, borrowed for the call). Returns the
 * constraint (owned as with constraint_json), or NULL on out of memory or force 2 without a
 * name. */
sched_constraint *constraint_tools(const constraint_vocab *v, int force, const char *name);

#endif
