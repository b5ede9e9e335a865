/* fuzz_api_json.c -- libFuzzer target for everything that interprets API
 * JSON (api_json.h): error bodies, stream error events, run objects, delta
 * events, the answer collector, the tool calls of a run in requires_action
 * and run-steps pages, as the turn state machine uses them; a run's
 * expires_at, whatever number it is, maps to non-negative unix ms.
 * The first byte picks the entry point; the rest is the untrusted body.
 * Properties checked beyond "no crash, no leak, no UB": the collector never
 * exceeds its bound, and the text-from-offset view agrees with text_len;
 * tool calls come out non-empty with bounded ids, or not at all; step
 * scanning never overfills its id set.  A history page (each item of
 * "data", or the one object) added as listed (api_json_answer_add_listed):
 * the bound holds and a refused item leaves the collector as it was or
 * empty; with room, exactly the user and assistant items come out, in
 * order, with their id and role and a created_at >= 0, and the assistant
 * ones are exactly what the turn's collector (api_json_answer_add) keeps
 * of the items that carry a role, without role or created_at.  The page is
 * the body, or built from its bytes (page_from_bytes).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_json.h"

static int count_text(void *opaque, const char *text, size_t len) {
  size_t *n = opaque;
  (void)text;
  *n += len;
  return 0;
}

static size_t text_of(const contract_out_message *m, size_t nm) {
  size_t text = 0;
  for (size_t i = 0; i < nm; i++)
    for (size_t j = 0; j < m[i].nparts; j++)
      if (!strcmp(m[i].parts[j].type, "text")) text += m[i].parts[j].text_len;
  return text;
}

static const char *role_of(const cJSON *item) {
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(item, "role");
  return cJSON_IsString(r) ? r->valuestring : NULL;
}

#define LISTED_ITEMS 64

/* A history page built from bytes, so that the fuzzer reaches pages of
 * well-formed items without having to find JSON's syntax first: per item,
 * a role (user, assistant, system, none, a number), an id (fine, missing,
 * empty or too long), a created_at (none, negative, positive), a text part
 * of the bytes that follow and maybe an image_file part. */
static cJSON *page_from_bytes(const uint8_t *q, size_t m) {
  static const char *const roles[] = {"user", "assistant", "system"};
  cJSON *page = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(page, "data");
  for (int k = 0; m >= 4 && k < 16; k++) {
    uint8_t b0 = q[0], b1 = q[1], b2 = q[2], len = q[3] % 32;
    q += 4;
    m -= 4;
    cJSON *it = cJSON_CreateObject();
    if (b0 % 5 < 3) cJSON_AddStringToObject(it, "role", roles[b0 % 5]);
    else if (b0 % 5 == 4) cJSON_AddNumberToObject(it, "role", 7);
    char id[API_JSON_ID_MAX + 8];
    if (b1 % 8 == 5) {
      memset(id, 'i', API_JSON_ID_MAX);
      id[API_JSON_ID_MAX] = '\0';
    } else if (b1 % 8 == 6) {
      id[0] = '\0';
    } else {
      snprintf(id, sizeof id, "msg_%d", k);
    }
    if (b1 % 8 != 7) cJSON_AddStringToObject(it, "id", id);
    if (b2) cJSON_AddNumberToObject(it, "created_at", (double)(int8_t)b2 * 100000);
    char text[32];
    size_t tl = 0;
    for (; tl < len && m; tl++, q++, m--) text[tl] = q[0] ? (char)q[0] : 'x';
    text[tl] = '\0';
    cJSON *content = cJSON_AddArrayToObject(it, "content"), *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", "text");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "text"), "value", text);
    cJSON_AddItemToArray(content, part);
    if (b0 & 0x80) {
      part = cJSON_CreateObject();
      cJSON_AddStringToObject(part, "type", "image_file");
      cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "image_file"), "file_id", "file-1");
      cJSON_AddItemToArray(content, part);
    }
    cJSON_AddItemToArray(items, it);
  }
  return page;
}

static void check_listed(const char *p, size_t n) {
  if (n < 1) return;
  cJSON *j = p[0] & 1 ? page_from_bytes((const uint8_t *)p + 1, n - 1) : cJSON_ParseWithLength(p + 1, n - 1);
  if (!j) return;
  const cJSON *page = cJSON_GetObjectItemCaseSensitive(j, "data");
  const cJSON *items[LISTED_ITEMS];
  size_t ni = 0;
  if (cJSON_IsArray(page)) {
    for (const cJSON *c = page->child; c && ni < LISTED_ITEMS; c = c->next) items[ni++] = c;
  } else {
    items[ni++] = j;
  }
  /* A small bound: every item as listed, ETOOBIG reached. */
  api_json_answer small;
  api_json_answer_init(&small, 512);
  for (size_t i = 0; i < ni; i++) {
    size_t before = api_json_answer_count(&small);
    int rc = api_json_answer_add_listed(&small, items[i]);
    size_t after = api_json_answer_count(&small);
    if (small.arena.len > 512) abort();
    if (rc == AW_OK ? after != before && after != before + 1 : after != before && after != 0) abort();
    if (rc == AW_ETOOBIG && after != 0) abort();
    if (rc && rc != AW_EPARSE && rc != AW_ETOOBIG && rc != AW_ENOMEM) abort();
  }
  api_json_answer_free(&small);

  /* With room: listed against the turn's collector, item by item. */
  api_json_answer listed, turn;
  api_json_answer_init(&listed, 1 << 20);
  api_json_answer_init(&turn, 1 << 20);
  const cJSON *kept[LISTED_ITEMS];
  size_t nkept = 0, nturn = 0;
  int clean = 1;
  for (size_t i = 0; i < ni && clean; i++) {
    size_t lb = api_json_answer_count(&listed), tb = api_json_answer_count(&turn);
    int rl = api_json_answer_add_listed(&listed, items[i]), rt = api_json_answer_add(&turn, items[i]);
    if (rl != AW_OK || rt != AW_OK) {
      clean = 0; /* a refused item (may have reset either): nothing more to compare */
      break;
    }
    int l = api_json_answer_count(&listed) != lb, t = api_json_answer_count(&turn) != tb;
    const char *role = role_of(items[i]);
    int user = role && !strcmp(role, "user"), assistant = role && !strcmp(role, "assistant");
    if (l != (user || assistant)) abort();        /* listed: exactly user and assistant */
    if (role && t != assistant) abort();          /* the turn: an assistant's, or one without role */
    if (l) kept[nkept++] = items[i];
    nturn += (size_t)t;
  }
  const contract_out_message *m;
  size_t nm;
  if (clean && api_json_answer_build(&listed, &m, &nm) == AW_OK) {
    if (nm != nkept || text_of(m, nm) != listed.text_len) abort();
    for (size_t k = 0; k < nm; k++) {
      const cJSON *id = cJSON_GetObjectItemCaseSensitive(kept[k], "id");
      if (!m[k].role || strcmp(m[k].role, role_of(kept[k])) || m[k].created_at < 0) abort();
      if (!cJSON_IsString(id) || strcmp(m[k].id, id->valuestring)) abort();
    }
  }
  if (clean && api_json_answer_build(&turn, &m, &nm) == AW_OK) {
    if (nm != nturn || text_of(m, nm) != turn.text_len) abort();
    for (size_t k = 0; k < nm; k++)
      if (m[k].role || m[k].created_at) abort();
  }
  api_json_answer_free(&listed);
  api_json_answer_free(&turn);
  cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int sel = data[0] % 8;
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
  case 7:
    check_listed(p, n);
    break;
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
      size_t text = text_of(m, nm);
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
