/* rsp_stream.c -- mapping Responses stream events to a turn's progress
 * (see rsp_int.h).
 *
 * A text turn is dominated by response.output_text.delta events, and most
 * other events (content_part.*, output_text.done, function_call_arguments.*,
 * reasoning ...) carry nothing a turn keeps.  Servers put "type" first in
 * each event object, so a cheap scan of the first bytes names the event and
 * only the few events that matter are parsed.  Data where "type" is not
 * first is parsed in full: correct, only slower.
 *
 * Sequence numbers: an event is only parsed when it matters, so st->seq is
 * the last sequence number among *parsed* events.  Resuming after it
 * replays only events that were skipped (and are skipped again) or never
 * seen: nothing is counted twice.
 */
#include "rsp_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void rsp_stream_init(rsp_stream *st, rsp_answer *ans, int want_deltas, const char *known_id) {
  memset(st, 0, sizeof *st);
  st->ans = ans;
  st->want_deltas = want_deltas;
  st->seq = -1;
  st->created_seq = -1;
  if (known_id && known_id[0]) {
    snprintf(st->resp.id, sizeof st->resp.id, "%s", known_id);
    st->created = 1;
  }
}

void rsp_stream_free(rsp_stream *st) {
  cJSON_Delete(st->doc);
  st->doc = NULL;
  st->delta = NULL;
  st->delta_len = 0;
}

static int skip_ws(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return (int)i;
}

/* If data starts {"type":"<name>" (any whitespace), point at the name; 0
 * when it does not (or the name holds an escape). */
static int peek_type(const char *d, size_t len, const char **name, size_t *nlen) {
  if (len > 1u << 30) return 0;
  size_t i = (size_t)skip_ws(d, len, 0);
  if (i >= len || d[i] != '{') return 0;
  i = (size_t)skip_ws(d, len, i + 1);
  if (len - i < 6 || memcmp(d + i, "\"type\"", 6) != 0) return 0;
  i = (size_t)skip_ws(d, len, i + 6);
  if (i >= len || d[i] != ':') return 0;
  i = (size_t)skip_ws(d, len, i + 1);
  if (i >= len || d[i] != '"') return 0;
  size_t start = ++i;
  while (i < len && d[i] != '"' && d[i] != '\\') i++;
  if (i >= len || d[i] != '"') return 0;
  *name = d + start;
  *nlen = i - start;
  return 1;
}

static int name_is(const char *n, size_t len, const char *lit) {
  size_t l = strlen(lit);
  return len == l && memcmp(n, lit, l) == 0;
}

/* Events a turn needs; everything else is skipped unparsed. */
static int wanted(const rsp_stream *st, const char *n, size_t len) {
  if (name_is(n, len, "response.output_text.delta")) return st->want_deltas;
  if (name_is(n, len, "response.output_item.done") || name_is(n, len, "error")) return 1;
  if (name_is(n, len, "response.created") || name_is(n, len, "response.queued") ||
      name_is(n, len, "response.in_progress"))
    return !st->created; /* only to learn the id */
  return len > 9 && memcmp(n, "response.", 9) == 0 &&
         (name_is(n + 9, len - 9, "completed") || name_is(n + 9, len - 9, "failed") ||
          name_is(n + 9, len - 9, "incomplete") || name_is(n + 9, len - 9, "cancelled"));
}

static const char *str_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void collect(rsp_stream *st, int rc) {
  if (rc == AW_ETOOBIG || rc == AW_ENOMEM) st->answer_err = rc;
}

/* An event carrying the response object. */
static int on_response(rsp_stream *st, const char *type, const cJSON *j, int64_t prev_seq, rsp_ev *ev) {
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "response");
  rsp_resp resp;
  if (rsp_json_response(r, &resp) != AW_OK) return AW_EPARSE;
  if (st->created && strcmp(resp.id, st->resp.id) != 0) {
    st->seq = prev_seq; /* another response's numbering: not ours to track */
    return AW_OK;
  }
  int first = !st->created;
  /* A terminal event's status is the response's; the event type names it
   * too (a server that leaves the embedded status stale is believed by
   * its event). */
  const char *suffix = type + strlen("response.");
  int terminal = rsp_status_terminal(suffix);
  if (terminal && strcmp(resp.status, suffix) != 0)
    snprintf(resp.status, sizeof resp.status, "%s", suffix);
  st->resp = resp;
  st->created = 1;
  if (first) st->created_seq = st->seq;
  if (terminal) {
    st->terminal = 1;
    /* The final object's output is the whole truth for this response; keep
     * what output_item.done gave when it has none (some servers omit it). */
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(r, "output");
    if (!st->answer_err && cJSON_GetArraySize(out) > 0) collect(st, rsp_answer_set_output(st->ans, r));
    *ev = RSP_EV_TERMINAL;
  } else if (first) {
    *ev = RSP_EV_CREATED;
  }
  return AW_OK;
}

int rsp_stream_event(rsp_stream *st, const char *data, size_t len, rsp_ev *ev) {
  *ev = RSP_EV_NONE;
  rsp_stream_free(st);
  const char *n;
  size_t nl;
  if (peek_type(data, len, &n, &nl) && !wanted(st, n, nl)) return AW_OK;
  if (st->terminal) return AW_OK; /* nothing after the end counts */
  cJSON *j = cJSON_ParseWithLength(data, len);
  const char *type = str_of(j, "type");
  if (!type) {
    cJSON_Delete(j);
    return AW_EPARSE;
  }
  st->doc = j;
  if (!wanted(st, type, strlen(type))) return AW_OK;
  int64_t prev_seq = st->seq;
  const cJSON *sq = cJSON_GetObjectItemCaseSensitive(j, "sequence_number");
  if (cJSON_IsNumber(sq) && isfinite(sq->valuedouble) && sq->valuedouble >= 0 &&
      sq->valuedouble < 9.0e15) {
    int64_t s = (int64_t)sq->valuedouble;
    if (s <= st->seq) return AW_OK; /* replayed: seen already */
    st->seq = s;
  }
  if (!strcmp(type, "response.output_text.delta")) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delta");
    if (!cJSON_IsString(d) || !st->created) return AW_OK;
    st->delta = d->valuestring;
    st->delta_len = strlen(d->valuestring);
    if (st->delta_len) *ev = RSP_EV_DELTA;
    return AW_OK;
  }
  if (!strcmp(type, "response.output_item.done")) {
    if (!st->created || st->answer_err) return AW_OK;
    int rc = rsp_answer_add_item(st->ans, cJSON_GetObjectItemCaseSensitive(j, "item"));
    collect(st, rc);
    return rc == AW_EPARSE ? AW_EPARSE : AW_OK;
  }
  if (!strcmp(type, "error")) {
    /* A stream error ends the response as failed (background responses
     * report the same through response.failed when they get that far). */
    const char *code = str_of(j, "code"), *msg = str_of(j, "message");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error"); /* older servers nest it */
    if (!code) code = str_of(e, "code");
    if (!code) code = str_of(e, "type");
    if (!msg) msg = str_of(e, "message");
    snprintf(st->resp.status, sizeof st->resp.status, "failed");
    snprintf(st->resp.error_code, sizeof st->resp.error_code, "%s", code ? code : "stream_error");
    snprintf(st->resp.errmsg, sizeof st->resp.errmsg, "%s", msg ? msg : "error event");
    st->terminal = 1;
    *ev = RSP_EV_TERMINAL;
    return AW_OK;
  }
  return on_response(st, type, j, prev_seq, ev);
}
