/* sim_vector_stores.h -- the Vector Stores API: stores, their files, file
 * batches and search (prefix svs_).
 *
 * Why it exists: file_search answers from a company's documents (issue 10),
 * so the worker needs a server whose vector stores behave like the real
 * ones: a file added to a store is `in_progress`, then `completed` once its
 * text is indexed or `failed` with last_error when it has none; the store's
 * and each batch's file_counts follow; and a search returns the chunks that
 * answer the query (sim_retrieval.h: real text, BM25), best first.
 *
 * Processing is one deterministic step on the timer thread, the simulator's
 * loop: file_processing_ms (a setting, 100 by default) after the file was
 * added, its text is extracted and indexed outside every lock, then its
 * status is set.  A file removed (or its store deleted) meanwhile is simply
 * not found when the step ends; a generation number tells a re-added file
 * from the one the step was for.
 *
 * Validation follows the spec's request schemas (unknown fields, types,
 * chunking_strategy, attributes, filters) with sim_req's error shapes.
 *
 * @locality MHD threads and the timer thread; one mutex of its own, never
 * held while calling sim_files or indexing.
 */
#ifndef SIM_VECTOR_STORES_H
#define SIM_VECTOR_STORES_H

#include <cjson/cJSON.h>
#include "aw_error.h"
#include "sim_api.h"

/** Serve a /v1/vector_stores route (r->route is one of SR_VS_*); s holds
 *  the path segments ("v1","vector_stores",id,...). */
void svs_handle(const sapi_req *q, sapi_reply *r, char s[][64]);
/** The file was deleted: remove it from every vector store. */
void svs_file_deleted(const char *file_id);
/** The file_search tool's retrieval (sim_fsearch.h): rank the chunks of
 *  the completed files of every store named in ids (a JSON array of
 *  strings; unknown ids and repeats are skipped) together for query, as
 *  one index, and answer the best max_hits, best first, as a JSON array of
 *  {file_id, filename, score, attributes, text} (caller deletes; [] when
 *  nothing matched).  NULL on AW_ENOMEM.  Takes this module's lock, so it
 *  may be called with the store lock held (that order only: this module
 *  never takes the store lock while holding its own). */
cJSON *svs_file_search(const cJSON *ids, const char *query, size_t max_hits);
/** The thread's own store for the files of its messages' file_search
 *  attachments, as the real API makes it: the files are added to store
 *  vs_id when it exists, else to a new store (name "", expiring 7 days
 *  after its last activity) whose id id_out gets; each is processed like
 *  any added file.  Files that no longer exist are skipped.  Store lock
 *  held (the id generator is the store's).  AW_ENOMEM. */
int svs_thread_store(const char *vs_id, const cJSON *file_ids, char *id_out, size_t id_size) AW_MUST_CHECK;
/** Files still in_progress in the stores named in ids (a JSON array). */
int svs_files_in_progress(const cJSON *ids);
/** Delete every vector store (POST /admin/reset). */
void svs_reset(void);
/** {"vector_stores":n,"files":{"in_progress","completed","failed","cancelled"}}
 *  for /admin/stats; caller deletes. */
cJSON *svs_stats_json(void);

#endif
