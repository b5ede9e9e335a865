/* fuzz_api_json.c -- libFuzzer target for everything that interprets API
 * JSON (api_json.h): error bodies, stream error events, run objects, delta
 * events, the answer collector, the tool calls of a run in requires_action
 * and run-steps pages, as the turn state machine uses them; a run's
 * expires_at, whatever number it is, maps to non-negative unix ms.
 * The first byte picks the entry point; the rest is the untrusted body.
 * Properties checked beyond "no crash, no leak, no UB": the collector never
 * exceeds its bound, and the text-from-offset view agrees with text_len;
 * tool calls come out non-empty with bounded ids, or not at all; step
 * scanning never overfills its id set.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_json.h"

static int count_text(void *opaque, const char *text, size_t len) {
  size_t *n = opaque;
  (void)text;
  *n += len;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int sel = data[0] % 7;
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  switch (sel) {
  case 0: {
    char code[64], msg[768];
    api_error_format("POST", "/v1/threads/t/runs", 400, p, n, code, sizeof code, msg, sizeof msg);
    if (strlen(msg) >= sizeof msg) abort();
    break;
  }
  case 1: {
    char code[64], msg[256];
    if (api_json_error_event(p, n, code, sizeof code, msg, sizeof msg)) {/* not JSON: fine */}
    break;
  }
  case 2: {
    api_json_run run;
    if (api_json_run_parse_text(p, n, &run) == AW_OK) {
      if (!run.id[0] || strlen(run.id) >= sizeof run.id) abort();
      (void)api_json_run_terminal(run.status);
      /* expires_at as any accepted number: ms never wraps negative. */
      int64_t ms = api_json_unix_ms(run.expires_at);
      if (ms < 0 || (run.expires_at > 0 && ms < run.expires_at)) abort();
    }
    break;
  }
  case 3: {
    size_t total = 0;
    if (api_json_delta_texts(p, n, count_text, &total)) {/* not JSON: fine */}
    break;
  }
  case 5: {
    /* Parsed twice into the same collector, as rounds of one turn would. */
    api_json_tool_calls tc;
    api_json_tool_calls_init(&tc, 256);
    for (int i = 0; i < 2; i++) {
      int rc = api_json_tool_calls_parse_text(&tc, p, n);
      if (tc.arena.len > 256) abort();
      if (rc && rc != AW_EPARSE && rc != AW_ETOOBIG && rc != AW_ENOMEM) abort();
      const api_json_tool_call *c;
      size_t nc;
      if (api_json_tool_calls_build(&tc, &c, &nc) != AW_OK) continue;
      if (rc ? nc != 0 : nc == 0) abort();
      for (size_t k = 0; k < nc; k++)
        if (!c[k].id[0] || strlen(c[k].id) >= API_JSON_ID_MAX || !c[k].name[0] || !c[k].arguments) abort();
    }
    api_json_tool_calls_free(&tc);
    break;
  }
  case 6: {
    cJSON *j = cJSON_ParseWithLength(p, n);
    buf ids;
    buf_init(&ids, 4 * API_JSON_ID_MAX);
    int found;
    char last[API_JSON_ID_MAX];
    int rc = api_json_steps_after_call(j, "call_1", &ids, &found, last);
    if (ids.len > 4 * API_JSON_ID_MAX || ids.len % API_JSON_ID_MAX || strlen(last) >= API_JSON_ID_MAX) abort();
    for (size_t k = 0; k < ids.len; k += API_JSON_ID_MAX)
      if (!memchr(ids.data + k, '\0', API_JSON_ID_MAX) || !api_json_ids_contain(&ids, ids.data + k)) abort();
    (void)rc;
    buf_free(&ids);
    cJSON_Delete(j);
    break;
  }
  default: { /* 4 */
    /* A small bound so ETOOBIG paths are reached; the same input is added
     * twice as a stream would deliver two completed messages. */
    api_json_answer a;
    api_json_answer_init(&a, 512);
    for (int i = 0; i < 2; i++) {
      int rc = api_json_answer_add_text(&a, p, n);
      if (a.arena.len > 512) abort();
      if (rc && rc != AW_EPARSE && rc != AW_ETOOBIG && rc != AW_ENOMEM) abort();
    }
    const contract_out_message *m;
    size_t nm;
    if (api_json_answer_build(&a, &m, &nm) == AW_OK) {
      size_t text = 0;
      for (size_t i = 0; i < nm; i++)
        for (size_t j = 0; j < m[i].nparts; j++)
          if (!strcmp(m[i].parts[j].type, "text")) text += m[i].parts[j].text_len;
      if (text != a.text_len) abort();
      buf out;
      buf_init(&out, 1024);
      if (api_json_answer_text_from(&a, text / 2, &out) == AW_OK && out.len != text - text / 2) abort();
      buf_free(&out);
    }
    api_json_answer_free(&a);
  }
  }
  return 0;
}
