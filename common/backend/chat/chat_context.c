/* chat_context.c -- the context budget of the Chat Completions backend:
 * which stored turns go with a request (see chat_int.h).  Pure.
 *
 * The estimate is deliberately crude (string bytes / 4 + 4 per message:
 * about right for English with the common tokenizers, generous for code
 * and JSON) because its job is to keep a request well inside the model's
 * window, not to fill it; a real tokenizer per model is not worth its cost
 * here.  The server remains the judge: a request it finds too long ends the
 * turn with its context_length_exceeded.
 *
 * Cost: each loaded turn that is considered is parsed once (newest first,
 * stopping at the first that does not fit), and the kept messages are moved,
 * not copied, into the request's array.
 */
#include "chat_int.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of every string in v (keys not counted), recursively. */
static size_t strings_bytes(const cJSON *v) {
  if (cJSON_IsString(v)) return strlen(v->valuestring);
  size_t n = 0;
  const cJSON *c;
  if (cJSON_IsArray(v) || cJSON_IsObject(v)) cJSON_ArrayForEach(c, v) n += strings_bytes(c);
  return n;
}

size_t chat_msg_tokens(const cJSON *msg) { return (strings_bytes(msg) + 3) / 4 + 4; }

void chat_budget_of(const be_assistant *a, long *max_messages, long *max_tokens) {
  *max_messages = a && a->history_max_messages > 0 ? a->history_max_messages : CHAT_DEFAULT_MAX_MESSAGES;
  *max_tokens = a && a->history_max_tokens > 0 ? a->history_max_tokens : CHAT_DEFAULT_MAX_TOKENS;
}

/* Would adding a turn of (m, k) to (used_m, used_k) stay within the bounds? */
static int fits(size_t used_m, size_t used_k, size_t m, size_t k, long max_m, long max_k) {
  return used_m + m <= (size_t)max_m && used_k + k <= (size_t)max_k;
}

size_t chat_budget_select(const size_t *msgs, const size_t *tokens, size_t n, size_t fixed_msgs,
                          size_t fixed_tokens, long max_messages, long max_tokens) {
  size_t used_m = fixed_msgs, used_k = fixed_tokens, first = n;
  while (first > 0 && fits(used_m, used_k, msgs[first - 1], tokens[first - 1], max_messages, max_tokens)) {
    first--;
    used_m += msgs[first];
    used_k += tokens[first];
  }
  return first;
}

static size_t msgs_tokens(const cJSON *msgs) {
  size_t k = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, msgs) k += chat_msg_tokens(m);
  return k;
}

int chat_context_build(const char *system, const char *const *turns, const size_t *lens, size_t nturns,
                       const cJSON *current, long max_messages, long max_tokens, cJSON **out,
                       chat_context_stats *stats) {
  *out = NULL;
  memset(stats, 0, sizeof *stats);
  cJSON *arr = cJSON_CreateArray(), *sys = NULL;
  if (!arr) return AW_ENOMEM;
  size_t used_m = 0, used_k = 0;
  if (system) {
    sys = cJSON_CreateObject();
    if (!sys || !cJSON_AddStringToObject(sys, "role", "system") || !cJSON_AddStringToObject(sys, "content", system) ||
        !cJSON_AddItemToArray(arr, sys)) {
      cJSON_Delete(sys);
      cJSON_Delete(arr);
      return AW_ENOMEM;
    }
    used_m++;
    used_k += chat_msg_tokens(sys);
  }
  used_m += (size_t)cJSON_GetArraySize(current);
  used_k += msgs_tokens(current);

  /* Newest first; kept[] holds the chosen turns newest first. */
  chat_record *kept = nturns ? calloc(nturns, sizeof *kept) : NULL;
  size_t nkept = 0;
  int rc = nturns && !kept ? AW_ENOMEM : AW_OK;
  for (size_t i = nturns; !rc && i-- > 0;) {
    chat_record r;
    if (chat_record_parse(turns[i], lens[i], &r) != AW_OK) {
      stats->turns_corrupt++; /* written by a newer or broken writer: left out, not fatal */
      continue;
    }
    size_t m = (size_t)cJSON_GetArraySize(r.msgs), k = msgs_tokens(r.msgs);
    if (!fits(used_m, used_k, m, k, max_messages, max_tokens)) {
      chat_record_free(&r);
      break;
    }
    used_m += m;
    used_k += k;
    kept[nkept++] = r;
  }
  /* Oldest first: move each kept turn's messages into the array. */
  for (size_t i = nkept; !rc && i-- > 0;) {
    cJSON *msgs = (cJSON *)kept[i].msgs;
    while (!rc && msgs->child) {
      cJSON *m = cJSON_DetachItemViaPointer(msgs, msgs->child);
      if (!cJSON_AddItemToArray(arr, m)) {
        cJSON_Delete(m);
        rc = AW_ENOMEM;
      }
    }
  }
  const cJSON *m;
  cJSON_ArrayForEach(m, current) {
    if (rc) break;
    if (!cJSON_AddItemReferenceToArray(arr, (cJSON *)m)) rc = AW_ENOMEM;
  }
  for (size_t i = 0; i < nkept; i++) chat_record_free(&kept[i]);
  free(kept);
  if (rc) {
    cJSON_Delete(arr);
    return rc;
  }
  stats->turns_sent = nkept;
  stats->messages = used_m;
  stats->tokens = used_k;
  *out = arr;
  return AW_OK;
}
