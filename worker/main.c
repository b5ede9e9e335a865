/* main.c -- assistant-worker entry point: dispatches subcommands. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "assistant-worker: not built yet\n");
  return 2;
}
