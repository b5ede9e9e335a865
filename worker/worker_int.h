/* worker_int.h -- the structs the worker's modules share: the event, its
 * conversation and the worker itself, with the constants that size them
 * (prefix wk_, not part of worker.h's interface).
 *
 * One header for the structs because every module moves the same event
 * through the same worker; each module's functions are declared in its own
 * header (intake.h, outbox.h, conv_sched.h, event.h, turn.h, delta.h,
 * worker_tools.h), so what one module asks of another stays visible. */
#ifndef AW_WORKER_INT_H
#define AW_WORKER_INT_H

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "buf.h"
#include "correlation.h"
#include "kafka_consumer.h"
#include "kafka_producer.h"
#include "kafka_txn.h"
#include "log.h"
#include "part_table.h"
#include "conv_store.h"
#include "tool_replies.h"
#include "tool_state.h"
#include "usage.h"
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
  ST_FILES,      /* file ids checked, inline bytes uploaded (attach.c) */
  ST_TURN,
  ST_TOOLS,      /* the run waits for tool replies (worker_tools.c) */
  ST_PUBLISHING,
  ST_COMMITTING, /* the response is in the open Kafka transaction */
  ST_RECORDING,
  ST_DONE,
} wk_state;


/* Delivery-report tokens: the low bits of the opaque say what was produced. */
enum { DR_RESPONSE = 0, DR_DELTA = 1, DR_DLQ = 2, DR_TOOL_REQUEST = 3, DR_REPLY_DLQ = 4, DR_USAGE = 5, DR_MASK = 7 };

typedef struct wk_conv wk_conv;

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
  contract_kind kind;          /* the request's kind; for one that did not decode, what its
                                  `kind` key names (contract_request_peek_kind) */
  /* rejection (decode or validation failure) */
  const char *reject_code;
  char *reject_msg;
  void *orig;                  /* original bytes, kept only for rejections */
  size_t orig_len;
  void *orig_key;
  size_t orig_key_len;
  char event_id[129];
  char conv_id[257];
  char tenant[RK_TENANT_MAX + 1]; /* "" without tenant (worker.tenant_source; ev_identity.h) */
  char conv_ref[RK_REF_MAX];   /* the conversation's reference in the stores (rkeys.h): the
                                  conversation id, or "<enc tenant>:<conversation id>"; "" when
                                  the event's identity was rejected (nothing is looked up) */
  const be_assistant *assistant; /* configured, or asst_by_id */
  be_assistant asst_by_id;     /* a request naming an asst_ id (Assistants backend) */
  char handle[BE_HANDLE_MAX];  /* the conversation's backend handle, cached in Redis */
  char checkpoint[BE_CHECKPOINT_MAX]; /* the backend's last checkpoint of this turn */
  int recover;                 /* an earlier attempt started this event */
  char turn_token[CORR_DIGEST_SIZE]; /* our id of the turn: digest of conversation and event
                                  ids; keys the tool state and binds correlation ids */
  const char *h_kind;          /* the backend's handles, for the response and logs */
  char h_conv[BE_HANDLE_MAX];
  char h_turn[BE_HANDLE_MAX];
  int replayed;                /* the answer was recovered whole: no live deltas */
  char status[16];
  be_op *op;
  int pending_lookups;
  int lookup_failed;
  int dup;                     /* outcome record says it was answered */
  int admitted;                /* admission ran (event.c: overrides, digest) */
  char digest[EVC_DIGEST_HEX]; /* what the request asks (event_claim.h): its records carry it;
                                  "" until admitted, and for a rejected event */
  int pending_dr;              /* produced, delivery report not yet seen */
  int send_response, send_dlq; /* (re)produce these on the next attempt */
  int send_usage;              /* the same for the usage record (usage.h) */
  wku_turn usage;              /* what the turn cost so far, and its record (usage.h) */
  uint8_t shrink_response;     /* outbox: 0 whole, 1 degraded (did not fit), 2 given up */
  uint8_t shrink_dlq;          /* the same for the DLQ record (outbox.c, degrade.h) */
  uint8_t suspect;             /* outbox: a record of its outcome was refused for good in a
                                  batch with others: its records go alone (w->alone) until it
                                  is done (1; 2 once they did) */
  int await_deltas;            /* response held until the deltas are durable */
  buf out;                     /* encoded response, until delivered */
  buf delta;                   /* pending delta text */
  int64_t seq;
  int attempt;                 /* the deltas' attempt number: 1 for a recovered turn,
                                  or the backend's generation of a regenerated text
                                  (be_handles.attempt) */
  int64_t received_ms, run_started_ms;
  struct wkt_ev *tools;        /* the tool phase's state (worker_tools.c), or NULL */
  struct wk_att *att;          /* the files step (attach.c): the resolved parts and
                                  attachments the turn is given; NULL: none (or chat) */
  void (*att_then)(struct wk_event *ev); /* what follows the files step (the turn) */
  int abandoned;               /* left to the next owner: never committed */
  /* Exactly-once (Kafka transactions): */
  struct wk_event *txn_next;   /* txn_wait or txn list */
  int txn_where;               /* 0 none, 1 waiting to produce, 2 in the open transaction */
  uint64_t txn_seq;            /* the transaction holding its response */
  int offset_done;             /* its offset is marked done (in the transaction's offsets) */
  int owed;                    /* some of its messages are in the open transaction, not all
                                  (or, after an abort, its offset is done and none are) */
  struct wk_event *owed_prev, *owed_next; /* wk.owed_head list */
  long bytes;                  /* its share of wk_stats.in_flight_bytes (wk_event_bytes) */
  /* Conversation request `cancel` (cancel.h): */
  char cancel_by[129];         /* the event_id of the cancel that cancelled this event's turn;
                                  "" when none */
  int cancel_sent;             /* the cancel was handed to the backend (be_turn_cancel) */
  struct wk_event *oob_prev, *oob_next; /* wk.oob_head: events outside any conversation queue
                                  (a cancel, a rejection without a conversation: conv_sched.h) */
} wk_event;

