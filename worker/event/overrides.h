/* overrides.h -- what a request may change about the assistant it names
 * (prefix wkov_; wko_ is the outbox's).
 *
 * A request names an assistant that the operator configured, with its
 * instructions (the system prompt).  The contract lets a request carry
 * `instructions` (replaces that prompt for the turn) and
 * `additional_instructions` (appended to it), and name an Assistants API
 * id `asst_...` of any assistant of the organization instead of a
 * configured name.  Each of these lets whoever can write to the requests
 * topic change what the model is told, so each is a permission the
 * configuration grants:
 *   - per assistant, `assistants[].allow_overrides`: the request fields that
 *     may override it.  Default: `additional_instructions` only.  Appended
 *     text keeps the operator's prompt in force (the model still reads it
 *     first), it is what producers use to pass per-user context, and
 *     requests that use it today keep working; `instructions` throws the
 *     operator's prompt away, so it is closed unless granted.
 *   - per worker, `worker.allow_assistant_ids` (default false): a request
 *     may name an `asst_` id.  Such a request runs an assistant the
 *     configuration does not describe, so it gets the default allowance
 *     above, whatever the configured assistants allow.
 * The contract has no model parameters (model, temperature, tools) a
 * request could set; a field added later gets its bit here, closed by
 * default.
 *
 * Only a message (CONTRACT_KIND_MESSAGE) is checked: the other kinds run
 * no turn, so they override nothing.
 *
 * Checked once per event, at admission (event.c), before anything is
 * looked up or claimed: a refused request is answered `rejected` with
 * WKOV_CODE and dead-lettered with its bytes, and claims nothing.
 *
 * Pure: no I/O, no allocation.  Any thread.
 */
#ifndef AW_OVERRIDES_H
#define AW_OVERRIDES_H

#include <stddef.h>

#include "aw_error.h"
#include "contract.h"

/* The request fields that can override an assistant (bits). */
#define WKOV_INSTRUCTIONS 1u            /* `instructions`: replaces the system prompt */
#define WKOV_ADDITIONAL_INSTRUCTIONS 2u /* `additional_instructions`: appended to it */
#define WKOV_ALL (WKOV_INSTRUCTIONS | WKOV_ADDITIONAL_INSTRUCTIONS)
/** What an assistant allows when its configuration says nothing. */
#define WKOV_DEFAULT WKOV_ADDITIONAL_INSTRUCTIONS

/** The response's error.code of a refused override. */
#define WKOV_CODE "override_not_allowed"

/** What one request may do. */
typedef struct wkov_policy {
  unsigned allowed;        /* WKOV_* bits of the named assistant (or WKOV_DEFAULT for an asst_ id) */
  int allow_assistant_ids; /* worker.allow_assistant_ids */
} wkov_policy;

/** The bit of a request field name ("instructions"), 0 for any other name
 *  (configuration parsing). */
unsigned wkov_bit(const char *field);

/** The field name of one bit, NULL for anything but a single known bit. */
const char *wkov_field(unsigned bit);

/** Does request q use only what p allows?  AW_OK if so; else AW_EINVAL
 *  (class reject) with *field set to the first refused field
 *  ("assistant" for an asst_ id, then "instructions",
 *  "additional_instructions") and a message naming the field and the
 *  assistant in msg (truncated to n). */
int wkov_check(const contract_request *q, const wkov_policy *p, const char **field, char *msg,
               size_t n) AW_MUST_CHECK;

#endif
