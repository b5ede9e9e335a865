/* aw_error.c -- names and classes of AW_E* codes. */
#include "aw_error.h"

#include <stdarg.h>
#include <stdio.h>

const char *aw_strerror(int err) {
  switch (err) {
  case AW_OK: return "OK";
  case AW_ENOMEM: return "ENOMEM";
  case AW_EINVAL: return "EINVAL";
  case AW_ETOOBIG: return "ETOOBIG";
  case AW_EPARSE: return "EPARSE";
  case AW_ENOTFOUND: return "ENOTFOUND";
  case AW_EIO: return "EIO";
  case AW_ETIMEDOUT: return "ETIMEDOUT";
  case AW_EHTTP4XX: return "EHTTP4XX";
  case AW_EHTTP5XX: return "EHTTP5XX";
  case AW_ERATELIMIT: return "ERATELIMIT";
  case AW_EKAFKA: return "EKAFKA";
  case AW_EREDIS: return "EREDIS";
  case AW_ECANCELLED: return "ECANCELLED";
  case AW_ECONFIG: return "ECONFIG";
  case AW_EFATAL: return "EFATAL";
  case AW_EAGAIN: return "EAGAIN";
  case AW_ESTATE: return "ESTATE";
  case AW_EAMBIGUOUS: return "EAMBIGUOUS";
  default: return "EUNKNOWN";
  }
}

aw_error_class aw_error_classify(int err) {
  switch (err) {
  case AW_OK: return AW_CLASS_OK;
  case AW_EINVAL:
  case AW_ETOOBIG:
  case AW_EPARSE:
  case AW_ENOTFOUND:
  case AW_EHTTP4XX: return AW_CLASS_REJECT;
  case AW_ECONFIG:
  case AW_EFATAL: return AW_CLASS_FATAL;
  default: return AW_CLASS_RETRY;
  }
}

int aw_seterr(int err, char *errstr, size_t errstr_size, const char *fmt, ...) {
  if (errstr && errstr_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
  }
  return err;
}
