/* url_safety.h -- what may be logged of a URL, and whether it crosses the
 * network in cleartext (prefix url_).
 *
 * Operators put credentials in URLs (https://user:pass@proxy/v1): every log
 * line and dump that prints a configured URL prints url_redact's copy, with
 * the userinfo replaced by "***".  url_transport tells an https:// URL from
 * an http:// one, and an http:// one to this machine (loopback: 127.0.0.0/8,
 * ::1, localhost and *.localhost, where the model servers of tests and
 * demos run) from one that sends the API key across a network in cleartext.
 *
 * Pure functions: no allocation, no I/O, no name resolution (a name that
 * resolves to 127.0.0.1 through DNS is remote here: only what the URL itself
 * says counts).  @locality any thread.
 */
#ifndef AW_URL_SAFETY_H
#define AW_URL_SAFETY_H

#include <stddef.h>

typedef enum url_transport_kind {
  URL_TLS = 0,              /* https:// */
  URL_CLEARTEXT_LOOPBACK,   /* http:// to a loopback host */
  URL_CLEARTEXT_REMOTE,     /* http:// to any other host */
  URL_UNKNOWN,              /* another scheme, or no host */
} url_transport_kind;

/** Copy s into out (size n, always NUL-terminated, truncated to fit) with the
 *  userinfo of every URL in it masked: s may be one URL or a comma-separated
 *  list (a broker list), each element with or without a scheme
 *  ("u:p@host:9092" is masked too).  Returns out. */
char *url_redact(const char *s, char *out, size_t n);

/** Classify url (see url_transport_kind); the scheme is case-insensitive. */
url_transport_kind url_transport(const char *url);

/** "https", "http (loopback)", "http (remote)" or "unknown". */
const char *url_transport_name(url_transport_kind k);

#endif
