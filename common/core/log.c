/* log.c -- JSON-lines logger. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static log_level g_level = LOG_INFO;
static const char *g_component = NULL;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(log_level lvl) { g_level = lvl; }
void log_set_component(const char *name) { g_component = name; }
int log_enabled(log_level lvl) { return lvl >= g_level && lvl < LOG_OFF; }

int log_parse_level(const char *s, log_level *out) {
  for (int i = 0; i <= LOG_OFF; i++) {
    if (s && strcmp(s, level_names[i]) == 0) {
      *out = (log_level)i;
      return AW_OK;
    }
  }
  return AW_EINVAL;
}

/* Mask what looks like a credential: "Bearer <tok>" and "sk-<tok>".  This is
 * a last line of defence; callers never pass secrets on purpose. */
char *log_redact(const char *s, char *out, size_t n) {
  size_t o = 0;
  if (!n) return out;
  while (*s && o + 1 < n) {
    int skip = 0;
    if (strncmp(s, "Bearer ", 7) == 0) skip = 7;
    else if (strncmp(s, "sk-", 3) == 0) skip = 3;
    if (skip) {
      for (int i = 0; i < skip && o + 1 < n; i++) out[o++] = s[i];
      s += skip;
      const char *mask = "***";
      for (int i = 0; mask[i] && o + 1 < n; i++) out[o++] = mask[i];
      while (*s && *s != ' ' && *s != '"' && *s != ',' && *s != '\n') s++;
      continue;
    }
    out[o++] = *s++;
  }
  out[o] = '\0';
  return out;
}

/* Append s to line as a JSON string body (no quotes). */
static size_t esc(char *line, size_t o, size_t n, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (; *s && o + 7 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      line[o++] = '\\';
      line[o++] = (char)c;
    } else if (c == '\n') {
      line[o++] = '\\';
      line[o++] = 'n';
    } else if (c < 0x20) {
      line[o++] = '\\';
      line[o++] = 'u';
      line[o++] = '0';
      line[o++] = '0';
      line[o++] = hex[c >> 4];
      line[o++] = hex[c & 15];
    } else {
      line[o++] = (char)c;
    }
  }
  return o;
}

static size_t field(char *line, size_t o, size_t n, const char *k, const char *v) {
  char red[1024];
  if (!v || o + 8 + strlen(k) >= n) return o;
  o += (size_t)snprintf(line + o, n - o, ",\"%s\":\"", k);
  o = esc(line, o, n, log_redact(v, red, sizeof red));
  if (o + 1 < n) line[o++] = '"';
  return o;
}

static void emit(log_level lvl, const log_ctx *ctx, const char *msg, const char *const *kv, int nkv) {
  char line[4096];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = sizeof line - 2, o;
  o = (size_t)snprintf(line, n, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\"",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl]);
  o = field(line, o, n, "component", g_component);
  o = field(line, o, n, "msg", msg);
  if (ctx) {
    o = field(line, o, n, "event_id", ctx->event_id);
    o = field(line, o, n, "conversation_id", ctx->conversation_id);
    o = field(line, o, n, "thread_id", ctx->thread_id);
    o = field(line, o, n, "run_id", ctx->run_id);
    o = field(line, o, n, "tenant", ctx->tenant);
  }
  for (int i = 0; i + 1 < 2 * nkv; i += 2) o = field(line, o, n, kv[i], kv[i + 1]);
  line[o++] = '}';
  line[o++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, o);
  (void)w; /* nowhere to report a failed log write */
}

void log_write(log_level lvl, const log_ctx *ctx, const char *fmt, ...) {
  if (!log_enabled(lvl)) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  emit(lvl, ctx, msg, NULL, 0);
}

void log_writekv(log_level lvl, const log_ctx *ctx, const char *msg, const char *const *kv, int nkv) {
  if (!log_enabled(lvl)) return;
  emit(lvl, ctx, msg, kv, nkv);
}
