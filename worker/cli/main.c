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
          "  tail    print the messages of a topic as JSON lines\n"
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
  if (!strcmp(cmd, "tail")) return cmd_tail_main(argc - 1, argv + 1);
  fprintf(stderr, "assistant-worker: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
