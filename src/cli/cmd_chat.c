/* cmd_chat.c — `whale chat`: a multi-turn conversation in the terminal. Line editing and
 * history come from libedit; reasoning streams dimmed and is summed up as "Thought for N s"
 * (hidden entirely with /think off); Ctrl-C stops the reply being written and keeps the
 * session. Works on a pipe too (no prompt decoration), which is how the tests drive it. */
#include <editline/readline.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/strbuf.h"
#include "cli/cli.h"
#include "cli/gen.h"

/* Conversations longer than this many messages are not something a terminal session needs;
 * the bound keeps the message array fixed. */
#define CHAT_MAX_MESSAGES 1024

static volatile sig_atomic_t interrupted;


static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: whale chat [-m MODEL] [options]\n\n"
               "Talk with a model. Commands inside the chat:\n"
               "  /help              this list\n"
               "  /reset             forget the conversation\n"
               "  /system TEXT       set the system prompt (and reset)\n"
               "  /think on|off      show or hide the model's reasoning\n"
               "  /exit              leave (or Ctrl-D)\n"
               "Ctrl-C stops the reply being written.\n\noptions:\n"
               "  --system TEXT         a system prompt\n"
               "  --dump-prompt FILE    append each turn's prompt to FILE as token ids, one line per\n"
               "                        turn (for tests and debugging: `whale tokenize --decode`)\n%s",
            gen_flags_help);
}

typedef struct view {
    int tty, show_think, in_think_shown;
    double think_start, think_secs;
    int saw_think, saw_answer;
    strbuf reply; /* the whole reply: reasoning wrapped in <think></think>, then the answer */
} view;

static void append(view *v, const char *s, size_t n) { strbuf_add(&v->reply, s, n); }

static void end_think(view *v) {
    if (!v->saw_think || v->think_secs > 0) return;
    v->think_secs = clock_now_s() - v->think_start;
    if (v->in_think_shown && v->tty) fputs("\033[0m", stdout);
    printf("%s%s(Thought for %.0f s)%s\n\n", v->in_think_shown ? "\n" : "", v->tty ? "\033[2m" : "",
           v->think_secs < 1 ? 1.0 : v->think_secs, v->tty ? "\033[0m" : "");
    append(v, "</think>\n\n", 10);
}

static void sink(void *ctx, whale_text_kind kind, const char *text, size_t n) {
    view *v = ctx;
    if (kind == WHALE_TEXT_THINK) {
        if (!v->saw_think) {
            v->saw_think = 1;
            v->think_start = clock_now_s();
            append(v, "<think>\n", 8);
            if (v->show_think) {
                fputs(v->tty ? "\033[2m" : "", stdout);
                v->in_think_shown = 1;
            } else {
                printf("%sThinking...%s\n", v->tty ? "\033[2m" : "", v->tty ? "\033[0m" : "");
            }
        }
        append(v, text, n);
        if (v->show_think) fwrite(text, 1, n, stdout);
    } else {
        end_think(v);
        v->saw_answer = 1;
        append(v, text, n);
        fwrite(text, 1, n, stdout);
    }
    fflush(stdout);
}

/* libedit reads keys as characters of LC_CTYPE's charset: in the default "C" locale it drops
 * every byte above 0x7f, so a Chinese line arrives empty. Take the environment's LC_CTYPE when
 * it is UTF-8, else C.UTF-8 (a terminal sends UTF-8 even under LANG=C). Only LC_CTYPE: number
 * formatting and parsing (LC_NUMERIC) stay "C" everywhere. Call before the first readline(). */
static int codeset_utf8(void) {
    const char *cs = nl_langinfo(CODESET);
    return !strcmp(cs, "UTF-8") || !strcmp(cs, "utf8");
}

