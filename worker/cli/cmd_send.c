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
#include <stdlib.h>
#include "cli_files.h"
#include "cli_request.h"
#include "config.h"
#include "contract.h"

static void usage(FILE *f) {
  fputs("usage: assistant-worker send --conversation ID [--assistant NAME] [--stream]\n"
        "                             [--image PATH|URL]... [--attach PATH[:TOOLS]]...\n"
        "                             [--include-steps] [--save-files DIR]\n"
        "                             [--event-id ID] [--timeout-ms N] [--config FILE] TEXT\n"
        "\n"
        "Publish TEXT as a user message of conversation ID and wait for the answer.\n"
        "Prints each streamed delta (with --stream) and then the response, one JSON line each.\n"
        "\n"
        "  --conversation ID  conversation id (the Kafka key), required\n"
        "  --assistant NAME   configured assistant name or asst_... id\n"
        "                     (default: the first configured assistant)\n"
        "  --stream           ask for deltas and print them as they arrive\n"
        "  --image PATH|URL   an image part after the text: an http(s):// or data: URL, or a\n"
        "                     local png/jpeg/gif/webp file sent inline (repeatable)\n"
        "  --attach PATH[:TOOLS]  a file sent inline as an attachment for TOOLS: file_search,\n"
        "                     code_interpreter or both joined by ',' (default: code_interpreter\n"
        "                     for csv/json/xlsx, file_search otherwise; repeatable)\n"
        "  --include-steps    ask for the turn's hosted-tool calls (`steps` in the response)\n"
        "  --save-files DIR   write the response's generated files into DIR (inline ones\n"
        "                     decoded, those by reference fetched with `file get`)\n"
        "  --event-id ID      event id (default: a random UUIDv4)\n"
        "  --timeout-ms N     give up after N ms (default 60000)\n"
        "  --config FILE      configuration file (default: $AW_CONFIG; env overrides it)\n"
        "Exit status: 0 completed, 1 any other status, 2 usage/infrastructure error or timeout\n"
        "(or a file that cannot be read or saved).\n",
        f);
}

static void print_delta(const cJSON *delta, void *opaque) {
  (void)opaque;
  clir_print_json(delta);
}

/* Images and attachments a command line may name; the worker's limits
 * (worker.max_attachments, contract parts) decide what it accepts. */
#define SEND_MAX_IMAGES 15
#define SEND_MAX_ATTACH 16

/* Read each --image file and --attach file into the request's parts and
 * attachments (bytes owned by the caller's bufs[], attachment paths and
 * names by paths[]).  0, or -1 after the
 * reason on stderr. */
static int load_files(const cfg *c, const char *const *images, int nimages, const char *const *attach, int nattach,
                      contract_part *parts, contract_attachment *atts, unsigned char **bufs, char **paths) {
  char err[512];
  size_t max = c->worker.max_event_bytes;
  for (int i = 0; i < nimages; i++) {
    contract_part *p = &parts[1 + i];
    p->detail = NULL;
    if (clif_is_url(images[i])) {
      p->type = CONTRACT_PART_IMAGE_URL;
      p->text = images[i];
      p->text_len = strlen(images[i]);
      continue;
    }
    const char *type = clif_media_type(images[i]);
    if (!type || strncmp(type, "image/", 6) != 0) {
      fprintf(stderr, "assistant-worker send: --image %s: not a URL nor a png, jpeg, gif or webp file\n", images[i]);
      return -1;
    }
    if (clif_read(images[i], max, &bufs[i], &p->data_len, err, sizeof err)) {
      fprintf(stderr, "assistant-worker send: --image %s\n", err);
      return -1;
    }
    p->type = CONTRACT_PART_IMAGE_FILE;
    p->text = NULL;
    p->text_len = 0;
    p->data = bufs[i];
    p->media_type = type;
    p->filename = clif_basename(images[i]);
  }
  for (int i = 0; i < nattach; i++) {
    contract_attachment *a = &atts[i];
    size_t plen;
    clif_attach_spec(attach[i], &plen, &a->tools);
    /* The path is attach[i][0..plen) (after it: ":TOOLS"); the copy is the
     * attachment's storage of its name, freed with the bytes. */
    paths[i] = strndup(attach[i], plen);
    if (!paths[i]) {
      fputs("assistant-worker send: out of memory\n", stderr);
      return -1;
    }
    const char *type = clif_media_type(paths[i]);
    if (!type) {
      fprintf(stderr, "assistant-worker send: --attach %s: unknown file type (by its extension)\n", paths[i]);
      return -1;
    }
    if (clif_read(paths[i], max, &bufs[SEND_MAX_IMAGES + i], &a->data_len, err, sizeof err)) {
      fprintf(stderr, "assistant-worker send: --attach %s\n", err);
      return -1;
    }
    a->file_id = NULL;
    a->data = bufs[SEND_MAX_IMAGES + i];
    a->media_type = type;
    a->filename = clif_basename(paths[i]);
  }
  return 0;
}

