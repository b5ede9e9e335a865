/* asst_int.h -- internals shared by the Assistants backend's files (prefix
 * asst_; not for use outside common/backend/assistants/).
 *
 *   backend_assistants.c  construction, the ops table, cancel, helpers,
 *                         the checkpoint format
 *   asst_ensure.c         assistant_ensure
 *   asst_turn.c           the turn machine: the run's stream, polling,
 *                         collecting messages, tool calls, finishing
 *   asst_start.c          be_turn_start: the thread (create + claim),
 *                         recovery (checkpoint, lookup by tag), the lookup
 *                         after an ambiguous POST runs
 *   asst_continue.c       be_turn_continue (tool outputs) and be_turn_cancel
 *   asst_files.c          after the run: its steps (include_steps) and the
 *                         files its messages name (gen_files.h), before on_done
 *   api_steps.c           run steps -> contract_step (pure, bounded)
 *   asst_manage.c         be_conv_history / be_conv_append / be_conv_delete
 *                         (its own small machine: see the file's header)
 *
 * One turn_op serves the three turn calls; its phase (turn_phase(), which
 * logs every change with event, thread and run ids) says where it is:
 *
 *   start:    [THREAD -> CLAIM (-> DELETE_LOSER)]
 *             -> recover ? (RESUME | LOOKUP_RUNS -> LOOKUP_MESSAGES
 *                           -> LOOKUP_MSG_RUN) : STREAM
 *   STREAM --(terminal)--> finish
 *     |--(stream lost after run.created)--> POLL_WAIT/POLL --> MESSAGES --> finish
 *     \--(AW_EAMBIGUOUS, run id unknown)--> LOOKUP_RUNS (bounded backoff) --> POLL
 *   continue: SUBMIT --(as STREAM; ambiguous or 4xx)--> CHECK_SUBMIT
 *             (run still waits for our calls: SUBMIT again, or the 4xx stands;
 *              else the submission was taken: follow the run) ; polling a
 *             round lists run STEPS first to keep only the round's messages
 *   cancel:   CANCEL --> POLL ... --> finish (no messages)
 *   requires_action: tools routed --> (MESSAGES) --> finish BE_END_TOOL_CALLS
 *   an answer: finish --> [RUN_STEPS (include_steps)] --> [FILES] --> on_done
 *   start for an asst_ id with attachments: ASSISTANT (its tools) --> start
 *                    not routed / unreadable --> CANCEL_RUN --> finish
 *
 * @locality the loop thread only.
 */
#ifndef AW_ASST_INT_H
#define AW_ASST_INT_H

#include <stdint.h>
#include <cJSON.h>

#include "api_client.h"
#include "api_json.h"
#include "api_steps.h"
#include "backend.h"
#include "gen_files.h"

enum { OP_ENSURE = 1, OP_TURN, OP_MANAGE };

typedef struct be_asst {
  be_backend base;
  uv_loop_t *loop;
  api_client *api;
  size_t max_answer_bytes;
  long retry_base_ms; /* backoff base of the lookups after an ambiguous POST */
  const be_store *store;
} be_asst;

/* Every op starts with this (be_op_head first, as backend.h requires). */
typedef struct op_base {
  be_op_head head;
  int kind;
  int cancelled;
  int in_cb;      /* >0 while one of our user callbacks runs */
  int in_store;   /* waiting for the store's callback: cannot be freed yet */
  api_call *call; /* the API call in flight, NULL if none */
} op_base;

/* ---- helpers (backend_assistants.c) ---------------------------------------- */

int64_t asst_now_ms(void);
void asst_copy(char *dst, size_t n, const char *s);
const char *asst_nz(const char *s);
/** Is id usable in a path (api_client's rule) and shorter than API_JSON_ID_MAX? */
int asst_id_ok(const char *id);
/** Add "metadata": {k: v...} to obj; AW_EINVAL for a NULL key or value. */
int asst_add_metadata(cJSON *obj, const contract_kv *md, size_t n) AW_MUST_CHECK;
/** Print and free j; *out receives the text (free with cJSON_free). */
int asst_print_json(cJSON *j, char **out) AW_MUST_CHECK;
/** metadata[key] of an API object, NULL if absent or not a string. */
const char *asst_md_get(const cJSON *obj, const char *key);

/* The checkpoint: "a1 <thread_id> <run_id>" ("a1": the Assistants backend,
 * format 1), at most 3 + 2 * 95 + 1 bytes, well under BE_CHECKPOINT_MAX. */