struct wk_conv {
  char *id;
  wk_event *head, *tail;
  long n;                      /* events queued, the head included (max_queue_per_conversation) */
  UT_hash_handle hh;
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
  uint64_t revoke_after_seq;   /* a held revocation waits for the end of this transaction */
  int revoke_waiting;          /* a revocation is held for a commit (outbox.c) */
  wk_event *alone;             /* the event whose outcome records are produced alone now */
  long outcome_pending;        /* outcome records (responses, DLQ) produced, not reported */
  long suspects_waiting;       /* suspects on the wait list (txn_wait): they go first */
  int final_commit;            /* wk_shutdown's last commit: 1 asked, 2 running (outbox.c) */
  uint64_t final_seq;          /* the transaction that commit closes */
  void (*final_done)(wk *w);   /* called once it ended (or could not run) */
  uv_loop_t *loop;
  wk_config cfg;
  be_backend *be;
  rconn *redis;
  cstore store;
  kc *consumer;
  kp *producer;
  wk_conv *convs;              /* uthash by id */
  ptab parts;                  /* the requests topic's partitions (intake.c) */
  wk_event *oob_head;          /* events started outside a conversation queue (conv_sched.h) */
  wk_event *ready_head, *ready_tail;
  wk_event *retry_head;
  wk_event *dirty_head;
  uv_idle_t ready_idle;
  uv_timer_t retry_timer, delta_timer, commit_timer, grace_timer;
  wk_stats st;
  int stopping;
  int held;                    /* wk_hold: consumption held from outside (the rate gate) */
  int freeing;                 /* wk_free: late callbacks only unwind */
  void (*stop_done)(void *);
  void *stop_opaque;
  int handles_open;
};

/** Wall-clock milliseconds (timestamps in responses and records). */
static inline int64_t wk_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Bounded copy of an id; API ids are ~30 bytes, far below every buffer. */
static inline void wk_copy_id(char *dst, size_t n, const char *src) {
  size_t k = src ? strnlen(src, n - 1) : 0;
  if (k) memcpy(dst, src, k);
  dst[k] = '\0';
}

/** What an event in flight counts against worker.max_inflight_bytes: the
 *  event itself, its decoded request (about as large as the Kafka value it
 *  came from, value_len) and the original bytes kept for a dead letter.
 *  The response and delta buffers are not counted: each is bounded per
 *  event (RESPONSE_MAX_BYTES, DELTA_MAX_BYTES) and lives only while the
 *  event is answered. */
static inline long wk_event_bytes(const wk_event *ev, size_t value_len) {
  size_t n = sizeof *ev + (ev->req ? value_len : 0) + ev->orig_len + ev->orig_key_len;
  return n > (size_t)LONG_MAX / 2 ? LONG_MAX / 2 : (long)n;
}

/** The lifecycle step after an event finished: completes wk_shutdown once
 *  nothing is in flight (worker.c). */
void wk_maybe_stopped(wk *w);

#endif
