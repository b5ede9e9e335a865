/* main.c -- assistant-worker entry point: dispatches subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_run_main(int argc, char **argv);

static void usage(FILE *f) {
  fprintf(f,
          "usage: assistant-worker <command> [options]\n"
          "\n"
          "Commands:\n"
          "  run     consume requests from Kafka and answer them (the daemon)\n"
          "  send    publish one request and print its deltas and response\n"
          "  history print a page of a conversation's messages\n"
          "  append  add messages to a conversation without a turn\n"
          "  reset   make a conversation's next message start a new backend conversation\n"
          "  delete  delete a conversation and everything the fleet keeps of it\n"
          "  cancel  cancel a conversation's active turn\n"
          "  tail    print the messages of a topic as JSON lines\n"
          "  file    put, get, rm, ls files of the API (the Files API)\n"
          "  sync    upload the configured knowledge to its vector stores, once\n"
          "\n"
          "`assistant-worker <command> --help` describes each command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "run")) return cmd_run_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "send")) return cmd_send_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "history") || !strcmp(cmd, "append") || !strcmp(cmd, "reset") || !strcmp(cmd, "delete") ||
      !strcmp(cmd, "cancel"))
    return cmd_conv_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "tail")) return cmd_tail_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "file")) return cmd_file_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "sync")) return cmd_sync_main(argc - 1, argv + 1);
  fprintf(stderr, "assistant-worker: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
