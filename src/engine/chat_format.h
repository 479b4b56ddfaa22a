/* chat_format.h — a conversation laid out as the model was trained to read it, as token ids.
 *
 * DEEPSEEK_R1: what the R1 / R1-Distill chat template renders: BOS, the system prompt, then
 *   <｜User｜>text and <｜Assistant｜>answer<｜end▁of▁sentence｜> per turn (an assistant turn keeps only
 *   the text after its last </think>: earlier reasoning is dropped from the history), and the
 *   generation prompt <｜Assistant｜><think>\n, which forces the model to start by thinking.
 * CHATML: Qwen2's <|im_start|>role\ntext<|im_end|>\n, with Qwen's default system prompt when none
 *   is given, and the generation prompt <|im_start|>assistant\n.
 * CHATML_THINK: ChatML for a reasoning model (QwQ's layout, and Whale's default-r1): the
 *   generation prompt is <|im_start|>assistant\n<think>\n, which forces thinking, and an
 *   assistant turn in the history keeps only the text after its last </think>, as R1's does.
 * Special tokens come only from here, looked up by their exact text; message contents are always
 * tokenized as plain text, so typing "<｜User｜>" or "<|im_end|>" in a message cannot forge a turn.
 * Owns nothing beyond the call. */
#ifndef WHALE_ENGINE_CHAT_FORMAT_H
#define WHALE_ENGINE_CHAT_FORMAT_H

#include <stddef.h>

#include "tokenizer/tokenizer.h"

typedef enum chat_format_kind {
    CHAT_FORMAT_NONE = 0,
    CHAT_FORMAT_DEEPSEEK_R1,
    CHAT_FORMAT_CHATML,
    CHAT_FORMAT_CHATML_THINK
} chat_format_kind;

typedef enum chat_role {
    CHAT_SYSTEM = WHALE_ROLE_SYSTEM,
    CHAT_USER = WHALE_ROLE_USER,
    CHAT_ASSISTANT = WHALE_ROLE_ASSISTANT,
    CHAT_TOOL = WHALE_ROLE_TOOL
} chat_role;

/* A message: the public whale_msg (role, UTF-8 content borrowed, an assistant's function calls
 * as the JSON text {"name": ..., "arguments": {...}} the model writes — CHATML: Qwen2.5's
 * <tool_call> blocks; CHAT_TOOL messages carry results). */
typedef whale_msg chat_msg;

/* Function tools offered to the model, each as its JSON text (rendered as the template's tojson
 * would: Python's json.dumps layout). Only CHATML has a tools section. */
typedef struct chat_tools {
    const char *const *json;
    size_t n;
} chat_tools;

enum {
    CHAT_GENERATION_PROMPT = 1, /* end with the assistant's opening */
    CHAT_NO_FORCED_THINK = 2,   /* R1, CHATML_THINK: leave out the "<think>\n" that opens the reply */
};

/* The format for a model: by name when override is given ("deepseek-r1", "chatml",
 * "chatml-think"), else from its chat template text (ChatML whose generation prompt opens
 * <think> is CHATML_THINK), else from which turn markers its vocabulary has. CHAT_FORMAT_NONE when
 * nothing fits (or an unknown override name). */
chat_format_kind chat_format_detect(const char *chat_template, const tokenizer *t, const char *override);
const char *chat_format_name(chat_format_kind k);
/* Whether the format's generation prompt opens the reply inside <think> (a reasoning model). */
int chat_format_thinks(chat_format_kind k);
/* A Jinja chat template that chat_format_detect reads as CHATML_THINK and renders what
 * chat_format_encode does for it (Qwen's default system prompt; no tools), for models Whale
 * makes (whale merge --chat-format chatml-think). */
extern const char chat_template_chatml_think[];

/* Append the conversation's token ids to out. Returns 0, WHALE_E_UNSUPPORTED when the
 * vocabulary lacks a marker the format needs, WHALE_E_ARG for invalid UTF-8 in a message. */
int chat_format_encode(const tokenizer *t, chat_format_kind k, const chat_msg *msgs, size_t n, int flags,
                       tok_ids *out, whale_err *err);
/* The same with tools (NULL or n == 0: none). WHALE_E_UNSUPPORTED for tools or tool messages in
 * a format without them (DEEPSEEK_R1 here). */
int chat_format_encode_tools(const tokenizer *t, chat_format_kind k, const chat_msg *msgs, size_t n,
                             const chat_tools *tools, int flags, tok_ids *out, whale_err *err);
/* The same conversation as text (markers spelled out), malloc'd; NULL on OOM. For tests and
 * --verbose; equal to what the model's Jinja template renders. */
char *chat_format_render(chat_format_kind k, const chat_msg *msgs, size_t n, int flags);
char *chat_format_render_tools(chat_format_kind k, const chat_msg *msgs, size_t n, const chat_tools *tools, int flags);

#endif
