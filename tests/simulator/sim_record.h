/* sim_record.h -- --record FILE: one JSON line per request (prefix srec_).
 *
 * Line shape: {"method","path","query":{k:v},"status","request_body",
 * "response_body","stream_events":[{"event","data"}]} where bodies are
 * parsed JSON or null and data is JSON or the string "[DONE]".  Lines are
 * written whole with one write(2) under a mutex, so a reader never sees a
 * torn line.  When recording is off, srec_enabled() is a single load and
 * nothing else runs on the request path.
 *
 * @locality any thread.
 */
#ifndef SIM_RECORD_H
#define SIM_RECORD_H

#include <cjson/cJSON.h>
#include "aw_error.h"

/** Open path for appending. */
int srec_open(const char *path, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** Is recording on? */
int srec_enabled(void);
/** Write one record; takes ownership of rec (deleted here). */
void srec_write(cJSON *rec);
/** Close the file. */
void srec_close(void);

#endif
