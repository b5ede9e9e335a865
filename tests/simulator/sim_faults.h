/* sim_faults.h -- runtime settings and fault injection (prefix sfault_).
 *
 * One settings record, changed by CLI flags (the baseline) and by
 * POST /admin/faults (merged field by field), consulted per request:
 *  - pacing: latency_ms, token_delay_ms, answer_tokens;
 *  - counted faults, each consumed by one matching event:
 *    fail_next_n_with_429 (+retry_after_s), fail_next_n_with_500,
 *    drop_next_n_streams, fail_next_n_runs (+fail_run_code),
 *    expire_next_n_runs;
 *  - requires_action_timeout_s: how long a run waits for tool outputs
 *    before it expires (600, as the real API);
 *  - max_context_tokens: a chat completion whose messages hold more words
 *    is refused (400 context_length_exceeded), as a model's context window;
 *  - chaos rates in [0,1]: rate_429, rate_500, rate_drop_stream, drawn
 *    from a splitmix64 PRNG seeded by `seed`, so a run of the same request
 *    sequence fails the same way every time.
 *  - apply_then_fail: per creating route ("POST /v1/responses", ...), the
 *    next n requests that succeed are applied (the object exists, the run
 *    or response goes on) but the client gets status (500 or 502) or, for
 *    status 0, a connection closed without an answer: the "did my create
 *    happen?" case a client must survive without doubling.
 * sfault_reset() returns to the baseline.
 *
 * @locality any thread (one mutex; the fast path is a few loads).
 */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "aw_error.h"

/** Creating routes that apply_then_fail can target (sfault_apply_route()). */
#define SFAULT_APPLY_ROUTES 11

typedef struct sfault_cfg {
  int latency_ms;
  int token_delay_ms;
  int answer_tokens;
  int fail_next_n_with_429;
  int retry_after_s;
  int fail_next_n_with_500;
  int drop_next_n_streams;
  int fail_next_n_runs;
  int expire_next_n_runs;
  char fail_run_code[32]; /* server_error | rate_limit_exceeded | invalid_prompt */
  int requires_action_timeout_s; /* a run waiting for tool outputs expires after this */
  int max_context_tokens;        /* words a chat completion's messages may hold */
  int max_file_bytes;            /* a larger upload to POST /v1/files is a 413 */
  int file_processing_ms;        /* a file added to a vector store is processed this much later */
  double rate_429, rate_500, rate_drop_stream;
  double rate_apply_fail; /* any creating request: applied, then 500 / 502 / dropped in turn */
  uint64_t seed;
  struct {
    int n;      /* requests left to fail after applying them */
    int status; /* 500, 502, or 0: drop the connection */
  } apply_fail[SFAULT_APPLY_ROUTES];
} sfault_cfg;

/** Outcome of the per-request HTTP fault draw. */
typedef enum { SFAULT_NONE = 0, SFAULT_429, SFAULT_500 } sfault_http;
/** Outcome of the per-run fault draw. */
typedef enum { SFAULT_RUN_OK = 0, SFAULT_RUN_FAIL, SFAULT_RUN_EXPIRE } sfault_run;

/** Defaults: no faults, 20 answer tokens, retry_after_s 1, seed 1,
 *  requires_action_timeout_s 600, max_context_tokens 100000,
 *  max_file_bytes 512 MiB (the API's limit), file_processing_ms 100. */
void sfault_defaults(sfault_cfg *c);
/** Install c as baseline and current settings. */
void sfault_init(const sfault_cfg *c);
/** Copy the current settings. */
void sfault_get(sfault_cfg *out);
/** Back to the baseline (reseeds the PRNG). */
void sfault_reset(void);
/** Merge a JSON object of settings; unknown keys or bad values fail with
 *  AW_EINVAL and change nothing.  errstr gets the reason. */
int sfault_set_json(const cJSON *obj, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** The current settings as a JSON object (caller deletes). */
cJSON *sfault_to_json(void);
/** Draw the HTTP fault for one API request. */
sfault_http sfault_take_http(int *retry_after_s);
/** Should the stream being created be dropped mid-way? */
int sfault_take_drop_stream(void);
/** Name of apply_then_fail route i (0..SFAULT_APPLY_ROUTES-1), as
 *  sstats_route_name() spells it: "POST /v1/responses"... */
const char *sfault_apply_route(int i);
/** A request on route (its sstats name) succeeded: should its answer be
 *  replaced?  Returns -1 (no), or the status to answer (500, 502) or 0
 *  (drop the connection), consuming one count. */
int sfault_take_apply_fail(const char *route);
/** Draw the outcome of a run being created; code gets fail_run_code. */
sfault_run sfault_take_run(char *code, size_t code_size);

#endif
