/* log.h -- structured logging as JSON lines (prefix log_).
 *
 * One line per record on stderr:
 *   {"ts":"2026-11-24T01:02:03.456Z","level":"info","msg":"run completed",
 *    "event_id":"...","conversation_id":"...","thread_id":"...","run_id":"...",
 *    "tenant":"..."}
 * Context ids are passed in a log_ctx so every line about an event carries
 * them.  Values are JSON-escaped.  Secrets are never logged: callers must
 * not pass them, and log_redact() masks known secret shapes as a last guard
 * (bearer tokens, "sk-..." keys).
 *
 * @locality any thread (each line is written with one write(2) call).
 */
#ifndef AW_LOG_H
#define AW_LOG_H

#include "aw_error.h"

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level;

/** Ids a line is about; any may be NULL. */
typedef struct log_ctx {
  const char *event_id;
  const char *conversation_id;
  const char *thread_id;
  const char *run_id;
  const char *tenant;          /* worker.tenant_source's tenant, when the deployment has tenants */
} log_ctx;

/** Set the minimum level written (default LOG_INFO). */
void log_set_level(log_level lvl);
/** Parse "debug"/"info"/"warn"/"error"/"off"; AW_EINVAL otherwise. */
int log_parse_level(const char *s, log_level *out) AW_MUST_CHECK;
/** Set a component name added to each line as "component" (e.g. "worker"). */
void log_set_component(const char *name);
/** Is lvl enabled?  Lets callers skip building expensive arguments. */
int log_enabled(log_level lvl);

/** Write one record.  ctx may be NULL.  fmt builds "msg". */
void log_write(log_level lvl, const log_ctx *ctx, const char *fmt, ...) AW_PRINTF(3, 4);

/** Write one record with extra "key":"value" string fields (kv has nkv pairs:
 *  kv[0]=key0, kv[1]=value0, ...). */
void log_writekv(log_level lvl, const log_ctx *ctx, const char *msg, const char *const *kv, int nkv);

/** Copy s to out (size n) with secrets masked. Returns out. */
char *log_redact(const char *s, char *out, size_t n);

#define log_debug(ctx, ...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, ctx, __VA_ARGS__); } while (0)
#define log_info(ctx, ...) log_write(LOG_INFO, ctx, __VA_ARGS__)
#define log_warn(ctx, ...) log_write(LOG_WARN, ctx, __VA_ARGS__)
#define log_error(ctx, ...) log_write(LOG_ERROR, ctx, __VA_ARGS__)

#endif
