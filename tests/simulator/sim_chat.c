/* sim_chat.c -- Chat Completions: validation, the model's answer from the
 * sent history, faults, and the log of request bodies. */
#include "sim_chat.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "sim_cstream.h"
#include "sim_faults.h"
#include "sim_model.h"
#include "sim_req.h"
#include "sim_store.h"
#include "sim_turn.h"
#include "sim_usage.h"

#define BAD SREQ_BAD

static int is(const cJSON *v, const char *s) { return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0; }
static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* ---- the request log ------------------------------------------------------ */

/* The last LOG_MAX bodies, at most LOG_BYTES in all: a ring of the raw
 * texts (they parsed, so each is valid JSON to splice into the answer). */
#define LOG_MAX 256
#define LOG_BYTES (32u << 20)

typedef struct logent {
  long index;
  int status;
  char *body;
  size_t len;
} logent;

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static logent g_log[LOG_MAX];
static size_t g_log_first, g_log_n, g_log_bytes;
static long g_log_next; /* never reset: a test's "after" stays meaningful */

static void log_drop_oldest(void) {
  logent *e = &g_log[g_log_first];
  g_log_bytes -= e->len;
  free(e->body);
  e->body = NULL;
  g_log_first = (g_log_first + 1) % LOG_MAX;
  g_log_n--;
}

static void log_add(const char *body, size_t len, int status) {
  char *copy = len <= LOG_BYTES ? strndup(body, len) : NULL;
  pthread_mutex_lock(&g_log_mu);
  long index = g_log_next++;
  if (copy) {
    while (g_log_n && (g_log_n == LOG_MAX || g_log_bytes + len > LOG_BYTES)) log_drop_oldest();
    g_log[(g_log_first + g_log_n) % LOG_MAX] = (logent){index, status, copy, len};
    g_log_n++;
    g_log_bytes += len;
  }
  pthread_mutex_unlock(&g_log_mu);
}

void schat_reset(void) {
  pthread_mutex_lock(&g_log_mu);
  while (g_log_n) log_drop_oldest();
  pthread_mutex_unlock(&g_log_mu);
}

void schat_admin_requests(const sapi_req *q, sapi_reply *r) {
  const char *s = q->arg(q->arg_cls, "after");
  long after = -1;
  if (s) {
    char *end;
    after = strtol(s, &end, 10);
    if (!*s || *end || after < 0) {
      BAD(r, "after", "invalid_value", "Invalid 'after': expected an integer >= 0.");
      return;
    }
  }
  buf b;
  buf_init(&b, LOG_BYTES + LOG_MAX * 64u);
  int rc = buf_appends(&b, "[");
  pthread_mutex_lock(&g_log_mu);
  int first = 1;
  for (size_t i = 0; i < g_log_n && rc == AW_OK; i++) {
    const logent *e = &g_log[(g_log_first + i) % LOG_MAX];
    if (e->index <= after) continue;
    rc = buf_appendf(&b, "%s{\"index\":%ld,\"status\":%d,\"body\":", first ? "" : ",", e->index, e->status);
    if (rc == AW_OK) rc = buf_append(&b, e->body, e->len);
    if (rc == AW_OK) rc = buf_appends(&b, "}");
    first = 0;
  }
  pthread_mutex_unlock(&g_log_mu);
  if (rc == AW_OK) rc = buf_appends(&b, "]");
  if (rc != AW_OK) {
    buf_free(&b);
    sreq_json(r, 500, NULL);
    return;
  }
  r->status = 200;
  r->body = buf_take(&b, NULL);
}

/* ---- validation ------------------------------------------------------------- */

/* sreq_check_fields on the keys of obj that fields names: the Chat API's
 * other fields are accepted and ignored. */
