/* sim_stats.h -- request counters for GET /admin/stats (prefix sstats_).
 *
 * Counts requests by route and HTTP status in a fixed table of relaxed
 * atomics (no lock on the request path), and the number of open streams.
 * Runs by status come from the store, which knows them.
 *
 * @locality any thread.
 */
#ifndef SIM_STATS_H
#define SIM_STATS_H

#include <cjson/cJSON.h>

/** Routes, one per endpoint; names via sstats_route_name(). */
typedef enum {
  SR_UNKNOWN = 0,
  SR_ASST_CREATE, SR_ASST_LIST, SR_ASST_GET, SR_ASST_UPDATE, SR_ASST_DELETE,
  SR_THREAD_CREATE, SR_THREAD_GET, SR_THREAD_UPDATE, SR_THREAD_DELETE, SR_THREAD_RUN,
  SR_MSG_CREATE, SR_MSG_LIST, SR_MSG_GET,
  SR_RUN_CREATE, SR_RUN_LIST, SR_RUN_GET, SR_RUN_CANCEL, SR_RUN_SUBMIT,
  SR_STEP_LIST, SR_STEP_GET,
  SR_RESP_CREATE, SR_RESP_GET, SR_RESP_DELETE, SR_RESP_CANCEL, SR_RESP_INPUT_ITEMS,
  SR_CONV_CREATE, SR_CONV_GET, SR_CONV_UPDATE, SR_CONV_DELETE,
  SR_CITEM_LIST, SR_CITEM_CREATE, SR_CITEM_GET, SR_CITEM_DELETE,
  SR_CHAT_CREATE, /* after the Responses routes: no beta header (sim_api.c) */
  SR_FILE_CREATE, SR_FILE_LIST, SR_FILE_GET, SR_FILE_DELETE, SR_FILE_CONTENT, /* sim_files.h */
  SR_VS_CREATE, SR_VS_LIST, SR_VS_GET, SR_VS_UPDATE, SR_VS_DELETE, SR_VS_SEARCH, /* sim_vector_stores.h */
  SR_VSF_CREATE, SR_VSF_LIST, SR_VSF_GET, SR_VSF_DELETE, SR_VSB_CREATE, SR_VSB_GET, SR_VSB_CANCEL, SR_VSB_FILES,
  SR_CNTR_CREATE, SR_CNTR_LIST, SR_CNTR_GET, SR_CNTR_DELETE, /* sim_containers.h */
  SR_CFILE_LIST, SR_CFILE_GET, SR_CFILE_DELETE, SR_CFILE_CONTENT,
  SR_ADMIN_FAULTS_GET, SR_ADMIN_FAULTS_SET, SR_ADMIN_RESET, SR_ADMIN_STATS, SR_ADMIN_RESPONSES, SR_ADMIN_CONV,
  SR_ADMIN_CHAT_REQUESTS, SR_HEALTH, SR_ADMIN_RATE_LIMIT, SR_ADMIN_USAGE,
  SR_COUNT
} sstats_route;

/** "POST /v1/assistants"-style name of a route. */
const char *sstats_route_name(sstats_route r);
/** Count one finished request. */
void sstats_count(sstats_route r, int status);
/** Streams opened (+1) / closed (-1). */
void sstats_streams(int delta);
/** Currently open streams. */
long sstats_active_streams(void);
/** {"requests":{route:{status:n}},"requests_total":n,"active_streams":n,
 *   "streams_total":n}; caller deletes. */
cJSON *sstats_to_json(void);
/** Zero the request counters (open streams are left as they are). */
void sstats_reset(void);

#endif
