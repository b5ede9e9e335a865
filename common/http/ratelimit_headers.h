/* ratelimit_headers.h -- what an API response says about its rate limits
 * (prefix rlh_).  Pure functions: no I/O, no clock but the one passed in.
 *
 * Why a module of its own: OpenAI's limits are per organization and key, so
 * the only authority on how much is left is the API itself, which says so
 * on every response:
 *
 *   x-ratelimit-limit-requests: 60          x-ratelimit-limit-tokens: 150000
 *   x-ratelimit-remaining-requests: 59      x-ratelimit-remaining-tokens: 149984
 *   x-ratelimit-reset-requests: 1s          x-ratelimit-reset-tokens: 6m0s
 *   retry-after: 2 (seconds or an HTTP-date), retry-after-ms: 1500 (429s)
 *
 * The reset values are durations in Go's notation ("6m0s", "1.5s", "20ms",
 * "1h2m3.5s"): the time until that limit is back to its full value.  The
 * fleet's rate gate (api_gate.h) reads them through this module to lower
 * its shared buckets when the API says less remains than the fleet thinks;
 * the simulator formats them with rlh_format_duration.
 *
 * Every value is bounded: counts to [0, RLH_MAX_COUNT], durations to
 * [0, RLH_MAX_MS]; a value that does not parse is ignored (the header
 * counts as absent), never an error that could fail a request.
 */
#ifndef AW_RATELIMIT_HEADERS_H
#define AW_RATELIMIT_HEADERS_H

#include <stddef.h>
#include <time.h>
#include "aw_error.h"

#define RLH_MAX_COUNT 1000000000000L /* 10^12: larger counts are clamped */
#define RLH_MAX_MS (24L * 3600 * 1000) /* durations longer than a day are clamped */

/** What one response said; -1 for each header absent (or unreadable). */
typedef struct rlh_info {
  long limit_requests, limit_tokens;
  long remaining_requests, remaining_tokens;
  long reset_requests_ms, reset_tokens_ms;
  long retry_after_ms;    /* retry-after-ms when present, else Retry-After */
  long retry_after_s_ms;  /* Retry-After (seconds or HTTP-date), in ms */
} rlh_info;

/** Every field -1. */
void rlh_init(rlh_info *in);

/** Parse a Go-style duration ("6m0s", "1.5s", "20ms", "250us", "1h"), or a
 *  bare number of seconds ("2", "0.5"), len bytes (no NUL needed), into
 *  milliseconds rounded up (a wait must never come out shorter than asked),
 *  clamped to RLH_MAX_MS.  AW_EINVAL for anything else (empty, a unit
 *  missing or unknown, a sign, trailing bytes). */
int rlh_parse_duration(const char *s, size_t len, long *out_ms) AW_MUST_CHECK;

/** Format ms the way the API does: "20ms" below a second, "1.5s" below a
 *  minute (at most 3 decimals, trailing zeros dropped), "6m0s", "1h2m3s"
 *  above.  Always NUL-terminated; truncated to fit n. */
void rlh_format_duration(long ms, char *out, size_t n);

/** Feed one response header line ("Name: value", CR/LF allowed at the
 *  end, len bytes).  Returns 1 when it was one of the headers above and its
 *  value was read into in, 0 otherwise (another header, or an unreadable
 *  value, which leaves the field as it was).  now resolves an HTTP-date
 *  Retry-After. */
int rlh_header(rlh_info *in, const char *line, size_t len, time_t now);

/** Did the response carry any of the headers? */
int rlh_any(const rlh_info *in);

/** The server's requested delay: retry-after-ms if given, else Retry-After,
 *  else -1. */
long rlh_retry_after_ms(const rlh_info *in);

/** How long until the API has one more unit of a limit (a request, a
 *  token): 0 when remaining >= 1; else the time the whole limit needs to
 *  come back (reset_ms) spread over the units missing (limit - remaining),
 *  rounded up; reset_ms when the limit is unknown; -1 when remaining or
 *  reset_ms is unknown. */
long rlh_next_unit_ms(long limit, long remaining, long reset_ms);

#endif
