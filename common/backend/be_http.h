/* be_http.h -- what the HTTP backends share when they are made (prefix
 * be_http_): one api_client configured from be_http_config. */
#ifndef AW_BE_HTTP_H
#define AW_BE_HTTP_H

#include <stddef.h>
#include <uv.h>
#include "api_client.h"
#include "backend.h"

/** The API client's configuration from cfg (beta: the OpenAI-Beta header,
 *  NULL for none).  Strings are borrowed from cfg. */
void be_http_api_config(const be_http_config *cfg, const char *beta, api_config *out);

/** Check cfg (a store is required: both HTTP backends claim conversation
 *  handles in it) and make the API client: beta is the OpenAI-Beta header
 *  (NULL: none).  kind names the backend in error messages. */
int be_http_client_new(uv_loop_t *loop, const be_http_config *cfg, const char *kind, const char *beta,
                       api_client **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

#endif
