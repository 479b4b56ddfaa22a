/* chat_format.c — conversations as segments (a marker or plain text), then either rendered as
 * a string or encoded: markers by exact vocabulary lookup, text as plain text. */
#include "engine/chat_format.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define R1_BOS "<｜begin▁of▁sentence｜>"
#define R1_USER "<｜User｜>"
#define R1_ASSISTANT "<｜Assistant｜>"
#define R1_EOS "<｜end▁of▁sentence｜>"
#define THINK_OPEN "<think>"
#define THINK_CLOSE "</think>"
#define IM_START "<|im_start|>"
#define IM_END "<|im_end|>"
#define QWEN_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
#define TOOL_CALL "<tool_call>"
#define TOOL_CALL_END "</tool_call>"
/* Qwen2.5's tools section, around the tools' JSON lines (its chat template's exact text) */
#define QWEN_TOOLS_HEAD "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" \
                        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
#define QWEN_TOOLS_TAIL "\n</tools>\n\nFor each function call, return a json object with function name and " \
                        "arguments within "

/* A conversation is built as a list of segments; `marker` segments are special tokens (2: one
 * that is plain text in a vocabulary without it, like <think> or <tool_call>). */
typedef struct seg {
    int marker;
    const char *s;
    size_t n;
} seg;

typedef struct segs {
    seg *v;
    size_t n, cap;
    int oom;
} segs;

static void add(segs *g, int marker, const char *s, size_t n) {
    if (g->oom || (!marker && n == 0)) return;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 32;
        seg *v = realloc(g->v, cap * sizeof *v);
        if (!v) { g->oom = 1; return; }
        g->v = v;
        g->cap = cap;
    }
    g->v[g->n++] = (seg){marker, s, n};
}
static void mark(segs *g, const char *s) { add(g, 1, s, strlen(s)); }
static void soft(segs *g, const char *s) { add(g, 2, s, strlen(s)); }
static void text(segs *g, const char *s) { add(g, 0, s, strlen(s)); }

static const char *role_name(chat_role r) {
    return r == CHAT_SYSTEM ? "system" : r == CHAT_USER ? "user" : r == CHAT_TOOL ? "tool" : "assistant";
}

/* The answer part of an assistant message: the text after its last </think>. */
static const char *after_think(const char *s) {
    const char *p = s, *last = NULL;
    while ((p = strstr(p, THINK_CLOSE))) last = p += strlen(THINK_CLOSE);
    return last ? last : s;
}

/* Qwen2.5's template for tools: the system turn with the tools section, assistant turns with
 * their <tool_call> blocks, and runs of tool results as one user turn of <tool_response>s. */
static void build_chatml_tools(segs *g, const chat_msg *m, size_t n, const chat_tools *tools, int flags) {
    size_t first = n > 0 && m[0].role == CHAT_SYSTEM;
    mark(g, IM_START);
    text(g, "system\n");
    text(g, first ? m[0].content : QWEN_DEFAULT_SYSTEM);
    text(g, QWEN_TOOLS_HEAD);
    for (size_t i = 0; i < tools->n; i++) {
        text(g, "\n");
        text(g, tools->json[i]);
    }
    text(g, QWEN_TOOLS_TAIL);
    soft(g, TOOL_CALL);
    soft(g, TOOL_CALL_END);
    text(g, " XML tags:\n");
    soft(g, TOOL_CALL);
    text(g, "\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n");
    soft(g, TOOL_CALL_END);
    mark(g, IM_END);
    text(g, "\n");
    for (size_t i = first; i < n; i++) {
        if (m[i].role == CHAT_TOOL) {
            if (i == 0 || m[i - 1].role != CHAT_TOOL) {
                mark(g, IM_START);
                text(g, "user");
            }
            text(g, "\n<tool_response>\n");
            text(g, m[i].content);
            text(g, "\n</tool_response>");
            if (i + 1 == n || m[i + 1].role != CHAT_TOOL) {
                mark(g, IM_END);
                text(g, "\n");
            }
            continue;
        }
        mark(g, IM_START);
        text(g, role_name(m[i].role));
        if (m[i].role == CHAT_ASSISTANT && m[i].n_tool_calls) {
            if (m[i].content[0]) {
                text(g, "\n");
                text(g, m[i].content);
            }
            for (size_t c = 0; c < m[i].n_tool_calls; c++) {
                text(g, "\n");
                soft(g, TOOL_CALL);
                text(g, "\n");
                text(g, m[i].tool_calls[c]);
                text(g, "\n");
                soft(g, TOOL_CALL_END);
            }
        } else {
            text(g, "\n");
            text(g, m[i].content);
        }
        mark(g, IM_END);
        text(g, "\n");
    }
    if (flags & CHAT_GENERATION_PROMPT) {
        mark(g, IM_START);
        text(g, "assistant\n");
    }
}

