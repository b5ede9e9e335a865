/* ratelimit_headers.c -- rate-limit headers of API responses (see the header). */
#include "ratelimit_headers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "retry.h"

void rlh_init(rlh_info *in) {
  in->limit_requests = in->limit_tokens = -1;
  in->remaining_requests = in->remaining_tokens = -1;
  in->reset_requests_ms = in->reset_tokens_ms = -1;
  in->retry_after_ms = in->retry_after_s_ms = -1;
}

/* One number: digits, optionally '.' and digits, at least one digit. */
static int read_number(const char *s, size_t len, size_t *i, double *out) {
  size_t k = *i, digits = 0;
  double v = 0, scale = 1;
  while (k < len && s[k] >= '0' && s[k] <= '9') {
    if (v < 1e15) v = v * 10 + (s[k] - '0');
    k++, digits++;
  }
  if (k < len && s[k] == '.') {
    k++;
    while (k < len && s[k] >= '0' && s[k] <= '9') {
      scale /= 10;
      v += (s[k] - '0') * scale;
      k++, digits++;
    }
  }
  if (!digits) return 0;
  *i = k;
  *out = v;
  return 1;
}

/* The unit at s[*i]: its length in milliseconds, 0 when none matches. */
static double read_unit(const char *s, size_t len, size_t *i) {
  static const struct {
    const char *name;
    double ms;
  } units[] = {
      /* Longer names first: "ms" must not read as "m" followed by "s". */
      {"ms", 1}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"\xce\xbcs", 1e-3}, {"ns", 1e-6},
      {"h", 3600e3}, {"m", 60e3}, {"s", 1e3},
  };
  for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
    size_t n = strlen(units[u].name);
    if (len - *i >= n && memcmp(s + *i, units[u].name, n) == 0) {
      *i += n;
      return units[u].ms;
    }
  }
  return 0;
}

int rlh_parse_duration(const char *s, size_t len, long *out_ms) {
  if (!s || !out_ms) return AW_EINVAL;
  while (len && (s[0] == ' ' || s[0] == '\t')) s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n')) len--;
  if (len == 0 || len > 64) return AW_EINVAL;
  size_t i = 0;
  double total = 0, v;
  int parts = 0;
  while (i < len) {
    if (!read_number(s, len, &i, &v)) return AW_EINVAL;
    if (i == len && parts == 0) { /* a bare number: seconds */
      total = v * 1e3;
      parts++;
      break;
    }
    double unit = read_unit(s, len, &i);
    if (unit == 0) return AW_EINVAL;
    total += v * unit;
    parts++;
  }
  if (total > (double)RLH_MAX_MS) total = (double)RLH_MAX_MS;
  /* Rounded up, less a relative hair for the binary fractions ("1.1s" is
   * 1100.0000000000002 ms in doubles, and must stay 1100). */
  *out_ms = (long)ceil(total * (1 - 1e-12));
  if (*out_ms < 0) *out_ms = 0;
  return AW_OK;
}

void rlh_format_duration(long ms, char *out, size_t n) {
  if (!out || !n) return;
  if (ms < 0) ms = 0;
  if (ms < 1000) {
    snprintf(out, n, "%ldms", ms);
  } else if (ms < 60000) {
    char num[32];
    snprintf(num, sizeof num, "%ld.%03ld", ms / 1000, ms % 1000);
    size_t k = strlen(num);
    while (num[k - 1] == '0') num[--k] = '\0';
    if (num[k - 1] == '.') num[--k] = '\0';
    snprintf(out, n, "%ss", num);
  } else {
    long s = ms / 1000 + (ms % 1000 ? 1 : 0); /* whole seconds, rounded up, as the API prints them */
    if (s >= 3600) snprintf(out, n, "%ldh%ldm%lds", s / 3600, s / 60 % 60, s % 60);
    else snprintf(out, n, "%ldm%lds", s / 60, s % 60);
  }
}

/* A non-negative integer count, clamped to RLH_MAX_COUNT. */
static int read_count(const char *v, size_t len, long *out) {
  if (len == 0 || len > 24) return 0;
  long long x = 0;
  for (size_t i = 0; i < len; i++) {
    if (v[i] < '0' || v[i] > '9') return 0;
    if (x < RLH_MAX_COUNT) x = x * 10 + (v[i] - '0');
  }
  *out = x > RLH_MAX_COUNT ? RLH_MAX_COUNT : (long)x;
  return 1;
}

int rlh_header(rlh_info *in, const char *line, size_t len, time_t now) {
  if (!in || !line) return 0;
  const char *colon = memchr(line, ':', len);
  if (!colon) return 0;
  size_t nlen = (size_t)(colon - line);
  const char *v = colon + 1, *e = line + len;
  while (v < e && (*v == ' ' || *v == '\t')) v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
  size_t vlen = (size_t)(e - v);
#define NAME_IS(lit) (nlen == sizeof lit - 1 && strncasecmp(line, lit, nlen) == 0)
  if (NAME_IS("x-ratelimit-limit-requests")) return read_count(v, vlen, &in->limit_requests);
  if (NAME_IS("x-ratelimit-limit-tokens")) return read_count(v, vlen, &in->limit_tokens);
  if (NAME_IS("x-ratelimit-remaining-requests")) return read_count(v, vlen, &in->remaining_requests);
  if (NAME_IS("x-ratelimit-remaining-tokens")) return read_count(v, vlen, &in->remaining_tokens);
  if (NAME_IS("x-ratelimit-reset-requests")) return rlh_parse_duration(v, vlen, &in->reset_requests_ms) == AW_OK;
  if (NAME_IS("x-ratelimit-reset-tokens")) return rlh_parse_duration(v, vlen, &in->reset_tokens_ms) == AW_OK;
  if (NAME_IS("retry-after-ms")) {
    long ms;
    if (!read_count(v, vlen, &ms)) return 0;
    in->retry_after_ms = ms > RLH_MAX_MS ? RLH_MAX_MS : ms;
    return 1;
  }
  if (NAME_IS("retry-after")) {
    char tmp[64];
    long ms;
    if (vlen == 0 || vlen >= sizeof tmp) return 0;
    memcpy(tmp, v, vlen);
    tmp[vlen] = '\0';
    if (retry_parse_retry_after(tmp, now, &ms) != AW_OK) return 0;
    in->retry_after_s_ms = ms > RLH_MAX_MS ? RLH_MAX_MS : ms;
    return 1;
  }
#undef NAME_IS
  return 0;
}

int rlh_any(const rlh_info *in) {
  return in->limit_requests >= 0 || in->limit_tokens >= 0 || in->remaining_requests >= 0 ||
         in->remaining_tokens >= 0 || in->reset_requests_ms >= 0 || in->reset_tokens_ms >= 0 ||
         in->retry_after_ms >= 0 || in->retry_after_s_ms >= 0;
}

long rlh_retry_after_ms(const rlh_info *in) {
  return in->retry_after_ms >= 0 ? in->retry_after_ms : in->retry_after_s_ms;
}

long rlh_next_unit_ms(long limit, long remaining, long reset_ms) {
  if (remaining < 0 || reset_ms < 0) return -1;
  if (remaining >= 1) return 0;
  if (limit <= remaining) return reset_ms;
  long missing = limit - remaining;
  return reset_ms / missing + (reset_ms % missing ? 1 : 0);
}
