/* be_http.c -- the API client of an HTTP backend, from be_http_config. */
#include "be_http.h"

void be_http_api_config(const be_http_config *cfg, const char *beta, api_config *ac) {
  api_config_default(ac);
  ac->base_url = cfg->base_url;
  ac->api_key = cfg->api_key;
  ac->organization = cfg->organization;
  ac->project = cfg->project;
  ac->beta = beta;
  if (cfg->request_timeout_ms > 0) ac->request_timeout_ms = cfg->request_timeout_ms;
  if (cfg->stream_idle_timeout_ms > 0) ac->stream_idle_timeout_ms = cfg->stream_idle_timeout_ms;
  if (cfg->max_retries >= 0) ac->retry.max_retries = cfg->max_retries;
  if (cfg->retry_base_ms > 0) ac->retry.base_ms = cfg->retry_base_ms;
  if (cfg->retry_max_ms > 0) ac->retry.max_ms = cfg->retry_max_ms;
  ac->max_connections = cfg->max_connections;
  ac->observe = cfg->observe;
  ac->observe_opaque = cfg->observe_opaque;
  ac->gate = cfg->gate;
}

int be_http_client_new(uv_loop_t *loop, const be_http_config *cfg, const char *kind, const char *beta,
                       api_client **out, char *errstr, size_t errstr_size) {
  if (!loop || !cfg || !out) return aw_seterr(AW_EINVAL, errstr, errstr_size, "%s backend: NULL argument", kind);
  if (!cfg->store || !cfg->store->claim_handle)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "%s backend: a store is required (conversation handles are claimed in it)", kind);
  api_config ac;
  be_http_api_config(cfg, beta, &ac);
  return api_client_new(loop, &ac, out, errstr, errstr_size);
}
