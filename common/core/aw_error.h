/* aw_error.h -- error codes and the conventions every module follows.
 *
 * Errors are values.  Every function that can fail returns an int: 0 on
 * success, a negative AW_E* code on failure, and is marked AW_MUST_CHECK.
 * Human-readable detail goes into a caller-supplied buffer
 * (char *errstr, size_t errstr_size), never to stderr from deep inside.
 *
 * Each code has a class that tells the caller what to do with it
 * (aw_error_class): retry later, reject the input that caused it, or stop the
 * process.  Nothing outside main() calls exit().
 *
 * Ownership: a function that takes ownership of a pointer says so in its doc
 * comment ("takes ownership of X"); on success the caller NULLs its copy.
 * On failure ownership stays with the caller unless the comment says
 * otherwise.  Objects are never freed inside their own callbacks; they are
 * released from the event loop afterwards (see uv_close()).
 *
 * Threads: unless a header says otherwise, every function is called from the
 * one libuv loop thread of the process.
 */
#ifndef AW_ERROR_H
#define AW_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define AW_MUST_CHECK __attribute__((warn_unused_result))
#define AW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define AW_MUST_CHECK
#define AW_PRINTF(a, b)
#endif

enum {
  AW_OK = 0,
  AW_ENOMEM = -1,      /* allocation failed */
  AW_EINVAL = -2,      /* invalid argument or input (reject) */
  AW_ETOOBIG = -3,     /* a bounded buffer/limit was exceeded (reject) */
  AW_EPARSE = -4,      /* malformed input: msgpack, JSON, SSE (reject) */
  AW_ENOTFOUND = -5,   /* a looked-up thing does not exist */
  AW_EIO = -6,         /* network/connection failure (retry) */
  AW_ETIMEDOUT = -7,   /* a deadline passed (retry) */
  AW_EHTTP4XX = -8,    /* API answered 4xx other than 429 (reject) */
  AW_EHTTP5XX = -9,    /* API answered 5xx after retries (retry later) */
  AW_ERATELIMIT = -10, /* API answered 429 after retries (retry later) */
  AW_EKAFKA = -11,     /* Kafka client error */
  AW_EREDIS = -12,     /* Redis error or disconnect (retry) */
  AW_ECANCELLED = -13, /* the operation was cancelled by its owner */
  AW_ECONFIG = -14,    /* invalid configuration (fatal) */
  AW_EFATAL = -15,     /* unrecoverable: the process must stop */
  AW_EAGAIN = -16,     /* no capacity right now (retry) */
  AW_ESTATE = -17,     /* operation not valid in the current state */
  AW_EAMBIGUOUS = -18, /* a request that creates something failed in a way that
                          may have been applied (5xx, timeout, reset after
                          sending): look for what it created before sending
                          it again (retry) */
};

typedef enum {
  AW_CLASS_OK = 0,
  AW_CLASS_RETRY,  /* transient: try again later, the input is fine */
  AW_CLASS_REJECT, /* the input is at fault: answer with an error, carry on */
  AW_CLASS_FATAL,  /* the process cannot continue */
} aw_error_class;

/** Short stable name of an error code ("EINVAL"...). Never NULL. */
const char *aw_strerror(int err);

/** What the caller should do with err. */
aw_error_class aw_error_classify(int err);

/** snprintf into errstr if errstr is not NULL; returns err (for
 *  `return aw_seterr(AW_EINVAL, errstr, n, "bad %s", x);`). */
int aw_seterr(int err, char *errstr, size_t errstr_size, const char *fmt, ...) AW_PRINTF(4, 5);

#endif