void asst_checkpoint_format(char out[BE_CHECKPOINT_MAX], const char *thread, const char *run);
/** AW_EINVAL unless cp is a checkpoint of ours naming a valid thread and run. */
int asst_checkpoint_parse(const char *cp, char thread[API_JSON_ID_MAX], char run[API_JSON_ID_MAX]) AW_MUST_CHECK;

/* ---- assistant_ensure (asst_ensure.c) --------------------------------------- */

int asst_assistant_ensure(be_backend *bb, const be_assistant *def, const char *known_id,
                          be_result_cb cb, void *opaque, be_op **out);
void asst_ensure_free(op_base *b);

/* ---- conversation management (asst_manage.c) ------------------------------- */

int asst_conv_history(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                      be_op **out);
int asst_conv_append(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out);
int asst_conv_delete(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out);
void asst_manage_free(op_base *b);

/* ---- the turn machine (asst_turn.c) ----------------------------------------- */

typedef enum {
  T_THREAD = 1, T_CLAIM, T_DELETE_LOSER, T_RESUME, T_LOOKUP_RUNS, T_LOOKUP_MESSAGES,
  T_LOOKUP_MSG_RUN, T_LOOKUP_WAIT, T_STREAM, T_SUBMIT, T_CHECK_SUBMIT, T_CANCEL, T_POLL_WAIT,
  T_POLL, T_STEPS, T_MESSAGES, T_CANCEL_RUN, T_ASSISTANT, T_RUN_STEPS, T_FILES, T_DONE
} turn_phase_t;

/* Pages of run steps / messages searched (100 per page). */
#define ASST_MAX_PAGES 5
/* How many message ids one submission round may write before the poll
 * fallback gives up telling them apart (a round writes one or two). */
#define ASST_ROUND_IDS_MAX 64
/* Lookups of the run tagged with our event after an ambiguous POST runs,
 * and submissions of one round after ambiguous outcomes. */
#define ASST_LOOKUPS_MAX 4
#define ASST_POSTS_MAX 3   /* run creations per turn: the first and two after certain absence */
#define ASST_SUBMITS_MAX 3

typedef struct turn_timer {
  uv_timer_t t;
  struct turn_op *turn;
  void (*fire)(struct turn_op *);
} turn_timer;

typedef struct turn_op {
  op_base b;
  be_asst *be;
  const be_turn_events *ev;
  void *opaque;
  int phase;
  int want_deltas, tools_routed, recover;
  int replay;                 /* recovered: no deltas, res.replayed = 1 */
  int no_messages;            /* cancel: the result carries no messages */
  int run_created, terminal, requires_action, stream_error;
  int ambiguous_lookup;       /* LOOKUP_RUNS after an ambiguous POST runs */
  int fresh_thread;           /* we created the thread and won its claim */
  int lookups, submits, pages;
  int posts;               /* POST runs sent by this turn */
  int answer_err;             /* AW_ETOOBIG / AW_ENOMEM: the answer exceeded its bound */
  int calls_err;              /* result of parsing required_action */
  int submit_refused;         /* CHECK_SUBMIT after a 4xx (not after an ambiguity) */
  char *conversation_id;
  char event_id[132];         /* 1..128 bytes (contract.h) */
  char thread[API_JSON_ID_MAX];
  char created_thread[API_JSON_ID_MAX]; /* ours, while claiming */
  char assistant[API_JSON_ID_MAX];
  char msg_id[API_JSON_ID_MAX];  /* an existing user message to start the run for */
  cJSON *add_msg;             /* the user message, sent as the run's additional_messages */
  char *instructions, *additional;
  char *tool_choice;          /* the assistant's tool_choice_json, sent on run creation, or NULL */
  char *submit_body;          /* continue: kept to submit again when certainly not taken */
  api_json_run run;           /* the run as last seen */
  size_t deltas_emitted;
  api_json_answer ans;
  int err, http_status;
  char error_code[64];
  char errmsg[512];
  int64_t started_ms;
  turn_timer *timer;
  long poll_delay_ms;
  char after[API_JSON_ID_MAX]; /* list pagination */
  api_json_tool_calls calls;
  be_tool_call *calls_view;
  int report_calls;           /* finish with BE_END_TOOL_CALLS */
  char round_call[API_JSON_ID_MAX]; /* continue: one submitted call id */
  buf round_ids;
  int steps_done, steps_pages;
  char checkpoint[BE_CHECKPOINT_MAX];
  /* Files (asst_start.c, asst_files.c). */
  unsigned att_need;          /* CONTRACT_ATT_* bits the attachments need */
  char *tools_override;       /* the run's tools (api_json_run_tools), or NULL */
  char *start_checkpoint;     /* in->checkpoint, kept while the assistant is read */
  int include_steps;          /* list the run's hosted tool calls before the answer */
  size_t inline_file_max;     /* generated files up to this size go inline */
  int gathered;               /* steps and files gathered: finish for real */
  int step_include_off;       /* the server refused include[]: list without it */
  api_steps steps;            /* the run's file_search / code_interpreter calls */
  gf_fetch *gf;               /* the generated files' fetch, freed with the turn */
  gf_result gf_res;           /* its result (valid until gf_free) */
} turn_op;

