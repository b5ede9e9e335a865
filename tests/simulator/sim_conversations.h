/* sim_conversations.h -- the Conversations API and its items (prefix sconv_).
 *
 * A conversation (SK_CONV, "conv_...") is a top-level object whose children
 * are its items (SK_ITEM) in the order they were added: user and assistant
 * messages ("msg_..."), function calls ("fc_...") and function call outputs
 * ("fco_...").  Responses created with `conversation` append their input
 * items when they are created and their output items when they finish
 * (sim_responses.h), and the scripted model reads the conversation's items
 * as its history.
 *
 * A conversation is locked while one of its responses is queued or
 * in_progress: a second response in it is refused (400
 * conversation_locked), as on the real API, so a client that creates twice
 * sees it.  The lock is the id of that response; it is released when the
 * response ends, and a deleted response holds no lock.
 *
 * @locality MHD threads and the timer thread; every function needs the store
 * lock except sconv_handle() and sconv_check_items(), which take it or need
 * none.
 */
#ifndef SIM_CONVERSATIONS_H
#define SIM_CONVERSATIONS_H

#include <cjson/cJSON.h>
#include "buf.h"
#include "sim_api.h"
#include "sim_store.h"

/** Most items one request may add (the spec's maxItems). */
#define SCONV_MAX_ITEMS_PER_REQUEST 20

/** V_FN checker for an array of input items (message, function_call,
 *  function_call_output). */
int sconv_check_items(const cJSON *v, const char *name, sapi_reply *r);
/** The stored form of a validated input item, with id (made with the
 *  item's prefix when NULL).  Caller deletes; NULL on ENOMEM. */
cJSON *sconv_item_from_input(const cJSON *in, const char *id);
/** Append a copy of item (a stored-form item with its id) to conv.
 *  NULL on ENOMEM or when the id is already taken. */
sobj *sconv_append(sobj *conv, const cJSON *item);
/** The text of a message item (its text parts, space separated). */
void sconv_item_text(const cJSON *item, buf *out);
/** Id of the response holding conv's lock, or NULL when it is free. */
const char *sconv_locked_by(sobj *conv);
/** Lock conv for resp_id / release it if holder holds it. */
void sconv_lock(sobj *conv, const char *resp_id);
void sconv_unlock(sobj *conv, const char *holder);

/** Serve a /v1/conversations route already classified in r->route (after
 *  auth and faults); s are the path segments.  Items are listed as the
 *  spec's listConversationItems: limit (1..100), order (default desc),
 *  after (an item of this conversation, else 400 invalid_value), no
 *  `before` (400 unknown_parameter); items create answers with the created
 *  items and their ids; a deleted conversation is gone with its items. */
void sconv_handle(const sapi_req *q, sapi_reply *r, char s[][64]);
/** GET /admin/conversations/{id}: counts of its items by kind, for tests
 *  ({"id","items","user_messages","assistant_messages","function_calls",
 *  "function_call_outputs","locked_by"}). */
void sconv_admin(sapi_reply *r, const char *id);

#endif
