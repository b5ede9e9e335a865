/* sim_amsg.h -- what an Assistants message refers to: its image parts and
 * its attachments (prefix samsg_).
 *
 * Why it exists: a message may name files -- image_file parts
 * ({image_file: {file_id, detail}}) and attachments ([{file_id, tools:
 * [{type}]}]) -- and a run reads them: the images are acknowledged in the
 * answer, code_interpreter attachments are the code interpreter's input
 * files.  The real API refuses a message naming a file that does not
 * exist, so the check is made before anything is created, for every route
 * that adds messages (a message, a thread's messages, a run's
 * additional_messages, create-thread-and-run's thread.messages); sim_req.c
 * checks the shapes, this module what they point at.
 *
 * Refusals, with sim_req's error shape: a detail other than auto/low/high,
 * or an attachment that is not {file_id, tools} with tools of type
 * code_interpreter / file_search: 400 invalid_value; a file that does not
 * exist: 400 invalid_value (param the part's path, "No file found with id
 * 'file-x'.").
 *
 * @locality MHD threads.  samsg_check takes the files' mutex (through
 * sfiles_lookup), so it may be called with or without the store lock;
 * the readers of stored messages need the store lock.
 */
#ifndef SIM_AMSG_H
#define SIM_AMSG_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "sim_api.h"
#include "sim_store.h"

/** Check every message a validated Assistants body carries (the body
 *  itself when it has "role", its messages[], additional_messages[],
 *  thread.messages[]).  0, or -1 with r set (400). */
int samsg_check(const cJSON *body, sapi_reply *r);

/** Image parts (image_url, image_file) of a stored message. */
int samsg_images(const cJSON *msg);

/** The newest user message of thread, or NULL.  Lock held. */
const cJSON *samsg_last_user(const sobj *thread);

/** The file ids of thread's messages' attachments for tool
 *  ("code_interpreter", "file_search"), oldest first, repeats skipped,
 *  appended to out (a JSON array).  Lock held.  AW_ENOMEM. */
int samsg_attached(const sobj *thread, const char *tool, cJSON *out) AW_MUST_CHECK;

/** A new message msg on thread (lock held): the files of its file_search
 *  attachments go into the thread's vector store, made when the thread
 *  has none and named in its tool_resources.file_search.vector_store_ids,
 *  as the real API does (svs_thread_store).  AW_ENOMEM. */
int samsg_attach_search(sobj *thread, const cJSON *msg) AW_MUST_CHECK;

/** Files of the thread's own vector stores (its tool_resources) still
 *  being processed: a run waits for them before it searches (the real
 *  API's fallback wait; the assistant's stores are not waited for).
 *  Lock held. */
int samsg_search_pending(const sobj *thread);

#endif
