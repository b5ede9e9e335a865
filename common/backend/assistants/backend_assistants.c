/* backend_assistants.c -- backend.h on the OpenAI Assistants API v2:
 * construction, the ops table, cancellation, shared helpers and the
 * checkpoint format.  The operations themselves live in asst_*.c (see
 * asst_int.h for the map and the turn's state machine).
 *
 * Memory per turn is what turn_op holds (~3 KiB of fixed fields) plus the
 * collected answer (api_json_answer: text in one bounded arena) plus the
 * http/curl state of the one call in flight.  An answer that asked for
 * its steps or named generated files also holds, until on_done returned,
 * the steps collector (api_steps.h, bounded like the answer) and the
 * files' fetch (gen_files.h: at most GF_MAX_FILES x inline_file_max bytes);
 * see asst_files.c.  No cJSON tree outlives the event or response it came
 * from.
 *
 * Cancellation: be_op_cancel sets `cancelled`, cancels the call in flight and
 * stops the timer.  If it is called from one of our user callbacks (in_cb >
 * 0) the op is freed by the code that called back, once the callback
 * returned; that code checks `cancelled` after every user callback and
 * unwinds without touching the op again.  A turn waiting for the store's
 * claim (in_store) is freed when the store calls back.
 */
#include "asst_int.h"
#include "be_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t asst_now_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0) return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void asst_copy(char *dst, size_t n, const char *s) { snprintf(dst, n, "%s", s ? s : ""); }

const char *asst_nz(const char *s) { return s && s[0] ? s : NULL; }

int asst_id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < API_JSON_ID_MAX && id[n] == '\0';
}

int asst_add_metadata(cJSON *obj, const contract_kv *md, size_t n) {
  cJSON *m = cJSON_AddObjectToObject(obj, "metadata");
  if (!m) return AW_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!md[i].key || !md[i].value) return AW_EINVAL;
    if (!cJSON_AddStringToObject(m, md[i].key, md[i].value)) return AW_ENOMEM;
  }
  return AW_OK;
}

int asst_print_json(cJSON *j, char **out) {
  *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return *out ? AW_OK : AW_ENOMEM;
}

const char *asst_md_get(const cJSON *obj, const char *key) {
  return cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), key));
}

void asst_checkpoint_format(char out[BE_CHECKPOINT_MAX], const char *thread, const char *run) {
  snprintf(out, BE_CHECKPOINT_MAX, "a1 %s %s", thread, run);
}

int asst_checkpoint_parse(const char *cp, char thread[API_JSON_ID_MAX], char run[API_JSON_ID_MAX]) {
  if (!cp || strncmp(cp, "a1 ", 3) != 0) return AW_EINVAL;
  const char *t = cp + 3, *sp = strchr(t, ' ');
  if (!sp || (size_t)(sp - t) >= API_JSON_ID_MAX) return AW_EINVAL;
  memcpy(thread, t, (size_t)(sp - t));
  thread[sp - t] = '\0';
  asst_copy(run, API_JSON_ID_MAX, sp + 1);
  if (strlen(sp + 1) >= API_JSON_ID_MAX || !asst_id_ok(thread) || !asst_id_ok(run)) return AW_EINVAL;
  return AW_OK;
}

static void op_cancel(be_op *bop) {
  op_base *b = (op_base *)bop;
  if (b->cancelled) return;
  b->cancelled = 1;
  if (b->call) api_call_cancel(b->call);
  b->call = NULL;
  if (b->kind == OP_TURN) {
    turn_op *t = (turn_op *)b;
    if (t->timer) uv_timer_stop(&t->timer->t);
  }
  /* Inside one of our callbacks the code that called back frees it; while
   * the store holds our callback, that callback does. */
  if (b->in_cb || b->in_store) return;
  if (b->kind == OP_ENSURE) asst_ensure_free(b);
  else if (b->kind == OP_MANAGE) asst_manage_free(b);
  else asst_turn_free((turn_op *)b);
}

static void destroy(be_backend *bb) {
  be_asst *be = (be_asst *)bb;
  api_client_free(be->api);
  free(be);
}

static const be_ops assistants_ops = {
    .kind = "assistants",
    .handle_key = "thread", /* the key v1 deployments already hold */
    .assistant_ensure = asst_assistant_ensure,
    .turn_start = asst_turn_start,
    .turn_continue = asst_turn_continue,
    .turn_cancel = asst_turn_cancel,
    .op_cancel = op_cancel,
    .destroy = destroy,
    .conv_history = asst_conv_history,
    .conv_append = asst_conv_append,
    .conv_delete = asst_conv_delete,
};

int be_assistants_new(uv_loop_t *loop, const be_http_config *cfg, be_backend **out, char *errstr,
                      size_t errstr_size) {
  api_client *api = NULL;
  int rc = be_http_client_new(loop, cfg, "assistants", "assistants=v2", &api, errstr, errstr_size);
  if (rc) return rc;
  be_asst *be = calloc(1, sizeof *be);
  if (!be) {
    api_client_free(api);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  be->api = api;
  be->base.ops = &assistants_ops;
  be->loop = loop;
  be->store = cfg->store;
  retry_policy rp;
  retry_policy_default(&rp);
  be->retry_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : rp.base_ms;
  be->max_answer_bytes = cfg->max_answer_bytes ? cfg->max_answer_bytes : 256u * 1024u;
  *out = &be->base;
  return AW_OK;
}
