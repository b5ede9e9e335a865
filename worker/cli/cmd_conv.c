/* cmd_conv.c -- the conversation requests on the command line: `history`,
 * `append`, `reset`, `delete`, `cancel` (README, "Conversation requests").
 *
 * Why one file for five commands: they share everything but a few options --
 * each builds one request of its kind (contract_kind) for one conversation,
 * publishes it and waits for its response through cli_request.c exactly as
 * `send` does, and exits as `send` does.  A table of kinds keeps the
 * differences (options accepted, help text) in one place.
 *
 * Output: the response as one JSON line, except `history`, which prints what
 * a person reading a conversation wants: one JSON line per message (the
 * message as in the response, plus "text", its text parts joined), then one
 * line {"page": {...}} with the page's cursors; `history --json` prints the
 * response instead.  Whatever the command, a response whose status is not
 * "completed" is printed whole (the error is in it) and the exit status is 1.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "cli_request.h"
#include "config.h"
#include "contract.h"

typedef struct conv_cmd {
  const char *name;
  contract_kind kind;
  const char *synopsis; /* after "--conversation ID" */
  const char *what;     /* what it does */
  const char *options;  /* its own options' help lines, or "" */
} conv_cmd;

static const conv_cmd cmds[] = {
    {"history", CONTRACT_KIND_HISTORY, "[--limit N] [--after ID | --before ID] [--order asc|desc] [--json]",
     "Print one page of the conversation's messages (user and assistant messages; tool calls are\n"
     "not listed): one JSON line per message -- the message as in the response (id, role,\n"
     "created_at, content with annotations) plus \"text\", its text joined -- then one line\n"
     "{\"page\": {\"has_more\", \"first_id\", \"last_id\"}}.  Pass last_id as --after (in the same order)\n"
     "for the next page.\n",
     "  --limit N          messages per page, 1..100 (default 20)\n"
     "  --after ID         the page after message ID (a cursor from an earlier page)\n"
     "  --before ID        the page before message ID (at most one of --after, --before)\n"
     "  --order asc|desc   oldest or newest first (default desc: newest first)\n"
     "  --json             print the response as one JSON line instead\n"},
    {"append", CONTRACT_KIND_APPEND, "[--role user|assistant] TEXT [[--role R] TEXT]...",
     "Add messages to the conversation without starting a turn (the backend conversation is\n"
     "created if there is none yet): each TEXT is one message, whose role is the last --role\n"
     "given before it (default user), at most 16.  Prints the response (the messages added,\n"
     "with their ids) as one JSON line.\n",
     "  --role user|assistant  role of the TEXTs that follow (default user)\n"
     "  --                     every later argument is a TEXT (for a TEXT starting with -)\n"},
    {"reset", CONTRACT_KIND_RESET, "",
     "Forget the conversation's backend conversation: its next message starts a new one (the old\n"
     "one is kept, or deleted when worker.reset_deletes_old is true).  Prints the response as one\n"
     "JSON line; its backend.conversation is the old handle (null if none).\n",
     ""},
    {"delete", CONTRACT_KIND_DELETE, "",
     "Delete the backend conversation and every key the fleet holds for the conversation\n"
     "(right to erasure); its next message starts fresh.  Prints the response as one JSON line;\n"
     "its backend.conversation is the deleted handle (null if none).\n",
     ""},
    {"cancel", CONTRACT_KIND_CANCEL, "[--target EVENT_ID]",
     "Cancel the conversation's active turn (handled as soon as a worker consumes it, not queued\n"
     "behind that turn); the cancelled event is answered status cancelled.  Prints the response as\n"
     "one JSON line; its cancelled_event_id is the event cancelled, null if no turn was active.\n",
     "  --target EVENT_ID  cancel only if EVENT_ID's turn is the active one\n"},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

static void usage(const conv_cmd *k, FILE *f) {
  fprintf(f,
          "usage: assistant-worker %s --conversation ID %s\n"
          "       %*s [--event-id ID] [--timeout-ms N] [--config FILE]\n"
          "\n"
          "%s"
          "\n"
          "  --conversation ID  conversation id (the Kafka key), required\n"
          "%s"
          "  --event-id ID      event id (default: a random UUIDv4)\n"
          "  --timeout-ms N     give up after N ms (default 60000)\n"
          "  --config FILE      configuration file (default: $AW_CONFIG; env overrides it)\n"
          "Exit status: 0 completed, 1 any other status (the response is printed whole),\n"
          "2 usage/infrastructure error or timeout.\n",
          k->name, k->synopsis, (int)(strlen("assistant-worker ") + strlen(k->name)), "", k->what, k->options);
}

static const conv_cmd *find_cmd(const char *name) {
  for (size_t i = 0; i < NCMDS; i++)
    if (strcmp(cmds[i].name, name) == 0) return &cmds[i];
  return NULL;
}

/* The text parts of a response message joined, as a new cJSON string. */
static cJSON *joined_text(const cJSON *msg) {
  buf b;
  buf_init(&b, 64u * 1024 * 1024);
  const cJSON *part;
  cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(msg, "content")) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "value");
    if (cJSON_IsString(v) && buf_append(&b, v->valuestring, strlen(v->valuestring))) break;
  }
  cJSON *s = cJSON_CreateString(b.data ? b.data : "");
  buf_free(&b);
  return s;
}

