/* sim_stats.c -- lock-free request counters. */
#include "sim_stats.h"

#include <stdio.h>

#define NSTATUS 600

static const char *const names[SR_COUNT] = {
    [SR_UNKNOWN] = "unknown",
    [SR_ASST_CREATE] = "POST /v1/assistants",
    [SR_ASST_LIST] = "GET /v1/assistants",
    [SR_ASST_GET] = "GET /v1/assistants/{assistant_id}",
    [SR_ASST_UPDATE] = "POST /v1/assistants/{assistant_id}",
    [SR_ASST_DELETE] = "DELETE /v1/assistants/{assistant_id}",
    [SR_THREAD_CREATE] = "POST /v1/threads",
    [SR_THREAD_GET] = "GET /v1/threads/{thread_id}",
    [SR_THREAD_UPDATE] = "POST /v1/threads/{thread_id}",
    [SR_THREAD_DELETE] = "DELETE /v1/threads/{thread_id}",
    [SR_THREAD_RUN] = "POST /v1/threads/runs",
    [SR_MSG_CREATE] = "POST /v1/threads/{thread_id}/messages",
    [SR_MSG_LIST] = "GET /v1/threads/{thread_id}/messages",
    [SR_MSG_GET] = "GET /v1/threads/{thread_id}/messages/{message_id}",
    [SR_RUN_CREATE] = "POST /v1/threads/{thread_id}/runs",
    [SR_RUN_LIST] = "GET /v1/threads/{thread_id}/runs",
    [SR_RUN_GET] = "GET /v1/threads/{thread_id}/runs/{run_id}",
    [SR_RUN_CANCEL] = "POST /v1/threads/{thread_id}/runs/{run_id}/cancel",
    [SR_RUN_SUBMIT] = "POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
    [SR_STEP_LIST] = "GET /v1/threads/{thread_id}/runs/{run_id}/steps",
    [SR_STEP_GET] = "GET /v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
    [SR_RESP_CREATE] = "POST /v1/responses",
    [SR_RESP_GET] = "GET /v1/responses/{response_id}",
    [SR_RESP_DELETE] = "DELETE /v1/responses/{response_id}",
    [SR_RESP_CANCEL] = "POST /v1/responses/{response_id}/cancel",
    [SR_RESP_INPUT_ITEMS] = "GET /v1/responses/{response_id}/input_items",
    [SR_CONV_CREATE] = "POST /v1/conversations",
    [SR_CONV_GET] = "GET /v1/conversations/{conversation_id}",
    [SR_CONV_UPDATE] = "POST /v1/conversations/{conversation_id}",
    [SR_CONV_DELETE] = "DELETE /v1/conversations/{conversation_id}",
    [SR_CITEM_LIST] = "GET /v1/conversations/{conversation_id}/items",
    [SR_CITEM_CREATE] = "POST /v1/conversations/{conversation_id}/items",
    [SR_CITEM_GET] = "GET /v1/conversations/{conversation_id}/items/{item_id}",
    [SR_CITEM_DELETE] = "DELETE /v1/conversations/{conversation_id}/items/{item_id}",
    [SR_CHAT_CREATE] = "POST /v1/chat/completions",
    [SR_FILE_CREATE] = "POST /v1/files",
    [SR_FILE_LIST] = "GET /v1/files",
    [SR_FILE_GET] = "GET /v1/files/{file_id}",
    [SR_FILE_DELETE] = "DELETE /v1/files/{file_id}",
    [SR_FILE_CONTENT] = "GET /v1/files/{file_id}/content",
    [SR_VS_CREATE] = "POST /v1/vector_stores",
    [SR_VS_LIST] = "GET /v1/vector_stores",
    [SR_VS_GET] = "GET /v1/vector_stores/{vector_store_id}",
    [SR_VS_UPDATE] = "POST /v1/vector_stores/{vector_store_id}",
    [SR_VS_DELETE] = "DELETE /v1/vector_stores/{vector_store_id}",
    [SR_VS_SEARCH] = "POST /v1/vector_stores/{vector_store_id}/search",
    [SR_VSF_CREATE] = "POST /v1/vector_stores/{vector_store_id}/files",
    [SR_VSF_LIST] = "GET /v1/vector_stores/{vector_store_id}/files",
    [SR_VSF_GET] = "GET /v1/vector_stores/{vector_store_id}/files/{file_id}",
    [SR_VSF_DELETE] = "DELETE /v1/vector_stores/{vector_store_id}/files/{file_id}",
    [SR_VSB_CREATE] = "POST /v1/vector_stores/{vector_store_id}/file_batches",
    [SR_VSB_GET] = "GET /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}",
    [SR_VSB_CANCEL] = "POST /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel",
    [SR_VSB_FILES] = "GET /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
    [SR_CNTR_CREATE] = "POST /v1/containers",
    [SR_CNTR_LIST] = "GET /v1/containers",
    [SR_CNTR_GET] = "GET /v1/containers/{container_id}",
    [SR_CNTR_DELETE] = "DELETE /v1/containers/{container_id}",
    [SR_CFILE_LIST] = "GET /v1/containers/{container_id}/files",
    [SR_CFILE_GET] = "GET /v1/containers/{container_id}/files/{file_id}",
    [SR_CFILE_DELETE] = "DELETE /v1/containers/{container_id}/files/{file_id}",
    [SR_CFILE_CONTENT] = "GET /v1/containers/{container_id}/files/{file_id}/content",
    [SR_ADMIN_FAULTS_GET] = "GET /admin/faults",
    [SR_ADMIN_FAULTS_SET] = "POST /admin/faults",
    [SR_ADMIN_RESET] = "POST /admin/reset",
    [SR_ADMIN_STATS] = "GET /admin/stats",
    [SR_ADMIN_RESPONSES] = "GET /admin/responses",
    [SR_ADMIN_CONV] = "GET /admin/conversations/{conversation_id}",
    [SR_ADMIN_CHAT_REQUESTS] = "GET /admin/chat/requests",
    [SR_HEALTH] = "GET /healthz",
    [SR_ADMIN_RATE_LIMIT] = "/admin/rate_limit",
    [SR_ADMIN_USAGE] = "GET /admin/usage",
};