/** `send`: see usage(). */
int cmd_send_main(int argc, char **argv) {
  clir_common o;
  clir_common_init(&o, "send");
  const char *assistant = NULL, *text = NULL, *save_dir = NULL;
  const char *images[SEND_MAX_IMAGES], *attach[SEND_MAX_ATTACH];
  int stream = 0, include_steps = 0, nimages = 0, nattach = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--stream") == 0) {
      stream = 1;
    } else if (strcmp(a, "--include-steps") == 0) {
      include_steps = 1;
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
      int is_image = strcmp(a, "--image") == 0, is_attach = strcmp(a, "--attach") == 0;
      if (strcmp(a, "--assistant") != 0 && strcmp(a, "--save-files") != 0 && !is_image && !is_attach) {
        fprintf(stderr, "assistant-worker send: unknown option %s (see --help)\n", a);
        return 2;
      }
      if (i + 1 >= argc || !argv[i + 1][0]) {
        fprintf(stderr, "assistant-worker send: %s needs a value\n", a);
        return 2;
      }
      if ((is_image && nimages == SEND_MAX_IMAGES) || (is_attach && nattach == SEND_MAX_ATTACH)) {
        fprintf(stderr, "assistant-worker send: at most %d %s\n", is_image ? SEND_MAX_IMAGES : SEND_MAX_ATTACH, a);
        return 2;
      }
      if (is_image) images[nimages++] = argv[++i];
      else if (is_attach) attach[nattach++] = argv[++i];
      else if (strcmp(a, "--save-files") == 0) save_dir = argv[++i];
      else assistant = argv[++i];
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

  contract_part parts[1 + SEND_MAX_IMAGES];
  contract_attachment atts[SEND_MAX_ATTACH];
  unsigned char *bufs[SEND_MAX_IMAGES + SEND_MAX_ATTACH] = {0};
  char *paths[SEND_MAX_ATTACH] = {0};
  memset(parts, 0, sizeof parts);
  memset(atts, 0, sizeof atts);
  parts[0] = (contract_part){.type = CONTRACT_PART_TEXT, .text = text, .text_len = strlen(text)};
  if (load_files(&c, images, nimages, attach, nattach, parts, atts, bufs, paths)) {
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) free(paths[i]);
    cfg_free(&c);
    return 2;
  }
  contract_request r;
  memset(&r, 0, sizeof r);
  r.v = CONTRACT_VERSION;
  r.kind = CONTRACT_KIND_MESSAGE;
  r.event_id = o.event_id;
  r.conversation_id = o.conv;
  r.assistant = assistant;
  r.parts = parts;
  r.nparts = 1 + (size_t)nimages;
  r.attachments = nattach ? atts : NULL;
  r.nattachments = (size_t)nattach;
  r.include_steps = include_steps;
  r.stream = stream;
  cJSON *response = NULL;
  char err[512];
  int status = 2;
  if (clir_request(&c, &o, &r, stream ? print_delta : NULL, NULL, &response, err, sizeof err)) {
    fprintf(stderr, "assistant-worker send: %s\n", err);
  } else {
    clir_print_json(response);
    status = clir_exit_status(&o, response);
    /* The files of any answer are saved (an incomplete one may have some). */
    if (save_dir && clif_save_files(response, save_dir, o.config, err, sizeof err) < 0) {
      fprintf(stderr, "assistant-worker send: --save-files: %s\n", err);
      status = 2;
    }
  }
  cJSON_Delete(response);
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) free(paths[i]);
  cfg_free(&c);
  return status;
}