/* history's readable output: a line per message, then the page. */
static void print_history(const cJSON *response) {
  const cJSON *m;
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(response, "messages")) {
    cJSON *line = cJSON_Duplicate(m, 1);
    if (!line) continue;
    cJSON *t = joined_text(m);
    if (t) cJSON_AddItemToObject(line, "text", t);
    clir_print_json(line);
    cJSON_Delete(line);
  }
  cJSON *page = cJSON_CreateObject();
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(response, "page");
  cJSON *copy = p ? cJSON_Duplicate(p, 1) : cJSON_CreateNull();
  if (page && copy) {
    cJSON_AddItemToObject(page, "page", copy);
    copy = NULL;
    clir_print_json(page);
  }
  cJSON_Delete(copy);
  cJSON_Delete(page);
}

static int parse_limit(const char *v, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < 1 || x > CONTRACT_HISTORY_LIMIT_MAX) return -1;
  *out = x;
  return 0;
}

/** `history`, `append`, `reset`, `delete`, `cancel` (argv[0]): see usage(). */
int cmd_conv_main(int argc, char **argv) {
  const conv_cmd *k = argc > 0 ? find_cmd(argv[0]) : NULL;
  if (!k) {
    fprintf(stderr, "assistant-worker: not a conversation request command: %s\n", argc > 0 ? argv[0] : "");
    return 2;
  }
  clir_common o;
  clir_common_init(&o, k->name);
  contract_request r;
  memset(&r, 0, sizeof r);
  r.v = CONTRACT_VERSION;
  r.kind = k->kind;
  contract_part parts[CONTRACT_APPEND_MAX_MESSAGES];
  contract_in_message msgs[CONTRACT_APPEND_MAX_MESSAGES];
  const char *role = "user";
  int raw_json = 0, only_texts = 0;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    int is_opt = !only_texts && a[0] == '-' && a[1];
    if (is_opt && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
      usage(k, stdout);
      return 0;
    }
    if (is_opt && strcmp(a, "--") == 0 && k->kind == CONTRACT_KIND_APPEND) {
      only_texts = 1;
      continue;
    }
    if (is_opt) {
      int taken = clir_common_arg(&o, argc, argv, &i);
      if (taken < 0) return 2;
      if (taken) continue;
    }
    const char **dst = NULL;
    if (is_opt && k->kind == CONTRACT_KIND_HISTORY && strcmp(a, "--json") == 0) {
      raw_json = 1;
      continue;
    } else if (is_opt && k->kind == CONTRACT_KIND_HISTORY && strcmp(a, "--after") == 0) {
      dst = &r.after;
    } else if (is_opt && k->kind == CONTRACT_KIND_HISTORY && strcmp(a, "--before") == 0) {
      dst = &r.before;
    } else if (is_opt && k->kind == CONTRACT_KIND_CANCEL && strcmp(a, "--target") == 0) {
      dst = &r.target_event_id;
    } else if (is_opt && k->kind == CONTRACT_KIND_HISTORY &&
               (strcmp(a, "--limit") == 0 || strcmp(a, "--order") == 0)) {
      /* checked below */
    } else if (is_opt && k->kind == CONTRACT_KIND_APPEND && strcmp(a, "--role") == 0) {
      /* checked below */
    } else if (is_opt) {
      fprintf(stderr, "assistant-worker %s: unknown option %s (see --help)\n", k->name, a);
      return 2;
    } else if (k->kind == CONTRACT_KIND_APPEND) {
      if (!*a) {
        fprintf(stderr, "assistant-worker %s: TEXT must not be empty\n", k->name);
        return 2;
      }
      if (r.nmessages == CONTRACT_APPEND_MAX_MESSAGES) {
        fprintf(stderr, "assistant-worker %s: at most %d messages\n", k->name, CONTRACT_APPEND_MAX_MESSAGES);
        return 2;
      }
      parts[r.nmessages] = (contract_part){.type = CONTRACT_PART_TEXT, .text = a, .text_len = strlen(a)};
      msgs[r.nmessages] = (contract_in_message){role, &parts[r.nmessages], 1};
      r.nmessages++;
      continue;
    } else {
      fprintf(stderr, "assistant-worker %s: unexpected argument '%s' (see --help)\n", k->name, a);
      return 2;
    }
    if (!next) {
      fprintf(stderr, "assistant-worker %s: %s needs a value\n", k->name, a);
      return 2;
    }
    i++;
    if (dst) {
      if (!*next) {
        fprintf(stderr, "assistant-worker %s: %s must not be empty\n", k->name, a);
        return 2;
      }
      *dst = next;
    } else if (strcmp(a, "--limit") == 0) {
      if (parse_limit(next, &r.limit)) {
        fprintf(stderr, "assistant-worker %s: --limit needs an integer in [1, %d]\n", k->name,
                CONTRACT_HISTORY_LIMIT_MAX);
        return 2;
      }
    } else if (strcmp(a, "--order") == 0) {
      if (strcmp(next, "asc") != 0 && strcmp(next, "desc") != 0) {
        fprintf(stderr, "assistant-worker %s: --order is asc or desc\n", k->name);
        return 2;
      }
      r.order_asc = strcmp(next, "asc") == 0;
    } else { /* --role */
      if (strcmp(next, "user") != 0 && strcmp(next, "assistant") != 0) {
        fprintf(stderr, "assistant-worker %s: --role is user or assistant\n", k->name);
        return 2;
      }
      role = next;
    }
  }
  if (r.after && r.before) {
    fprintf(stderr, "assistant-worker %s: at most one of --after and --before\n", k->name);
    return 2;
  }
  if (k->kind == CONTRACT_KIND_APPEND && r.nmessages == 0) {
    fprintf(stderr, "assistant-worker %s: at least one TEXT is required\n\n", k->name);
    usage(k, stderr);
    return 2;
  }
  if (!o.conv) {
    fprintf(stderr, "assistant-worker %s: --conversation is required\n\n", k->name);
    usage(k, stderr);
    return 2;
  }
  if (clir_common_check(&o)) return 2;
  if (r.nmessages) r.messages = msgs;
  r.event_id = o.event_id;
  r.conversation_id = o.conv;

  cfg c;
  if (clir_load_config(&o, &c)) return 2;
  cJSON *response = NULL;
  char err[512];
  int status = 2;
  if (clir_request(&c, &o, &r, NULL, NULL, &response, err, sizeof err)) {
    fprintf(stderr, "assistant-worker %s: %s\n", k->name, err);
  } else {
    status = clir_exit_status(&o, response);
    if (k->kind == CONTRACT_KIND_HISTORY && !raw_json && status == 0) print_history(response);
    else clir_print_json(response);
  }
  cJSON_Delete(response);
  cfg_free(&c);
  return status;
}
