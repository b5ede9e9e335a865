/* worker_int.h -- what worker.c and worker_tools.c share: the event and
 * worker structs and the internal functions of the state machine (prefix
 * wk_, not part of worker.h's interface). */
#ifndef AW_WORKER_INT_H
#define AW_WORKER_INT_H

#include <stdint.h>
#include <uthash.h>

#include "buf.h"
#include "correlation.h"
#include "kafka_consumer.h"
#include "kafka_producer.h"
#include "kafka_txn.h"
#include "log.h"
#include "offset_tracker.h"
#include "thread_map.h"
#include "tool_replies.h"
#include "tool_state.h"
#include "worker.h"

#define DELTA_FLUSH_BYTES 8192      /* flush a delta early past this */
#define DELTA_MAX_BYTES (64 * 1024) /* bound of one event's pending deltas */
#define RESPONSE_MAX_BYTES (2 * 1024 * 1024)
#define RETRY_TICK_MS 100
#define MAX_USER_METADATA 14        /* OpenAI allows 16; we add 2 */

typedef enum {
  ST_RECEIVED = 0,
  ST_QUEUED,
  ST_LOOKUP,
  ST_THREAD,
  ST_TURN,
  ST_TOOLS,      /* the run waits for tool replies (worker_tools.c) */
  ST_PUBLISHING,
  ST_COMMITTING, /* the response is in the open Kafka transaction */
  ST_RECORDING,
  ST_DONE,
} wk_state;


/* Delivery-report tokens: the low bits of the opaque say what was produced. */
enum { DR_RESPONSE = 0, DR_DELTA = 1, DR_DLQ = 2, DR_TOOL_REQUEST = 3, DR_REPLY_DLQ = 4, DR_MASK = 7 };

typedef struct wk_conv wk_conv;
typedef struct wk_part wk_part;

typedef struct wk_event {
  wk *w;
  wk_state state;
  struct wk_event *next;       /* conversation FIFO */
  struct wk_event *ready_next; /* ready / retry / delta-dirty lists */
  struct wk_event *retry_next;
  struct wk_event *dirty_next;
  int in_ready, in_retry, in_dirty;
  wk_conv *conv;
  int32_t partition;
  int64_t offset;
  uint64_t gen;                /* partition generation at consumption */
  contract_request *req;       /* NULL when the event could not be decoded */
  /* rejection (decode or validation failure) */
  const char *reject_code;
  char *reject_msg;
  void *orig;                  /* original bytes, kept only for rejections */
  size_t orig_len;
  void *orig_key;
  size_t orig_key_len;
  char event_id[129];
  char conv_id[257];
  const char *assistant_id;
  char thread_id[TMAP_ID_MAX];
  char created_thread[TMAP_ID_MAX]; /* thread we created, to delete if we lose */
  char run_id[TMAP_ID_MAX];
  char msg_id[TMAP_ID_MAX];    /* the user message on the thread, once known */
  char progress[2 * TMAP_ID_MAX]; /* progress record found at lookup; "" if new */
  int claim;                   /* the lookup claimed the progress record */
  int resumed;                 /* following a run an earlier attempt started */
  int use_existing_message;    /* start the run for msg_id, do not add it again */
  char status[16];
  contract_kv *md;             /* message metadata handed to the backend */
  be_op *op;
  int pending_lookups;
  int lookup_failed;
  int dup;                     /* outcome record says it was answered */
  int pending_dr;              /* produced, delivery report not yet seen */
  int send_response, send_dlq; /* (re)produce these on the next attempt */
  int await_deltas;            /* response held until the deltas are durable */
  buf out;                     /* encoded response, until delivered */
  buf delta;                   /* pending delta text */
  int64_t seq;
  int64_t received_ms, run_started_ms;
  struct wkt_ev *tools;        /* the tool phase's state (worker_tools.c), or NULL */
  int abandoned;               /* left to the next owner: never committed */
  /* Exactly-once (Kafka transactions): */
  struct wk_event *txn_next;   /* txn_wait or txn list */
  int txn_where;               /* 0 none, 1 waiting to produce, 2 in the open transaction */
  uint64_t txn_seq;            /* the transaction holding its response */
  int offset_done;             /* its offset is marked done (in the transaction's offsets) */
  int owed;                    /* some of its messages are in the open transaction, not all
                                  (or, after an abort, its offset is done and none are) */
  struct wk_event *owed_prev, *owed_next; /* wk.owed_head list */
} wk_event;

struct wk_conv {
  char *id;
  wk_event *head, *tail;
  UT_hash_handle hh;
};