static void build(segs *g, chat_format_kind k, const chat_msg *m, size_t n, int flags) {
    if (k == CHAT_FORMAT_DEEPSEEK_R1) {
        const char *system = NULL;
        for (size_t i = 0; i < n; i++)
            if (m[i].role == CHAT_SYSTEM) system = m[i].content; /* the template keeps the last one */
        mark(g, R1_BOS);
        if (system) text(g, system);
        for (size_t i = 0; i < n; i++) {
            if (m[i].role == CHAT_USER) {
                mark(g, R1_USER);
                text(g, m[i].content);
            } else if (m[i].role == CHAT_ASSISTANT) {
                mark(g, R1_ASSISTANT);
                text(g, after_think(m[i].content));
                mark(g, R1_EOS);
            }
        }
        if (flags & CHAT_GENERATION_PROMPT) {
            mark(g, R1_ASSISTANT);
            if (!(flags & CHAT_NO_FORCED_THINK)) {
                mark(g, THINK_OPEN);
                text(g, "\n");
            }
        }
    } else if (k == CHAT_FORMAT_CHATML || k == CHAT_FORMAT_CHATML_THINK) {
        int thinks = k == CHAT_FORMAT_CHATML_THINK;
        size_t first = 0;
        mark(g, IM_START);
        if (n > 0 && m[0].role == CHAT_SYSTEM) {
            text(g, "system\n");
            text(g, m[0].content);
            first = 1;
        } else {
            text(g, "system\n" QWEN_DEFAULT_SYSTEM);
        }
        mark(g, IM_END);
        text(g, "\n");
        for (size_t i = first; i < n; i++) {
            mark(g, IM_START);
            text(g, role_name(m[i].role));
            text(g, "\n");
            text(g, thinks && m[i].role == CHAT_ASSISTANT ? after_think(m[i].content) : m[i].content);
            mark(g, IM_END);
            text(g, "\n");
        }
        if (flags & CHAT_GENERATION_PROMPT) {
            mark(g, IM_START);
            text(g, "assistant\n");
            if (thinks && !(flags & CHAT_NO_FORCED_THINK)) {
                soft(g, THINK_OPEN);
                text(g, "\n");
            }
        }
    }
}

const char *chat_format_name(chat_format_kind k) {
    return k == CHAT_FORMAT_DEEPSEEK_R1     ? "deepseek-r1"
           : k == CHAT_FORMAT_CHATML        ? "chatml"
           : k == CHAT_FORMAT_CHATML_THINK  ? "chatml-think"
                                            : "none";
}

int chat_format_thinks(chat_format_kind k) {
    return k == CHAT_FORMAT_DEEPSEEK_R1 || k == CHAT_FORMAT_CHATML_THINK;
}

/* The generation prompt of a ChatML template that forces thinking, as Jinja source spells it
 * (QwQ's template has exactly this) or with real newlines. */
#define CHATML_THINK_PROMPT_ESC "<|im_start|>assistant\\n<think>\\n"
#define CHATML_THINK_PROMPT_RAW "<|im_start|>assistant\n<think>\n"

const char chat_template_chatml_think[] =
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" QWEN_DEFAULT_SYSTEM "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] == 'system' %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + message['content'].split('</think>')[-1] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '" CHATML_THINK_PROMPT_ESC "' }}{%- endif %}";

chat_format_kind chat_format_detect(const char *tmpl, const tokenizer *t, const char *override) {
    if (override) {
        if (!strcmp(override, "deepseek-r1") || !strcmp(override, "r1")) return CHAT_FORMAT_DEEPSEEK_R1;
        if (!strcmp(override, "chatml")) return CHAT_FORMAT_CHATML;
        if (!strcmp(override, "chatml-think")) return CHAT_FORMAT_CHATML_THINK;
        return CHAT_FORMAT_NONE;
    }
    if (tmpl && strstr(tmpl, R1_ASSISTANT)) return CHAT_FORMAT_DEEPSEEK_R1;
    if (tmpl && (strstr(tmpl, CHATML_THINK_PROMPT_ESC) || strstr(tmpl, CHATML_THINK_PROMPT_RAW)))
        return CHAT_FORMAT_CHATML_THINK;
    if (tmpl && strstr(tmpl, IM_START)) return CHAT_FORMAT_CHATML;
    if (t && tokenizer_find_added(t, R1_ASSISTANT, strlen(R1_ASSISTANT)) >= 0) return CHAT_FORMAT_DEEPSEEK_R1;
    if (t && tokenizer_find_added(t, IM_START, strlen(IM_START)) >= 0) return CHAT_FORMAT_CHATML;
    return CHAT_FORMAT_NONE;
}