static int check_known(const cJSON *obj, const sreq_field *fields, sapi_reply *r, const char *prefix) {
  cJSON *view = cJSON_CreateObject();
  if (!view) {
    sreq_json(r, 500, NULL);
    return -1;
  }
  for (const cJSON *it = obj->child; it; it = it->next) {
    const sreq_field *f = fields;
    while (f->name && strcmp(f->name, it->string) != 0) f++;
    if (f->name) cJSON_AddItemReferenceToObject(view, it->string, (cJSON *)it);
  }
  int rc = sreq_check_fields(view, fields, r, prefix, 0);
  cJSON_Delete(view);
  return rc;
}

static int check_nonempty_array(const cJSON *v, const char *name, sapi_reply *r, const char *want) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, want, v);
  if (cJSON_GetArraySize(v) < 1) {
    BAD(r, name, "empty_array",
        "Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array instead.", name);
    return -1;
  }
  return 0;
}

/* Content parts: kinds lists the types allowed, named by `names` in the
 * error (text needs text, image_url needs image_url.url). */
static int check_parts(const cJSON *v, const char *name, sapi_reply *r, const char *const *kinds, const char *names) {
  if (check_nonempty_array(v, name, r, "a string or an array of objects")) return -1;
  int i = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, v) {
    char pre[320];
    snprintf(pre, sizeof pre, "%s[%d]", name, i++);
    const cJSON *ty = get(p, "type");
    if (!cJSON_IsObject(p)) return sreq_bad_type(r, pre, "an object", p);
    int k = 0;
    while (kinds[k] && !is(ty, kinds[k])) k++;
    if (!kinds[k]) {
      BAD(r, pre, "invalid_value", "Invalid value for '%s.type': expected %s.", pre, names);
      return -1;
    }
    if (is(ty, "text") && !cJSON_IsString(get(p, "text"))) {
      char f[340];
      snprintf(f, sizeof f, "%s.text", pre);
      if (get(p, "text")) return sreq_bad_type(r, f, "a string", get(p, "text"));
      BAD(r, f, "missing_required_parameter", "Missing required parameter: '%s'.", f);
      return -1;
    }
    if (is(ty, "image_url") && !cJSON_IsString(get(get(p, "image_url"), "url"))) {
      char f[340];
      snprintf(f, sizeof f, "%s.image_url.url", pre);
      BAD(r, f, "missing_required_parameter", "Missing required parameter: '%s'.", f);
      return -1;
    }
  }
  return 0;
}

static const char *const text_kinds[] = {"text", NULL};
static const char *const user_kinds[] = {"text", "image_url", "input_audio", "file", NULL};
static const char *const asst_kinds[] = {"text", "refusal", NULL};

static int check_text_content(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsString(v) ? 0 : check_parts(v, name, r, text_kinds, "'text'");
}
static int check_user_content(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsString(v) ? 0 : check_parts(v, name, r, user_kinds, "'text', 'image_url', 'input_audio' or 'file'");
}
static int check_asst_content(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsString(v) || cJSON_IsNull(v) ? 0 : check_parts(v, name, r, asst_kinds, "'text' or 'refusal'");
}

static int check_function_type(const cJSON *v, const char *name, sapi_reply *r) {
  if (is(v, "function")) return 0;
  BAD(r, name, "invalid_value", "Invalid value for '%s': the simulator takes function tools only.", name);
  return -1;
}

