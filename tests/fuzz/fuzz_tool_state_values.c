/* fuzz_tool_state_values.c -- libFuzzer target for the values the worker
 * reads back from Redis and splits into ids it copies and binds
 * (worker/tools/tool_state.c): tstate_parse_corr ("<run> <call> <conv>") and
 * tstate_parse_wake ("<run> <conv>").  Redis holds whatever anyone with
 * access to it wrote, so any bytes, NULs included.
 *
 * The first byte chooses the buffer sizes (1..16 for run and call, so the
 * "does not fit" edges are reached), the rest is the value.  Properties:
 * each parse agrees with a direct model of the format; on success the parts
 * are NUL-terminated, shorter than their buffers, free of spaces and NULs,
 * and "run call conv" rebuilds the value byte for byte; on failure the
 * outputs are untouched.  A violated property aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tool_state.h"

#define CHECK(c)       \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

#define SENTINEL 0x5a

/* The format, written out the long way. */
static int model_corr(const char *v, size_t len, size_t run_size, size_t call_size) {
  for (size_t i = 0; i < len; i++)
    if (!v[i]) return 0;
  size_t i = 0;
  while (i < len && v[i] != ' ') i++;
  size_t r = i;
  if (r == 0 || i == len || r >= run_size) return 0;
  size_t j = ++i;
  while (i < len && v[i] != ' ') i++;
  size_t c = i - j;
  if (c == 0 || i == len || c >= call_size) return 0;
  return len - i - 1 > 0;
}

static int model_wake(const char *v, size_t len, size_t run_size) {
  for (size_t i = 0; i < len; i++)
    if (!v[i]) return 0;
  size_t i = 0;
  while (i < len && v[i] != ' ') i++;
  return i > 0 && i + 1 < len && i < run_size;
}

static int untouched(const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)b[i] != SENTINEL) return 0;
  return 1;
}

/** libFuzzer entry point: one input = one Redis string value. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t run_size = (size_t)(data[0] & 15) + 1, call_size = (size_t)(data[0] >> 4) + 1;
  /* An exact-size heap copy: ASan sees any read past the value. */
  size_t len = size - 1;
  char *v = malloc(len ? len : 1);
  CHECK(v);
  memcpy(v, data + 1, len);

  char run[17], call[17];
  memset(run, SENTINEL, sizeof run);
  memset(call, SENTINEL, sizeof call);
  const char *conv = NULL;
  size_t conv_len = 0;
  int rc = tstate_parse_corr(v, len, run, run_size, call, call_size, &conv, &conv_len);
  CHECK(rc == AW_OK || rc == AW_EPARSE);
  CHECK((rc == AW_OK) == model_corr(v, len, run_size, call_size));
  if (rc == AW_OK) {
    size_t r = strlen(run), c = strlen(call);
    CHECK(r > 0 && r < run_size && c > 0 && c < call_size);
    CHECK(!memchr(run, ' ', r) && !memchr(call, ' ', c));
    CHECK(conv == v + r + 1 + c + 1 && conv_len == len - r - c - 2 && conv_len > 0);
    CHECK(memcmp(v, run, r) == 0 && v[r] == ' ' && memcmp(v + r + 1, call, c) == 0 && v[r + 1 + c] == ' ');
    CHECK(untouched(run + r + 1, sizeof run - r - 1) && untouched(call + c + 1, sizeof call - c - 1));
  } else {
    CHECK(untouched(run, sizeof run) && untouched(call, sizeof call) && conv == NULL && conv_len == 0);
  }

  char turn[17];
  memset(turn, SENTINEL, sizeof turn);
  rc = tstate_parse_wake(v, len, turn, run_size);
  CHECK(rc == AW_OK || rc == AW_EPARSE);
  CHECK((rc == AW_OK) == model_wake(v, len, run_size));
  if (rc == AW_OK) {
    size_t r = strlen(turn);
    CHECK(r > 0 && r < run_size && memcmp(v, turn, r) == 0 && v[r] == ' ');
  } else {
    CHECK(untouched(turn, sizeof turn));
  }
  free(v);
  return 0;
}
