/* assistant_registry.h -- configured assistants and their API ids
 * (prefix areg_).
 *
 * Backends that take the definition with every turn (Responses) answer
 * be_assistant_ensure at once; the registry then only holds definitions.
 *
 * At start-up every assistant of the configuration is made to exist on the
 * API, idempotently: the id remembered in Redis (hash <prefix>:assistants,
 * field = name, value = "<definition hash> <id>") is checked and updated
 * when the definition changed; without a remembered id the backend finds the
 * assistant by its metadata (aw_name) or creates it.  Many workers starting
 * at once converge on the same assistant because the backend looks it up by
 * name before creating it; a rare double creation leaves one unused
 * assistant, never a wrong answer.
 */
#ifndef AW_ASSISTANT_REGISTRY_H
#define AW_ASSISTANT_REGISTRY_H

#include "aw_error.h"
#include "backend.h"
#include "config.h"
#include "redis_conn.h"

typedef struct areg areg;

/** Called once when every assistant is ready (err AW_OK) or one failed. */
typedef void (*areg_done_cb)(void *opaque, int err, const char *errmsg);

/** Ensure all assistants of c (borrowed; must outlive the registry). */
int areg_new(const cfg *c, be_backend *be, rconn *redis, areg_done_cb done, void *opaque,
             areg **out) AW_MUST_CHECK;

/** The definition of the assistant called name (with its API id on the
 *  Assistants backend), or NULL when unknown or not ready (wk_resolve_fn). */
const be_assistant *areg_resolve(void *registry, const char *name);

/** Free.  Safe on NULL. */
void areg_free(areg *r);

#endif