turn_op *asst_turn_new(be_asst *be, const be_turn_events *ev, void *opaque);
void asst_turn_free(turn_op *t);
void asst_turn_phase(turn_op *t, int phase);
void asst_turn_seterr(turn_op *t, int err, int status, const char *code, const char *fmt, ...)
    AW_PRINTF(5, 6);
void asst_turn_clearerr(turn_op *t);
/** Report the outcome (exactly once) and free the turn. */
void asst_turn_finish(turn_op *t);
void asst_turn_fail_api(turn_op *t, const api_result *r);
void asst_turn_fail_start(turn_op *t, int rc, const char *what);
/** The run id is known (t->run.id): record the checkpoint and tell the
 *  caller.  Returns 1 when the turn was cancelled meanwhile (and freed). */
int asst_turn_run_known(turn_op *t);
/** POST the streaming run (with t->add_msg, or for t->msg_id).  Returns
 *  what failed before any I/O (no callback then). */
int asst_turn_post_run(turn_op *t) AW_MUST_CHECK;
/** GET the run now and continue from what it is (asst_turn_on_run). */
void asst_turn_poll(turn_op *t);
/** Follow the run by polling (200 ms doubling to 2 s). */
void asst_turn_follow(turn_op *t);
/** Run fn on the turn after delay_ms. */
void asst_turn_after(turn_op *t, long delay_ms, void (*fn)(turn_op *));
/** The outcome of a GET run (polling, resume, check after a submission). */
void asst_turn_on_run(void *opaque, const api_result *r);
/** Streams (runs create, submit_tool_outputs). */
int asst_turn_on_event(void *opaque, const char *ev, size_t evlen, const char *data, size_t len);

/* ---- after the run: steps and generated files (asst_files.c) ----------------- */

/** Called by asst_turn_finish for an answer: when the turn asked for its
 *  steps or its messages name generated files, start gathering them and
 *  return 1 (asst_turn_finish is called again, t->gathered set, once they
 *  are in); else set t->gathered and return 0. */
int asst_gather(turn_op *t);
/** Map a 400/404 that names a missing file ("No file with id ...") to
 *  AW_ENOTFOUND / "file_not_found" on t; returns 1 when it did. */
int asst_file_not_found(turn_op *t, const api_result *r);

/* ---- start, continue, cancel ------------------------------------------------ */

int asst_turn_start(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                    be_op **out);
/** Look up the run tagged with the event (after an ambiguous POST runs). */
void asst_lookup_tagged_run(turn_op *t);
int asst_turn_continue(be_backend *bb, const be_turn_input *in, long round,
                       const be_tool_output *outputs, size_t n, const be_turn_events *ev,
                       void *opaque, be_op **out);
int asst_turn_cancel(be_backend *bb, const be_turn_input *in, const be_turn_events *ev,
                     void *opaque, be_op **out);
/** The submit stream ended without a run outcome: decide (asst_continue.c). */
void asst_submit_unsettled(turn_op *t, const api_result *r);
/** CHECK_SUBMIT found the run waiting: is it for our round's calls? */
int asst_run_waits_for_round(turn_op *t);
/** Send the kept submission t->submit_body; returns what failed before any
 *  I/O (no callback then). */
int asst_submit_send(turn_op *t) AW_MUST_CHECK;
/** Send it again from a callback (bounded by ASST_SUBMITS_MAX; ends the
 *  turn when it cannot). */
void asst_submit(turn_op *t);

#endif