struct wk_part {
  otrk t;
  otrk_skip skip;  /* offsets answered beyond the committed one (commit metadata) */
  uint64_t gen;
  int assigned;
  long running;   /* events of this partition consumed and not done */
  int paused;     /* paused by its own limit (max_in_flight_per_partition) */
  int64_t committed_at_assign; /* the group's committed offset when assigned, -1 if none (wk_lag) */
};

struct wk {
  struct wkt *tools;           /* function calling (worker_tools.c); NULL when off */
  struct ktx *txp;             /* transactional producer of responses; NULL: at-least-once */
  wk_event *txn_wait_head, *txn_wait_tail; /* responses waiting for the transaction to open */
  wk_event *txn_head;          /* events whose response is in the open transaction */
  long txn_owed;               /* owed events (no commit while there are any) */
  wk_event *owed_head;         /* the owed events */
  int txn_dirty;               /* offsets changed since the last commit */
  int txn_closing;             /* a commit is due: no new event enters the transaction */
  int64_t txn_last_ms;
  uint64_t txn_started_ns;     /* uv_hrtime() when the commit in progress began */
  uv_loop_t *loop;
  wk_config cfg;
  be_backend *be;
  rconn *redis;
  tmap map;
  kc *consumer;
  kp *producer;
  wk_conv *convs;              /* uthash by id */
  wk_part *parts;
  int nparts;
  wk_event *ready_head, *ready_tail;
  wk_event *retry_head;
  wk_event *dirty_head;
  uv_idle_t ready_idle;
  uv_timer_t retry_timer, delta_timer, commit_timer, grace_timer;
  wk_stats st;
  int stopping;
  int freeing;                 /* wk_free: late callbacks only unwind */
  void (*stop_done)(void *);
  void *stop_opaque;
  int handles_open;
};

/* ---- shared internals (worker.c) ------------------------------------------ */

int64_t wk_now_ms(void);
log_ctx wk_ev_ctx(const wk_event *ev);
void wk_ev_set_state(wk_event *ev, wk_state s);
void wk_copy_id(char *dst, size_t n, const char *src);
/** Try the event's current step again from the retry list. */
void wk_retry_later(wk_event *ev);
/** Produce with a delivery-report tag; counts ev->pending_dr. */
int wk_produce(wk_event *ev, const char *topic, int kind, const void *key, size_t keylen,
               const void *val, size_t len, const char *const *headers, size_t nheaders);
/** The turn ended (or a submission's continuation did): answer. */
void wk_turn_done(void *opaque, const be_turn_result *res);
/** The callbacks every turn, resume and submission of an event uses
 *  (with on_requires_action when functions are routed). */
const be_turn_events *wk_events(const wk *w);
/** Leave the event (and the rest of its conversation queue) unanswered and
 *  uncommitted: its next owner re-processes it from the state in Redis. */
void wk_ev_abandon(wk_event *ev);

/* ---- the tool phase (worker_tools.c, prefix wkt_) ------------------------- */

/** Set up tool routing (routes, schemas, reply consumer); called by wk_new. */
int wkt_init(wk *w, rd_kafka_conf_t *reply_conf, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** The run asks for tool outputs: route the calls and wait (ST_TOOLS). */
void wkt_begin(wk_event *ev, const be_tool_call *calls, size_t n, int64_t expires_at_ms);
/** Before resuming a run an earlier attempt started: fetch the tool calls
 *  its rounds already had (for the response), then call then(ev). */
void wkt_prefetch(wk_event *ev, void (*then)(wk_event *ev));
/** Retry of a failed step of the tool phase (from the retry list). */
void wkt_retry(wk_event *ev);
/** The event leaves the tool phase (answered, abandoned or freed). */
void wkt_forget(wk_event *ev);
/** Delivery report of a tool request. */
void wkt_on_request_dr(wk_event *ev, rd_kafka_resp_err_t err);
/** Delivery report of a dead-lettered tool reply. */
void wkt_on_reply_dlq_dr(wk *w, void *msg_opaque, rd_kafka_resp_err_t err);
/** The run is over and its response being built: add the tool calls (and,
 *  for a run a deadline cancelled, the tool_timeout error) to r.  Strings
 *  stay valid until the event is freed. */
void wkt_annotate(wk_event *ev, contract_response *r);
/** Counters of the tool phase into st. */
void wkt_stats(const wk *w, wk_stats *st);
/** Shutdown: stop the reply consumer and checkpoint the waiting runs. */
void wkt_shutdown(wk *w);
/** Free what wkt_init set up (after the producer was flushed). */
void wkt_free(wk *w);

#endif