/* Exact-text lookup of a marker (markers are added tokens, outside the BPE index). */
static int32_t find_marker(const tokenizer *t, const char *s, size_t n) { return tokenizer_find_added(t, s, n); }

/* Tools (or tool messages, or calls in the history) need a format that has them. */
static int uses_tools(const chat_msg *m, size_t n, const chat_tools *tools) {
    int any = tools && tools->n;
    for (size_t i = 0; i < n; i++) any |= m[i].role == CHAT_TOOL || m[i].n_tool_calls;
    return any;
}

static void build_any(segs *g, chat_format_kind k, const chat_msg *m, size_t n, const chat_tools *tools, int flags) {
    if (k == CHAT_FORMAT_CHATML && uses_tools(m, n, tools)) {
        chat_tools none = {NULL, 0};
        build_chatml_tools(g, m, n, tools ? tools : &none, flags);
    } else {
        build(g, k, m, n, flags);
    }
}

int chat_format_encode(const tokenizer *t, chat_format_kind k, const chat_msg *msgs, size_t n, int flags,
                       tok_ids *out, whale_err *err) {
    return chat_format_encode_tools(t, k, msgs, n, NULL, flags, out, err);
}

int chat_format_encode_tools(const tokenizer *t, chat_format_kind k, const chat_msg *msgs, size_t n,
                             const chat_tools *tools, int flags, tok_ids *out, whale_err *err) {
    if (k == CHAT_FORMAT_NONE) return err_set(err, WHALE_E_UNSUPPORTED, "no chat format for this model (use --chat-format)");
    if (k != CHAT_FORMAT_CHATML && uses_tools(msgs, n, tools))
        return err_set(err, WHALE_E_UNSUPPORTED, "tools are not supported in the %s format", chat_format_name(k));
    segs g = {0};
    build_any(&g, k, msgs, n, tools, flags);
    int rc = g.oom ? err_set(err, WHALE_E_NOMEM, "out of memory") : 0;
    /* A soft marker the vocabulary lacks (<think> in Qwen2.5's) is text, and joins the text
     * around it: the template's rendered string is tokenized as one, so "<think>\n" must
     * pre-tokenize as ">\n", exactly as in a training example whose reply starts with it. */
    for (size_t i = 0; i < g.n; i++)
        if (g.v[i].marker && (g.v[i].marker == 2 || !strcmp(g.v[i].s, THINK_OPEN)) &&
            find_marker(t, g.v[i].s, g.v[i].n) < 0)
            g.v[i].marker = 0;
    for (size_t i = 0; i < g.n && !rc; i++) {
        if (g.v[i].marker) {
            int32_t id = find_marker(t, g.v[i].s, g.v[i].n);
            if (id < 0)
                rc = err_set(err, WHALE_E_UNSUPPORTED, "the vocabulary has no '%s' token needed by the %s format",
                             g.v[i].s, chat_format_name(k));
            else if (tok_ids_push(out, id))
                rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        } else {
            /* Adjacent text segments are one span for the pre-tokenizer, as in the template's
             * rendered string. */
            size_t j = i, len = 0;
            while (j < g.n && !g.v[j].marker) len += g.v[j++].n;
            char *buf = malloc(len + 1);
            if (!buf) { rc = err_set(err, WHALE_E_NOMEM, "out of memory"); break; }
            size_t k2 = 0;
            for (size_t q = i; q < j; q++) {
                memcpy(buf + k2, g.v[q].s, g.v[q].n);
                k2 += g.v[q].n;
            }
            rc = tokenizer_encode(t, buf, len, 0, out, err);
            free(buf);
            i = j - 1;
        }
    }
    free(g.v);
    return rc;
}

char *chat_format_render(chat_format_kind k, const chat_msg *msgs, size_t n, int flags) {
    return chat_format_render_tools(k, msgs, n, NULL, flags);
}

char *chat_format_render_tools(chat_format_kind k, const chat_msg *msgs, size_t n, const chat_tools *tools, int flags) {
    segs g = {0};
    build_any(&g, k, msgs, n, tools, flags);
    size_t len = 0;
    for (size_t i = 0; i < g.n; i++) len += g.v[i].n;
    char *s = g.oom ? NULL : malloc(len + 1);
    if (s) {
        size_t k2 = 0;
        for (size_t i = 0; i < g.n; i++) {
            memcpy(s + k2, g.v[i].s, g.v[i].n);
            k2 += g.v[i].n;
        }
        s[k2] = 0;
    }
    free(g.v);
    return s;
}
