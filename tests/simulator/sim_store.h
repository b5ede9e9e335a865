/* sim_store.h -- in-memory objects of the Assistants API (prefix sstore_).
 *
 * Every object (assistant, thread, message, run, run step) is an sobj: its
 * id, a creation sequence number, its API representation as a cJSON tree
 * (kept ready to print, so GET is one print), and links to its parent and
 * ordered children.  One hash map finds any object by id; each parent keeps
 * its children in creation order (sorted by seq), which is what list
 * endpoints page through with after/before cursors (binary search).
 *
 * Locking: one store mutex serialises everything.  It is held only for
 * in-memory work (a lookup, a print), never across I/O, so with the
 * default single MHD thread it is uncontended; the timer thread and extra
 * MHD threads queue on it briefly.  Callers take it with sstore_lock().
 * Objects are freed only by sstore_delete()/sstore_reset() under the lock;
 * code that outlives a lock section (streams, timers) holds ids, never
 * pointers, and looks the object up again.
 */
#ifndef SIM_STORE_H
#define SIM_STORE_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "aw_error.h"
#include "sim_faults.h"

/* SK_CONV, SK_RESP (Conversations / Responses API) are top-level like
 * threads; SK_ITEM is a conversation item (a child of its conversation),
 * whose id prefix depends on its type (msg_, fc_, fco_). */
typedef enum { SK_ASST = 0, SK_THREAD, SK_MSG, SK_RUN, SK_STEP, SK_CONV, SK_RESP, SK_ITEM, SK_COUNT } sobj_kind;

typedef enum {
  RS_QUEUED = 0, RS_IN_PROGRESS, RS_REQUIRES_ACTION, RS_CANCELLING, RS_CANCELLED,
  RS_FAILED, RS_COMPLETED, RS_INCOMPLETE, RS_EXPIRED, RS_COUNT
} srun_status;

struct sobj;

/** Children in creation order. */
typedef struct slist {
  struct sobj **v;
  size_t n, cap;
} slist;

/** Run progress: what the scripted model has produced so far. */
typedef struct srun_state {
  srun_status status;
  char *answer;       /* the full answer, computed at creation */
  size_t emit_pos;    /* bytes of answer already emitted */
  int tokens_total, tokens_done;
  int prompt_tokens;
  sfault_run fault;   /* injected outcome */
  char fault_code[32];
  char msg_id[40], step_id[40]; /* set when the run starts; step_id is
                                   the newest step (tool calls or message) */
  int stream_owned;   /* a live SSE stream drives it; the timer must not */
  /* Function calling (sim_tools.h).  plan: the rounds of calls the model
   * makes before answering (NULL: none); round: rounds asked so far;
   * outputs: what was submitted, [{label,output}] in call order, from
   * which the answer is built after the last round. */
  cJSON *plan;
  int round;
  cJSON *outputs;
  unsigned ra_gen;    /* bumped on each entry to requires_action: an
                         expiry timer armed for an earlier round is stale */
  int resumed;        /* outputs submitted: the next start reports the
                         completed tool step */
  int charged;        /* its usage was charged when it ended (sim_usage.h) */
  cJSON *fsearch;     /* the file search the answer quotes (sim_run.c), or NULL */
} srun_state;

typedef struct sobj {
  sobj_kind kind;
  char id[40];
  uint64_t seq;
  int64_t created_at;
  cJSON *json;           /* the API object, always spec-complete */
  struct sobj *parent;   /* message/run: thread; step: run */
  slist kids;            /* thread: messages; run: steps */
  slist runs;            /* thread: runs */
  struct sobj *active_run; /* thread: the run blocking new messages/runs */
  srun_state *run;       /* runs only */
  /* State of another module's object (a response's progress, a
   * conversation's lock), freed with ext_free when the object goes. */
  void *ext;
  void (*ext_free)(void *ext);
} sobj;

/** Salt the id generator from the clock and pid: ids are unique within
 *  a process and, in practice, across restarts. */
void sstore_init(void);
/** Take / release the store lock. */
void sstore_lock(void);
void sstore_unlock(void);
/** Create an object of kind k under parent (NULL for assistants/threads):
 *  id, seq, created_at and the json skeleton {"id","object","created_at"}
 *  are filled in; it is registered in the map and in the parent's list.
 *  NULL on ENOMEM.  Lock held. */
sobj *sstore_new(sobj_kind k, sobj *parent);
/** An item of a conversation (SK_ITEM under conv): id is used as given
 *  when not NULL (an output item keeps the id it has in its response),
 *  else made with prefix.  The json skeleton is {"id"} only: items carry
 *  no object/created_at.  NULL on ENOMEM or when the id is taken.  Lock
 *  held. */
sobj *sstore_new_item(sobj *conv, const char *prefix, const char *id);
/** A fresh id with the given prefix ("msg_", "fc_"...) for objects that
 *  live inside another object's JSON (a response's output items).  Lock
 *  held. */
void sstore_make_id(const char *prefix, char *out, size_t size);
/** Object by id, any kind, or NULL.  Lock held. */
sobj *sstore_find(const char *id);
/** A fresh tool call id ("call_" + 24 base62), unique like object ids.
 *  Lock held. */
void sstore_call_id(char *out, size_t size);
/** Object by id and kind, or NULL.  Lock held. */
sobj *sstore_get(const char *id, sobj_kind k);
/** Remove and free o with all its descendants.  Lock held. */
void sstore_delete(sobj *o);
/** Remove and free every object.  Lock held. */
void sstore_reset(void);
/** The list of all assistants (creation order).  Lock held. */
slist *sstore_assistants(void);
/** All objects of a top-level kind (SK_ASST, SK_CONV, SK_RESP) in creation
 *  order.  Lock held. */
const slist *sstore_toplist(sobj_kind k);
/** Index of the first element with seq >= s. */
size_t slist_lower_bound(const slist *l, uint64_t s);
/** Runs currently in each status.  Lock held. */
void sstore_run_counts(long out[RS_COUNT]);
/** Account for a run moving between statuses (from < 0: new run). */
void sstore_count_status(int from, int to);
/** "queued", "in_progress"... */
const char *srun_status_name(srun_status s);
/** Is s one of queued/in_progress/requires_action/cancelling? */
int srun_status_active(srun_status s);

/** Set key in o to v (replacing in place, keeping key order); takes v. */
void jset(cJSON *o, const char *key, cJSON *v);
/** Wall-clock seconds, for created_at and friends. */
int64_t sstore_unix_now(void);

#endif