static const sreq_field call_fn_fields[] = {
    {"name", V_STR, 1, 0, 0, NULL},
    {"arguments", V_STR, 1, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_call_fn(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  return check_known(v, call_fn_fields, r, name);
}

static const sreq_field call_fields[] = {
    {"id", V_STR, 1, 0, 0, NULL},
    {"type", V_FN, 1, 0, 0, check_function_type},
    {"function", V_FN, 1, 0, 0, check_call_fn},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_tool_calls(const cJSON *v, const char *name, sapi_reply *r) {
  if (check_nonempty_array(v, name, r, "an array")) return -1;
  int i = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, v) {
    char pre[320];
    snprintf(pre, sizeof pre, "%s[%d]", name, i++);
    if (!cJSON_IsObject(c)) return sreq_bad_type(r, pre, "an object", c);
    if (check_known(c, call_fields, r, pre)) return -1;
  }
  return 0;
}

static const sreq_field system_fields[] = {
    {"role", V_STR, 1, 0, 0, NULL},
    {"content", V_FN, 1, 0, 0, check_text_content},
    {"name", V_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const sreq_field user_fields[] = {
    {"role", V_STR, 1, 0, 0, NULL},
    {"content", V_FN, 1, 0, 0, check_user_content},
    {"name", V_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const sreq_field asst_fields[] = {
    {"role", V_STR, 1, 0, 0, NULL},
    {"content", V_FN, 0, 0, 0, check_asst_content},
    {"refusal", V_STR_NULL, 0, 0, 0, NULL},
    {"tool_calls", V_FN, 0, 0, 0, check_tool_calls},
    {"name", V_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const sreq_field tool_msg_fields[] = {
    {"role", V_STR, 1, 0, 0, NULL},
    {"content", V_FN, 1, 0, 0, check_text_content},
    {"tool_call_id", V_STR, 1, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_message(const cJSON *m, const char *pre, sapi_reply *r) {
  char f[340];
  if (!cJSON_IsObject(m)) return sreq_bad_type(r, pre, "an object", m);
  const cJSON *role = get(m, "role");
  snprintf(f, sizeof f, "%s.role", pre);
  if (!role) {
    BAD(r, f, "missing_required_parameter", "Missing required parameter: '%s'.", f);
    return -1;
  }
  const sreq_field *fields = is(role, "system") || is(role, "developer") ? system_fields
                             : is(role, "user")                          ? user_fields
                             : is(role, "assistant")                     ? asst_fields
                             : is(role, "tool")                          ? tool_msg_fields
                                                                         : NULL;
  if (!fields) {
    BAD(r, f, "invalid_value",
        "Invalid value: '%s'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.",
        cJSON_IsString(role) ? role->valuestring : "?");
    return -1;
  }
  if (check_known(m, fields, r, pre)) return -1;
  if (fields == asst_fields && !get(m, "content") && !get(m, "tool_calls")) {
    snprintf(f, sizeof f, "%s.content", pre);
    BAD(r, f, "missing_required_parameter", "Missing required parameter: '%s'.", f);
    return -1;
  }
  return 0;
}

/* The calls of the assistant message `open` not answered by one of the
 * tool messages after it, up to `end`, as "call_a, call_b" into out; 0 when
 * all were.  O(calls x tool messages): the list walks follow cJSON's links,
 * never an index. */
static int unanswered(const cJSON *open, const cJSON *end, char *out, size_t size) {
  int n = 0;
  size_t len = 0;
  out[0] = '\0';
  const cJSON *c;
  cJSON_ArrayForEach(c, get(open, "tool_calls")) {
    const char *id = get(c, "id")->valuestring;
    int found = 0;
    for (const cJSON *m = open->next; m != end && !found; m = m->next) found = is(get(m, "tool_call_id"), id);
    if (found) continue;
    int k = snprintf(out + len, size - len, "%s%s", n ? ", " : "", id);
    if (k > 0 && (size_t)k < size - len) len += (size_t)k;
    n++;
  }
  return n;
}

/* The real API's rules for tool messages: each answers a call of the
 * assistant message right before the run of tool messages it is in, and
 * every call of that message is answered before any other message (or the
 * end). */
static int check_sequence(const cJSON *msgs, sapi_reply *r) {
  const cJSON *open = NULL; /* the assistant message whose calls are being answered */
  int open_i = -1, i = 0;
  char ids[1024], p[64];
  for (const cJSON *m = msgs->child;; m = m->next, i++) {
    if (m && is(get(m, "role"), "tool")) {
      const char *id = get(m, "tool_call_id")->valuestring;
      int known = 0;
      const cJSON *c, *calls = open ? get(open, "tool_calls") : NULL;
      cJSON_ArrayForEach(c, calls) known |= is(get(c, "id"), id);
      if (!open) {
        snprintf(p, sizeof p, "messages[%d].role", i);
        BAD(r, p, NULL,
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
            "'tool_calls'.");
        return -1;
      }
      if (!known) {
        snprintf(p, sizeof p, "messages[%d].tool_call_id", i);
        BAD(r, p, NULL, "Invalid parameter: 'tool_call_id' of '%s' not found in 'tool_calls' of previous message.", id);
        return -1;
      }
      continue;
    }
    if (open && unanswered(open, m, ids, sizeof ids)) {
      snprintf(p, sizeof p, "messages[%d].role", open_i);
      BAD(r, p, NULL,
          "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
          "'tool_call_id'. The following tool_call_ids did not have response messages: %s", ids);
      return -1;
    }
    if (!m) return 0;
    int calls = is(get(m, "role"), "assistant") && cJSON_GetArraySize(get(m, "tool_calls")) > 0;
    open = calls ? m : NULL;
    open_i = calls ? i : -1;
  }
}

static int check_messages(const cJSON *v, const char *name, sapi_reply *r) {
  if (check_nonempty_array(v, name, r, "an array")) return -1;
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, v) {
    char pre[64];
    snprintf(pre, sizeof pre, "%s[%d]", name, i++);
    if (check_message(m, pre, r)) return -1;
  }
  return check_sequence(v, r);
}

static int check_tool_name(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsString(v)) return sreq_bad_type(r, name, "a string", v);
  size_t n = strlen(v->valuestring), ok = n >= 1 && n <= 64;
  for (const char *p = v->valuestring; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
  if (ok) return 0;
  BAD(r, name, "invalid_value",
      "Invalid '%s': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' "
      "(1 to 64 characters).", name);
  return -1;
}

static const sreq_field fn_fields[] = {
    {"name", V_FN, 1, 0, 0, check_tool_name},
    {"description", V_STR, 0, 0, 0, NULL},
    {"parameters", V_TOOLRES, 0, 0, 0, NULL}, /* an object (or null) */
    {"strict", V_BOOL_NULL, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_fn(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  return check_known(v, fn_fields, r, name);
}

static const sreq_field tool_fields[] = {
    {"type", V_FN, 1, 0, 0, check_function_type},
    {"function", V_FN, 1, 0, 0, check_fn},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_tools(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, v) {
    char pre[64];
    snprintf(pre, sizeof pre, "%s[%d]", name, i++);
    if (!cJSON_IsObject(t)) return sreq_bad_type(r, pre, "an object", t);
    if (check_known(t, tool_fields, r, pre)) return -1;
  }
  return 0;
}

static int check_tool_choice(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v) || is(v, "none") || is(v, "auto") || is(v, "required")) return 0;
  if (cJSON_IsObject(v) && is(get(v, "type"), "function") && cJSON_IsString(get(get(v, "function"), "name"))) return 0;
  BAD(r, name, "invalid_value",
      "Invalid value for '%s': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": "
      "{\"name\": ...}}.", name);
  return -1;
}

static int check_stream_options(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v)) return 0;
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  static const sreq_field fields[] = {
      {"include_usage", V_BOOL, 0, 0, 0, NULL},
      {"include_obfuscation", V_BOOL, 0, 0, 0, NULL},
      {NULL, 0, 0, 0, 0, NULL},
  };
  return check_known(v, fields, r, name);
}

static const sreq_field chat_fields[] = {
    {"model", V_STR, 1, 0, 256, NULL},
    {"messages", V_FN, 1, 0, 0, check_messages},
    {"stream", V_BOOL_NULL, 0, 0, 0, NULL},
    {"stream_options", V_FN, 0, 0, 0, check_stream_options},
    {"tools", V_FN, 0, 0, 0, check_tools},
    {"tool_choice", V_FN, 0, 0, 0, check_tool_choice},
    {"parallel_tool_calls", V_BOOL_NULL, 0, 0, 0, NULL},
    {"max_tokens", V_INT_NULL, 0, 1, 1e9, NULL},
    {"max_completion_tokens", V_INT_NULL, 0, 1, 1e9, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* The body's fields, then the rules between them. */
static int check_body(const cJSON *body, sapi_reply *r) {
  if (check_known(body, chat_fields, r, NULL)) return -1;
  const cJSON *so = get(body, "stream_options"), *choice = get(body, "tool_choice"), *tools = get(body, "tools");
  if (so && !cJSON_IsNull(so) && !cJSON_IsTrue(get(body, "stream"))) {
    BAD(r, "stream_options", "invalid_value",
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    return -1;
  }
  if (choice && !cJSON_IsNull(choice) && cJSON_GetArraySize(tools) == 0) {
    BAD(r, "tool_choice", "invalid_value",
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.");
    return -1;
  }
  const cJSON *forced = get(get(choice, "function"), "name"), *t;
  if (cJSON_IsString(forced)) {
    int found = 0;
    cJSON_ArrayForEach(t, tools) found |= is(get(get(t, "function"), "name"), forced->valuestring);
    if (!found) {
      BAD(r, "tool_choice", "invalid_value", "Invalid value for 'tool_choice': function '%s' is not in 'tools'.",
          forced->valuestring);
      return -1;
    }
  }
  return 0;
}

/* ---- what the model answers -------------------------------------------------- */

/* The text of a content: a string, or its parts' text, space separated
 * (images and audio have none). */
static int content_text(const cJSON *content, buf *out) {
  if (cJSON_IsString(content)) return buf_appends(out, content->valuestring);
  const cJSON *p;
  cJSON_ArrayForEach(p, content) {
    const cJSON *t = get(p, "text");
    if (!cJSON_IsString(t)) continue;
    if ((out->len && buf_appends(out, " ") != AW_OK) || buf_appends(out, t->valuestring) != AW_OK) return AW_ENOMEM;
  }
  return AW_OK;
}

/* The messages as the model reads them. */
typedef struct chat_in {
  cJSON *hist;       /* the history in the Responses API's stored form (sim_turn.h) */
  buf instr;         /* the system and developer messages, space separated */
  int prompt_tokens; /* words of every message's text and tool call arguments */
  int cached_tokens; /* words of the messages before the last user message, when an
                        assistant message is among them (earlier turns sent again) */
  int user_tokens;   /* words of the last user message */
} chat_in;

static cJSON *text_item(const char *role, const char *type, const char *text) {
  cJSON *it = cJSON_CreateObject(), *part = cJSON_CreateObject();
  cJSON_AddStringToObject(it, "type", "message");
  cJSON_AddStringToObject(it, "role", role);
  cJSON_AddStringToObject(part, "type", type);
  cJSON_AddStringToObject(part, "text", text);
  cJSON_AddItemToArray(cJSON_AddArrayToObject(it, "content"), part);
  return it;
}

/* Validated messages -> in: system/developer become the instructions,
 * user and assistant text messages, assistant tool calls and tool messages
 * become message, function_call and function_call_output items. */
static int read_messages(const cJSON *msgs, chat_in *in) {
  buf text;
  /* Bodies are capped at 1 MiB: no text of one is longer. */
  buf_init(&text, 1u << 20);
  buf_init(&in->instr, 1u << 20);
  in->hist = cJSON_CreateArray();
  int rc = in->hist ? AW_OK : AW_ENOMEM;
  const cJSON *m;
  int assistant_seen = 0;
  cJSON_ArrayForEach(m, msgs) {
    if (rc != AW_OK) break;
    const cJSON *role = get(m, "role");
    buf_reset(&text);
    if ((rc = content_text(get(m, "content"), &text)) != AW_OK) break;
    const char *t = text.data ? text.data : "";
    if (is(role, "user")) {
      /* What came before the question is the prefix a real server caches. */
      in->cached_tokens = assistant_seen ? in->prompt_tokens : 0;
      in->user_tokens = smodel_count_tokens(t);
    }
    if (is(role, "assistant")) assistant_seen = 1;
    in->prompt_tokens += smodel_count_tokens(t);
    cJSON *it = NULL;
    if (is(role, "system") || is(role, "developer")) {
      if ((in->instr.len && buf_appends(&in->instr, " ") != AW_OK) || buf_appends(&in->instr, t) != AW_OK)
        rc = AW_ENOMEM;
      continue;
    }
    if (is(role, "tool")) {
      it = cJSON_CreateObject();
      cJSON_AddStringToObject(it, "type", "function_call_output");
      cJSON_AddStringToObject(it, "call_id", get(m, "tool_call_id")->valuestring);
      cJSON_AddStringToObject(it, "output", t);
    } else if (is(role, "user") || t[0]) {
      it = is(role, "user") ? text_item("user", "input_text", t) : text_item("assistant", "output_text", t);
    }
    if (it) cJSON_AddItemToArray(in->hist, it);
    const cJSON *c;
    cJSON_ArrayForEach(c, get(m, "tool_calls")) {
      const cJSON *fn = get(c, "function");
      cJSON *fc = cJSON_CreateObject();
      cJSON_AddStringToObject(fc, "type", "function_call");
      cJSON_AddItemToObject(fc, "call_id", cJSON_Duplicate(get(c, "id"), 1));
      cJSON_AddItemToObject(fc, "name", cJSON_Duplicate(get(fn, "name"), 1));
      cJSON_AddItemToObject(fc, "arguments", cJSON_Duplicate(get(fn, "arguments"), 1));
      cJSON_AddItemToArray(in->hist, fc);
      in->prompt_tokens += smodel_count_tokens(get(fn, "arguments")->valuestring);
    }
  }
  buf_free(&text);
  return rc;
}

/* Keep the first n words of s (single spaces between words). */
static void cut_words(char *s, int n) {
  for (char *p = s; *p; p++)
    if (*p == ' ' && --n == 0) {
      *p = '\0';
      return;
    }
}

/* fail_next_n_runs: the completion fails as the real API fails one, with
 * the HTTP status of fail_run_code. */
static void fail_reply(sapi_reply *r, const char *code, int retry_after_s) {
  if (strcmp(code, "rate_limit_exceeded") == 0) {
    r->retry_after_s = retry_after_s;
    sreq_err(r, 429, "requests", NULL, code,
             "Rate limit reached for requests. Please try again in %ds. (injected by the simulator)", retry_after_s);
  } else if (strcmp(code, "invalid_prompt") == 0) {
    sreq_err(r, 400, "invalid_request_error", NULL, code,
             "Invalid prompt: your prompt was flagged as potentially violating our usage policy. (injected by the "
             "simulator)");
  } else {
    sreq_err(r, 500, "server_error", NULL, code,
             "The server had an error while processing your request. Sorry about that! (injected by the simulator)");
  }
}

/* The answer: the next round of tool calls (finish_reason tool_calls), or
 * the text, cut to max_completion_tokens / max_tokens (finish_reason
 * length) when longer. */
static int decide(const cJSON *body, const chat_in *in, int answer_tokens, scstream_answer *a) {
  const cJSON *choice = get(body, "tool_choice");
  sturn t;
  int rc = sturn_decide(in->hist, in->instr.len ? in->instr.data : NULL, get(body, "tools"),
                        cJSON_IsNull(choice) ? NULL : choice, !cJSON_IsFalse(get(body, "parallel_tool_calls")),
                        answer_tokens, &t);
  if (rc) return rc;
  if (t.calls) {
    const cJSON *c;
    cJSON_ArrayForEach(c, t.calls) a->completion_tokens += smodel_count_tokens(get(c, "arguments")->valuestring);
    a->calls = t.calls;
    t.calls = NULL;
    a->finish = "tool_calls";
  } else {
    const cJSON *mt = get(body, "max_completion_tokens");
    if (!cJSON_IsNumber(mt)) mt = get(body, "max_tokens");
    int max = cJSON_IsNumber(mt) ? mt->valueint : 0;
    a->text = t.answer;
    t.answer = NULL;
    a->completion_tokens = t.tokens;
    a->finish = "stop";
    if (max > 0 && t.tokens > max) {
      cut_words(a->text, max);
      a->completion_tokens = max;
      a->finish = "length";
    }
  }
  sturn_clear(&t);
  return AW_OK;
}

static void serve(const cJSON *body, sapi_reply *r) {
  if (check_body(body, r)) return;
  sfault_cfg cfg;
  sfault_get(&cfg);
  chat_in in = {0};
  scstream_answer a = {0};
  char code[32];
  if (read_messages(get(body, "messages"), &in) != AW_OK) {
    sreq_json(r, 500, NULL);
    goto out;
  }
  if (in.prompt_tokens > cfg.max_context_tokens) {
    BAD(r, "messages", "context_length_exceeded",
        "This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please "
        "reduce the length of the messages.", cfg.max_context_tokens, in.prompt_tokens);
    goto out;
  }
  sfault_run fault = sfault_take_run(code, sizeof code);
  if (fault == SFAULT_RUN_FAIL) {
    fail_reply(r, code, cfg.retry_after_s);
    goto out;
  }
  snprintf(a.model, sizeof a.model, "%s", get(body, "model")->valuestring);
  a.created = (long long)sstore_unix_now();
  a.prompt_tokens = in.prompt_tokens;
  a.include_usage = cJSON_IsTrue(get(get(body, "stream_options"), "include_usage"));
  if (fault == SFAULT_RUN_EXPIRE) {
    /* As an expired run or an incomplete response: cut before any output. */
    a.text = strdup("");
    a.finish = "length";
  } else if (decide(body, &in, cfg.answer_tokens, &a) != AW_OK) {
    sreq_json(r, 500, NULL);
    goto out;
  }
  /* Deterministic stand-ins for the details a real server reports
   * (sim_usage.h): the re-sent history counts as cached, and an o-series
   * model reasons one token per word of the question. */
  a.cached_tokens = in.cached_tokens;
  if (susage_reasoning_model(a.model)) {
    a.reasoning_tokens = in.user_tokens > 0 ? in.user_tokens : 1;
    a.completion_tokens += a.reasoning_tokens;
  }
  sstore_lock();
  sstore_make_id("chatcmpl-", a.id, sizeof a.id);
  cJSON *c;
  cJSON_ArrayForEach(c, a.calls) {
    char id[40];
    sstore_call_id(id, sizeof id);
    cJSON_AddStringToObject(c, "id", id);
  }
  sstore_unlock();
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.run_id = a.id};
    log_debug(&ctx, "chat completion: %d messages, %d prompt tokens, finish_reason %s",
              cJSON_GetArraySize(get(body, "messages")), a.prompt_tokens, a.finish);
  }
  int stream = cJSON_IsTrue(get(body, "stream"));
  /* A round of tool calls has no text to cut short: the drop goes to the
   * next streamed text, as for runs. */
  int drop = stream && a.text && a.text[0] && sfault_take_drop_stream();
  cJSON *rec = r->rec;
  r->rec = NULL;
  if (rec) cJSON_AddNumberToObject(rec, "status", 200);
  r->cstream = scstream_new(&a, stream ? SCSTREAM_SSE : SCSTREAM_JSON, drop, rec);
  if (r->cstream) r->status = 200;
  else sreq_json(r, 500, NULL);
out:
  free(a.text);
  cJSON_Delete(a.calls);
  cJSON_Delete(in.hist);
  buf_free(&in.instr);
}

void schat_handle(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  serve(body, r);
  log_add(q->body, q->body_len, r->status);
  cJSON_Delete(body);
}
