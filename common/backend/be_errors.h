/* be_errors.h -- stable error codes for a turn that ended BE_END_ERROR
 * (prefix be_error_).
 *
 * When the API gave no error code of its own (a transport failure, a 5xx
 * without a body), the response still needs a code that consumers can
 * switch on and that does not change with the wording of a message.  Shared
 * by the HTTP backends (Assistants, Responses) so both say the same.
 */
#ifndef AW_BE_ERRORS_H
#define AW_BE_ERRORS_H

/** The stable transport code for an AW_E* error:
 *    AW_ERATELIMIT                "rate_limited"
 *    AW_EHTTP5XX, AW_EAMBIGUOUS   "api_unavailable"
 *    AW_ETIMEDOUT                 "api_timeout"
 *    AW_EIO                       "api_connection_error"
 *    AW_EHTTP4XX                  "api_invalid_request"
 *    AW_ETOOBIG                   "answer_too_large"
 *    AW_EPARSE                    "api_invalid_response"
 *    AW_EREDIS                    "store_unavailable"
 *    anything else                "internal_error"
 *  A static string. */
const char *be_error_code(int err);

#endif
