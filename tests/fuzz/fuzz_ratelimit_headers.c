/* fuzz_ratelimit_headers.c -- libFuzzer target: the rate-limit headers of
 * API responses (common/http/ratelimit_headers.c), bytes a server chooses.
 * Each input line is fed as a header line and as a duration; every value
 * read must stay within its documented bounds, a duration that parses must
 * read back the same after formatting (below a minute, where the format is
 * exact), and nothing may read past the line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit_headers.h"

static void in_bounds(long v, long hi) {
  if (v < -1 || v > hi) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rlh_info in;
  rlh_init(&in);
  const char *p = (const char *)data, *end = p + size;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
    /* A copy of exactly len bytes: ASan catches a read past the line. */
    char *line = malloc(len ? len : 1);
    if (!line) return 0;
    memcpy(line, p, len);
    (void)rlh_header(&in, line, len, 1700000000);
    long ms = -1;
    if (rlh_parse_duration(line, len, &ms) == AW_OK) {
      in_bounds(ms, RLH_MAX_MS);
      if (ms < 0) abort();
      if (ms < 60000) {
        char f[32];
        long back = -1;
        rlh_format_duration(ms, f, sizeof f);
        if (rlh_parse_duration(f, strlen(f), &back) != AW_OK || back != ms) abort();
      }
    }
    free(line);
    p += len;
  }
  in_bounds(in.limit_requests, RLH_MAX_COUNT);
  in_bounds(in.limit_tokens, RLH_MAX_COUNT);
  in_bounds(in.remaining_requests, RLH_MAX_COUNT);
  in_bounds(in.remaining_tokens, RLH_MAX_COUNT);
  in_bounds(in.reset_requests_ms, RLH_MAX_MS);
  in_bounds(in.reset_tokens_ms, RLH_MAX_MS);
  in_bounds(in.retry_after_ms, RLH_MAX_MS);
  in_bounds(in.retry_after_s_ms, RLH_MAX_MS);
  long next = rlh_next_unit_ms(in.limit_requests, in.remaining_requests, in.reset_requests_ms);
  in_bounds(next, RLH_MAX_MS);
  return 0;
}
