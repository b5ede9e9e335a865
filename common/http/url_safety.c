/* url_safety.c -- URL userinfo masking and cleartext classification
 * (url_safety.h).  The authority of a URL is taken as RFC 3986 does:
 * after "scheme://" up to the first '/', '?' or '#'; its userinfo ends at the
 * LAST '@' in it, so that a password holding a raw '@' is masked whole. */
#include "url_safety.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The authority of the URL in [p, end): *a..*ae. */
static void authority(const char *p, const char *end, const char **a, const char **ae) {
  const char *s = p;
  for (const char *q = p; q + 2 < end; q++) {
    if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
      s = q + 3;
      break;
    }
    if (q[0] == '/' || q[0] == '?' || q[0] == '#' || q[0] == '@') break; /* no scheme */
  }
  const char *e = s;
  while (e < end && *e != '/' && *e != '?' && *e != '#') e++;
  *a = s;
  *ae = e;
}

static const char *last_at(const char *a, const char *ae) {
  const char *at = NULL;
  for (const char *q = a; q < ae; q++)
    if (*q == '@') at = q;
  return at;
}

char *url_redact(const char *s, char *out, size_t n) {
  if (!n) return out;
  size_t o = 0;
#define PUT(ptr, len)                                                 \
  do {                                                                \
    size_t l_ = (len);                                                \
    if (l_ > n - 1 - o) l_ = n - 1 - o;                               \
    memcpy(out + o, (ptr), l_);                                       \
    o += l_;                                                          \
  } while (0)
  const char *p = s ? s : "";
  for (;;) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *a, *ae;
    authority(p, end, &a, &ae);
    const char *at = last_at(a, ae);
    if (at) {
      PUT(p, (size_t)(a - p));
      PUT("***", 3);
      PUT(at, (size_t)(end - at));
    } else {
      PUT(p, (size_t)(end - p));
    }
    if (!*end) break;
    PUT(",", 1);
    p = end + 1;
  }
#undef PUT
  out[o] = '\0';
  return out;
}

static int host_is_loopback(const char *h, size_t len) {
  char host[256];
  if (len == 0 || len >= sizeof host) return 0;
  memcpy(host, h, len);
  host[len] = '\0';
  if (host[len - 1] == '.') host[--len] = '\0'; /* "localhost." */
  if (strcasecmp(host, "localhost") == 0) return 1;
  if (len > 10 && strcasecmp(host + len - 10, ".localhost") == 0) return 1; /* RFC 6761 */
  struct in_addr a4;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  struct in6_addr a6;
  if (inet_pton(AF_INET6, host, &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
  }
  return 0;
}

url_transport_kind url_transport(const char *url) {
  if (!url) return URL_UNKNOWN;
  int tls;
  if (strncasecmp(url, "https://", 8) == 0) tls = 1;
  else if (strncasecmp(url, "http://", 7) == 0) tls = 0;
  else return URL_UNKNOWN;
  const char *a, *ae;
  authority(url, url + strlen(url), &a, &ae);
  const char *at = last_at(a, ae);
  if (at) a = at + 1;
  const char *h = a, *he;
  if (h < ae && *h == '[') { /* [IPv6]:port */
    h++;
    he = memchr(h, ']', (size_t)(ae - h));
    if (!he) return URL_UNKNOWN;
  } else {
    he = h;
    while (he < ae && *he != ':') he++;
  }
  if (he == h) return URL_UNKNOWN;
  if (tls) return URL_TLS;
  return host_is_loopback(h, (size_t)(he - h)) ? URL_CLEARTEXT_LOOPBACK : URL_CLEARTEXT_REMOTE;
}

const char *url_transport_name(url_transport_kind k) {
  switch (k) {
  case URL_TLS: return "https";
  case URL_CLEARTEXT_LOOPBACK: return "http (loopback)";
  case URL_CLEARTEXT_REMOTE: return "http (remote)";
  default: return "unknown";
  }
}