/* ~45 routes x 600 statuses of 8 bytes = ~215 KB: cheap, and lets the hot
 * path be a single relaxed atomic add with no lookups. */
static long g_counts[SR_COUNT][NSTATUS];
static long g_streams, g_streams_total;

const char *sstats_route_name(sstats_route r) {
  return (r >= 0 && r < SR_COUNT && names[r]) ? names[r] : "unknown";
}

void sstats_count(sstats_route r, int status) {
  if (r < 0 || r >= SR_COUNT || status < 0 || status >= NSTATUS) return;
  __atomic_fetch_add(&g_counts[r][status], 1, __ATOMIC_RELAXED);
}

void sstats_streams(int delta) {
  __atomic_fetch_add(&g_streams, delta, __ATOMIC_RELAXED);
  if (delta > 0) __atomic_fetch_add(&g_streams_total, delta, __ATOMIC_RELAXED);
}

long sstats_active_streams(void) { return __atomic_load_n(&g_streams, __ATOMIC_RELAXED); }

cJSON *sstats_to_json(void) {
  cJSON *o = cJSON_CreateObject();
  cJSON *req = cJSON_AddObjectToObject(o, "requests");
  long total = 0;
  for (int r = 0; r < SR_COUNT; r++) {
    cJSON *byst = NULL;
    for (int s = 0; s < NSTATUS; s++) {
      long n = __atomic_load_n(&g_counts[r][s], __ATOMIC_RELAXED);
      if (!n) continue;
      if (!byst) byst = cJSON_AddObjectToObject(req, sstats_route_name((sstats_route)r));
      char k[12];
      snprintf(k, sizeof k, "%d", s);
      cJSON_AddNumberToObject(byst, k, (double)n);
      total += n;
    }
  }
  cJSON_AddNumberToObject(o, "requests_total", (double)total);
  cJSON_AddNumberToObject(o, "active_streams", (double)sstats_active_streams());
  cJSON_AddNumberToObject(o, "streams_total", (double)__atomic_load_n(&g_streams_total, __ATOMIC_RELAXED));
  return o;
}

void sstats_reset(void) {
  for (int r = 0; r < SR_COUNT; r++)
    for (int s = 0; s < NSTATUS; s++) __atomic_store_n(&g_counts[r][s], 0, __ATOMIC_RELAXED);
  __atomic_store_n(&g_streams_total, 0, __ATOMIC_RELAXED);
}
