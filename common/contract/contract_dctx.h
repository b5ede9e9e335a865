/* contract_dctx.h -- what every decoder of the contract shares (prefix
 * contract_): where a decoding error goes.  The request decoder
 * (contract.c, contract_kinds.c), the tool messages' (contract_tool.c) and
 * the usage record's (contract_usage.c) each report a failure as a stable
 * code for the answer's error.code plus a message naming the field; one
 * context and one contract_dfail keep them reporting alike.  Not for the
 * rest of the code base: contract.h and its siblings are the interfaces. */
#ifndef AW_CONTRACT_DCTX_H
#define AW_CONTRACT_DCTX_H

#include <stddef.h>

#include "aw_error.h"
#include "contract.h"

/* A decoder's context: limits (the request decoder's; NULL elsewhere) and
 * where the error goes. */
typedef struct contract_dctx {
  const contract_limits *lim;
  const char **err_code;
  char *errstr;
  size_t errstr_size;
} contract_dctx;

/** Record an error (code and message) and return rc. */
int contract_dfail(contract_dctx *c, int rc, const char *code, const char *fmt, ...) AW_PRINTF(4, 5);

#endif
