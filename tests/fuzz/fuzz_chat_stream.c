/* fuzz_chat_stream.c -- libFuzzer target: the Chat Completions stream
 * mapper (chat_stream_event, chat_stream_calls) and the readers of stored
 * turns (chat_record_parse, the message scans, chat_context_build) on
 * arbitrary data.  The input is split at NUL bytes into the data of
 * successive SSE events; the first byte chooses a small or large text cap
 * (so the bound is reached) and the round calls are numbered with.
 * Checks: no crash, no leak; rc is AW_OK or AW_EPARSE; a delta is
 * NUL-terminated text of its length; the text and the calls stay within
 * their caps; nothing counts after [DONE]; built calls have a name and ids
 * unique within the round; each event's data read as a stored turn gives
 * consistent views, and a context built from all of them never holds more
 * history than its budget.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_int.h"

static void check_record(const char *d, size_t n) {
  chat_record r;
  if (chat_record_parse(d, n, &r) != AW_OK) return;
  if (!r.event_id || !cJSON_IsArray(r.msgs)) abort();
  be_tool_call calls[4];
  size_t nc = 99;
  int rc = chat_msgs_open_calls(r.msgs, calls, 4, &nc);
  if (rc != AW_OK && rc != AW_EPARSE && rc != AW_ETOOBIG) abort();
  if (rc == AW_OK && nc > 4) abort();
  for (size_t i = 0; rc == AW_OK && i < nc; i++)
    if (!calls[i].id[0] || !calls[i].name[0] || !calls[i].arguments) abort();
  if (chat_msgs_rounds(r.msgs) < 0) abort();
  const char *t = chat_msgs_final_text(r.msgs);
  if (t) (void)strlen(t);
  char *out = NULL;
  size_t len = 0;
  if (chat_record_format(&r, &out, &len) == AW_OK && strlen(out) != len) abort();
  cJSON_free(out);
  chat_record_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cap = (data[0] & 1) ? 16 : 4096;
  long round = data[0] >> 4;
  data++;
  size--;

  chat_stream st;
  chat_stream_init(&st, cap);
  char *turns[64];
  size_t lens[64], nturns = 0;
  int done_seen = 0;
  size_t i = 0;
  while (i <= size) {
    const uint8_t *nul = memchr(data + i, 0, size - i);
    size_t n = nul ? (size_t)(nul - (data + i)) : size - i;
    char *ev = malloc(n + 1);
    memcpy(ev, data + i, n);
    ev[n] = '\0';
    chat_ev e;
    int rc = chat_stream_event(&st, ev, n, &e);
    if (rc != AW_OK && rc != AW_EPARSE) abort();
    if (done_seen && e != CHAT_EV_NONE) abort();
    if (e == CHAT_EV_DELTA && (!st.delta || strlen(st.delta) != st.delta_len || !st.delta_len)) abort();
    if (st.text.len > cap || st.call_bytes > cap || st.ncalls > CHAT_CALLS_MAX) abort();
    if (st.done) done_seen = 1;
    check_record(ev, n);
    if (nturns < 64) {
      turns[nturns] = ev;
      lens[nturns++] = n;
    } else {
      free(ev);
    }
    if (!nul) break;
    i += n + 1;
  }

  be_tool_call *calls = calloc(CHAT_CALLS_MAX, sizeof *calls);
  size_t nc = 0;
  if (!st.err && chat_stream_calls(&st, round, calls, &nc) == AW_OK) {
    if (nc != st.ncalls) abort();
    for (size_t k = 0; k < nc; k++) {
      if (!calls[k].id[0] || !calls[k].name[0] || !calls[k].arguments) abort();
      for (size_t j = 0; j < k; j++)
        if (!strcmp(calls[j].id, calls[k].id)) abort();
    }
  }
  free(calls);

  /* Every event read as a stored turn: the context holds whole turns within the budget. */
  cJSON *cur = cJSON_CreateArray(), *msg = cJSON_CreateObject(), *out = NULL;
  cJSON_AddStringToObject(msg, "role", "user");
  cJSON_AddStringToObject(msg, "content", "hi");
  cJSON_AddItemToArray(cur, msg);
  chat_context_stats cs;
  long max_m = 2 + (long)(size % 9), max_k = 20 + (long)(size % 200);
  if (chat_context_build("sys", (const char *const *)turns, lens, nturns, cur, max_m, max_k, &out, &cs) == AW_OK) {
    if ((size_t)cJSON_GetArraySize(out) != cs.messages) abort();
    if (cs.turns_sent && (cs.messages > (size_t)max_m || cs.tokens > (size_t)max_k)) abort();
    if (cs.turns_sent + cs.turns_corrupt > nturns) abort();
    char *s = cJSON_PrintUnformatted(out);
    cJSON_free(s);
    cJSON_Delete(out);
  }
  cJSON_Delete(cur);
  for (size_t k = 0; k < nturns; k++) free(turns[k]);
  chat_stream_free(&st);
  return 0;
}
