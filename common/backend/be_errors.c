/* be_errors.c -- stable error codes for BE_END_ERROR (see be_errors.h). */
#include "be_errors.h"

#include "aw_error.h"

const char *be_error_code(int err) {
  switch (err) {
  case AW_ERATELIMIT: return "rate_limited";
  case AW_EHTTP5XX:
  case AW_EAMBIGUOUS: return "api_unavailable";
  case AW_ETIMEDOUT: return "api_timeout";
  case AW_EIO: return "api_connection_error";
  case AW_EHTTP4XX: return "api_invalid_request";
  case AW_ETOOBIG: return "answer_too_large";
  case AW_EPARSE: return "api_invalid_response";
  case AW_EREDIS: return "store_unavailable";
  default: return "internal_error";
  }
}