static void chat_locale_set(void) {
    if (setlocale(LC_CTYPE, "") && codeset_utf8()) return;
    static const char *const fallback[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8", "UTF-8"};
    for (size_t i = 0; i < sizeof fallback / sizeof fallback[0]; i++)
        if (setlocale(LC_CTYPE, fallback[i]) && codeset_utf8()) return;
    setlocale(LC_CTYPE, "C");
    fprintf(stderr, "whale chat: no UTF-8 locale here (tried C.UTF-8, en_US.UTF-8): text beyond ASCII typed "
                    "at the prompt may be lost\n");
}

/* Append the prompt's ids to the file at path as one space-separated line. Returns 0, or -1
 * when the file cannot be opened or written. */
static int dump_prompt(const char *path, const whale_ids *ids) {
    FILE *f = fopen(path, "a");
    if (!f) return -1;
    for (size_t i = 0; i < ids->n; i++) fprintf(f, "%s%d", i ? " " : "", (int)ids->v[i]);
    fputc('\n', f);
    return fclose(f) ? -1 : 0;
}

static char *read_line(int tty) {
    if (tty) return readline("\001\033[1m\002>>> \001\033[0m\002");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n') line[n - 1] = 0;
    return line;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    gen_opts_default(&o);
    char *system = NULL;
    const char *dump_path = NULL;
    for (int i = 1; i < argc; i++) {
        int r = gen_parse_flag(&o, argc, argv, &i, "chat");
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--system") && i + 1 < argc) { system = strdup(argv[++i]); continue; }
        if (!strcmp(argv[i], "--dump-prompt") && i + 1 < argc) { dump_path = argv[++i]; continue; }
        fprintf(stderr, "whale chat: bad option '%s' (see whale chat --help)\n", argv[i]);
        return 2;
    }
    if (o.logprobs >= 0) {
        fprintf(stderr, "whale chat: --logprobs is for whale run (run --json lists them)\n");
        free(system);
        return 2;
    }
    int tty = isatty(0) && isatty(1);
    if (tty) chat_locale_set();
    whale_err err = {0};
    whale_model *m = NULL;
    whale_engine *e = NULL;
    whale_model *draft = NULL;
    char *msg_text[CHAT_MAX_MESSAGES];
    whale_msg msgs[CHAT_MAX_MESSAGES];
    size_t n_msgs = 0;
    int rc = 1;
    if (gen_open_model(&o, isatty(2), &m)) {
        free(system);
        return 1;
    }
    const char *fmt = whale_chat_format(m, o.chat_format);
    if (!fmt) {
        fprintf(stderr, "whale chat: no chat format for this model (use --chat-format deepseek-r1|chatml|chatml-think)\n");
        goto done;
    }
    if (gen_open_engine(&o, m, 0, &e, &draft, "chat")) goto done;
    whale_model_info mi;
    whale_model_info_get(m, &mi);
    fprintf(stderr, "%s (%s, %s format), context %lld tokens. /help for commands, Ctrl-D to leave.\n",
            mi.name[0] ? mi.name : mi.path, mi.arch, fmt, (long long)whale_engine_n_ctx(e));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    int show_think = 1;
    for (;;) {
        interrupted = 0;
        char *line = read_line(tty);
        if (!line) {
            if (interrupted) { /* Ctrl-C at the prompt drops the line being typed */
                printf("\n");
                continue;
            }
            break;
        }
        if (!*line) { free(line); continue; }
        if (tty) add_history(line);
        if (line[0] == '/') {
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) { free(line); break; }
            else if (!strcmp(line, "/help")) printf("/reset  /system TEXT  /think on|off  /exit\n");
            else if (!strcmp(line, "/reset")) {
                for (size_t i = 0; i < n_msgs; i++) free(msg_text[i]);
                n_msgs = 0;
                printf("(conversation cleared)\n");
            } else if (!strncmp(line, "/system ", 8)) {
                free(system);
                system = strdup(line + 8);
                for (size_t i = 0; i < n_msgs; i++) free(msg_text[i]);
                n_msgs = 0;
                printf("(system prompt set; conversation cleared)\n");
            } else if (!strcmp(line, "/think on") || !strcmp(line, "/think off")) {
                show_think = line[8] == 'n';
                printf("(reasoning %s)\n", show_think ? "shown" : "hidden");
            } else printf("unknown command %s (/help)\n", line);
            free(line);
            continue;
        }
        if (n_msgs + 2 > CHAT_MAX_MESSAGES) {
            printf("(the conversation is too long; /reset to start again)\n");
            free(line);
            continue;
        }
        msg_text[n_msgs] = line;
        msgs[n_msgs] = (whale_msg){.role = WHALE_ROLE_USER, .content = line};
        n_msgs++;
        /* The system prompt goes first; msgs holds only user/assistant turns. */
        whale_msg all[CHAT_MAX_MESSAGES + 1];
        size_t n_all = 0;
        if (system) all[n_all++] = (whale_msg){.role = WHALE_ROLE_SYSTEM, .content = system};
        memcpy(all + n_all, msgs, n_msgs * sizeof *msgs);
        n_all += n_msgs;
        whale_ids ids = {0};
        int flags = WHALE_CHAT_GENERATION_PROMPT | (o.think ? 0 : WHALE_CHAT_NO_FORCED_THINK);
        if (whale_chat_apply(m, fmt, all, n_all, NULL, 0, flags, &ids, &err)) {
            fprintf(stderr, "whale: %s\n", err.msg);
            whale_ids_free(&ids);
            free(msg_text[--n_msgs]);
            continue;
        }
        if (dump_path && dump_prompt(dump_path, &ids)) {
            fprintf(stderr, "whale chat: cannot write %s\n", dump_path);
            whale_ids_free(&ids);
            free(msg_text[--n_msgs]);
            continue;
        }
        view v = {.tty = isatty(1), .show_think = show_think};
        gen_stats st = {0};
        int in_think = whale_chat_format_thinks(fmt) && o.think;
        int64_t n_ctx = whale_engine_n_ctx(e);
        int grc = (int64_t)ids.n >= n_ctx
                      ? err_set(&err, WHALE_E_ARG, "the conversation is %zu tokens, the context holds %lld", ids.n, (long long)n_ctx)
                      : gen_run(e, m, &o, ids.v, ids.n, in_think, &interrupted, sink, &v, &st, &err);
        size_t n_prompt = ids.n;
        whale_ids_free(&ids);
        if (v.in_think_shown && v.think_secs == 0 && v.tty) fputs("\033[0m", stdout);
        if (grc) {
            fprintf(stderr, "\nwhale: %s\n", err.msg);
            free(msg_text[--n_msgs]);
            strbuf_free(&v.reply);
            gen_stats_free(&st);
            if ((int64_t)n_prompt >= n_ctx) printf("(/reset to start a new conversation)\n");
            continue;
        }
        if (v.saw_think && v.think_secs == 0) append(&v, "</think>", 8); /* stopped while thinking */
        printf("%s\n%s[%zu tokens, %.1f tokens/s%s]%s\n", strcmp(st.finish, "cancelled") ? "" : "\n(stopped)",
               v.tty ? "\033[2m" : "", st.n_gen, st.n_gen > 1 && st.t_decode > 0 ? (double)(st.n_gen - 1) / st.t_decode : 0.0,
               !strcmp(st.finish, "length") ? ", context or token limit reached" : "", v.tty ? "\033[0m" : "");
        fflush(stdout);
        msg_text[n_msgs] = v.reply.s ? v.reply.s : strdup(""); /* taken: v.reply is not freed */
        msgs[n_msgs] = (whale_msg){.role = WHALE_ROLE_ASSISTANT, .content = msg_text[n_msgs]};
        n_msgs++;
        gen_stats_free(&st);
    }
    rc = 0;
done:
    for (size_t i = 0; i < n_msgs; i++) free(msg_text[i]);
    free(system);
    whale_engine_free(e);
    whale_model_close(draft);
    whale_model_close(m);
    return rc;
}
