/* cli_request.h -- produce one request and wait for its response (prefix clir_).
 *
 * Why a module: every client command that asks the worker something (`send`,
 * and the conversation requests `history`, `append`, `reset`, `delete`,
 * `cancel`) does the same three things -- take the same options
 * (--conversation, --event-id, --timeout-ms, --config), publish one request
 * to the requests topic, and wait on the responses topic for the response
 * carrying its event_id -- and the waiting is subtle enough (see
 * cli_request.c: the consumer must be positioned before anything is
 * produced) to exist once.  The commands differ only in the request they
 * build and in how they print the answer.
 *
 * Blocking, single-threaded, for command-line tools only: it uses
 * librdkafka's blocking calls and prints diagnostics on stderr prefixed with
 * "assistant-worker <prog>: ".
 */
#ifndef AW_CLI_REQUEST_H
#define AW_CLI_REQUEST_H

#include <stdio.h>
#include <cJSON.h>
#include "aw_error.h"
#include "config.h"
#include "contract.h"

#define CLIR_DEFAULT_TIMEOUT_MS 60000LL

/** The options every request command takes. */
typedef struct clir_common {
  const char *prog;       /* the subcommand's name, for messages ("send", "history", ...) */
  const char *config;     /* --config FILE, or NULL ($AW_CONFIG) */
  const char *conv;       /* --conversation ID (required) */
  const char *event_id;   /* --event-id ID, or after clir_common_check a random UUIDv4 */
  long long timeout_ms;   /* --timeout-ms N (default CLIR_DEFAULT_TIMEOUT_MS) */
  char uuid[37];          /* storage of the generated event id */
} clir_common;

/** Start with the defaults; prog must outlive o. */
void clir_common_init(clir_common *o, const char *prog);

/** If argv[*i] is one of the common options (--conversation, --event-id,
 *  --timeout-ms, --config), take it and its value (advancing *i) and return
 *  1; return 0 when it is not one of them (the command's own option or
 *  argument), -1 when its value is missing or invalid (explained on stderr:
 *  exit 2). */
int clir_common_arg(clir_common *o, int argc, char **argv, int *i);

/** After parsing: --conversation present and 1..256 bytes, --event-id
 *  1..128 bytes or generated now.  0, or -1 with the reason on stderr (exit
 *  2). */
int clir_common_check(clir_common *o);

/** Called for each delta of the request's event (JSON view), when asked. */
typedef void (*clir_delta_fn)(const cJSON *delta, void *opaque);

/** Publish r (keyed by r->conversation_id; event_id must be o->event_id)
 *  and wait, up to o->timeout_ms from the call, for the response carrying
 *  its event_id.  With on_delta, the deltas topic is read too and each delta
 *  of the event is passed to on_delta as it arrives; the deltas published
 *  before the response are all delivered before this returns (bounded by the
 *  timeout and a short drain window).  On success *response (caller frees
 *  with cJSON_Delete) is the response's JSON view.  Errors: AW_EINVAL /
 *  AW_ETOOBIG (the request cannot be encoded), AW_EKAFKA, AW_ENOTFOUND (a
 *  topic is missing), AW_ETIMEDOUT, AW_ENOMEM; errstr says which. */
int clir_request(const cfg *c, const clir_common *o, const contract_request *r, clir_delta_fn on_delta,
                 void *opaque, cJSON **response, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** The exit status of a response: 0 when its status is "completed", else 1
 *  after writing the status and error to stderr. */
int clir_exit_status(const clir_common *o, const cJSON *response);

/** Print j on stdout as one line of JSON (flushed). */
void clir_print_json(const cJSON *j);

/** Load the configuration named by o->config and set up logging for the
 *  command; 0, or -1 with the reason on stderr (exit 2).  The caller frees
 *  c with cfg_free. */
int clir_load_config(const clir_common *o, cfg *c);

#endif
