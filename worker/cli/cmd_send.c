/* cmd_send.c -- `assistant-worker send`: publish one user message, print its answer.
 *
 * The publishing and the waiting (consumer positioned before the request is
 * produced, deltas drained before the response is printed) are
 * cli_request.c's, shared with the conversation requests (cmd_conv.c); this
 * file is the command's options and its output: each streamed delta as it
 * arrives, then the response, one JSON line each.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include "cli_request.h"
#include "config.h"
#include "contract.h"

static void usage(FILE *f) {
  fputs("usage: assistant-worker send --conversation ID [--assistant NAME] [--stream]\n"
        "                             [--event-id ID] [--timeout-ms N] [--config FILE] TEXT\n"
        "\n"
        "Publish TEXT as a user message of conversation ID and wait for the answer.\n"
        "Prints each streamed delta (with --stream) and then the response, one JSON line each.\n"
        "\n"
        "  --conversation ID  conversation id (the Kafka key), required\n"
        "  --assistant NAME   configured assistant name or asst_... id\n"
        "                     (default: the first configured assistant)\n"
        "  --stream           ask for deltas and print them as they arrive\n"
        "  --event-id ID      event id (default: a random UUIDv4)\n"
        "  --timeout-ms N     give up after N ms (default 60000)\n"
        "  --config FILE      configuration file (default: $AW_CONFIG; env overrides it)\n"
        "Exit status: 0 completed, 1 any other status, 2 usage/infrastructure error or timeout.\n",
        f);
}

static void print_delta(const cJSON *delta, void *opaque) {
  (void)opaque;
  clir_print_json(delta);
}

/** `send`: see usage(). */
int cmd_send_main(int argc, char **argv) {
  clir_common o;
  clir_common_init(&o, "send");
  const char *assistant = NULL, *text = NULL;
  int stream = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--stream") == 0) {
      stream = 1;
    } else if (strcmp(a, "--") == 0) {
      if (text || i + 2 != argc) {
        fputs("assistant-worker send: exactly one TEXT argument expected (quote it)\n", stderr);
        return 2;
      }
      text = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      int taken = clir_common_arg(&o, argc, argv, &i);
      if (taken < 0) return 2;
      if (taken) continue;
      if (strcmp(a, "--assistant") != 0) {
        fprintf(stderr, "assistant-worker send: unknown option %s (see --help)\n", a);
        return 2;
      }
      if (i + 1 >= argc) {
        fprintf(stderr, "assistant-worker send: %s needs a value\n", a);
        return 2;
      }
      assistant = argv[++i];
    } else if (text) {
      fputs("assistant-worker send: exactly one TEXT argument expected (quote it)\n", stderr);
      return 2;
    } else {
      text = a;
    }
  }
  if (!o.conv || !text) {
    fprintf(stderr, "assistant-worker send: %s is required\n\n", !o.conv ? "--conversation" : "TEXT");
    usage(stderr);
    return 2;
  }
  if (!*text) {
    fputs("assistant-worker send: TEXT must not be empty\n", stderr);
    return 2;
  }
  if (clir_common_check(&o)) return 2;

  cfg c;
  if (clir_load_config(&o, &c)) return 2;
  if (!assistant) {
    if (c.nassistants == 0) {
      fputs("assistant-worker send: --assistant is required (no assistant is configured)\n", stderr);
      cfg_free(&c);
      return 2;
    }
    assistant = c.assistants[0].name;
  }

  contract_part part = {.type = CONTRACT_PART_TEXT, .text = text, .text_len = strlen(text)};
  contract_request r;
  memset(&r, 0, sizeof r);
  r.v = CONTRACT_VERSION;
  r.kind = CONTRACT_KIND_MESSAGE;
  r.event_id = o.event_id;
  r.conversation_id = o.conv;
  r.assistant = assistant;
  r.parts = &part;
  r.nparts = 1;
  r.stream = stream;
  cJSON *response = NULL;
  char err[512];
  int status = 2;
  if (clir_request(&c, &o, &r, stream ? print_delta : NULL, NULL, &response, err, sizeof err)) {
    fprintf(stderr, "assistant-worker send: %s\n", err);
  } else {
    clir_print_json(response);
    status = clir_exit_status(&o, response);
  }
  cJSON_Delete(response);
  cfg_free(&c);
  return status;
}
