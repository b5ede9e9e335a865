/* fuzz_corr_verify.c -- libFuzzer target for corr_verify
 * (common/contract/correlation.c), the check of the correlation id a tool
 * service sends back before the worker turns the deadline it carries into
 * a comparison and the ids it binds into a Redis lookup.  fuzz_tool_reply
 * feeds it whole replies; this target goes after the id itself, with a key,
 * so that valid ids exist to be bent.  The first byte chooses the mode:
 *  0  the input is the id, checked against a key that never makes one:
 *     never accepted (the fuzzer has no way to the tag; with the key the
 *     other modes use it could replay an id it saw compared), and the
 *     deadline output is never written;
 *  1  a valid id for a deadline taken from the input (any int64_t:
 *     corr_new refuses exactly the negative ones), then edits from the
 *     input (position, byte; a truncation; an appended byte): accepted iff
 *     the edited id is the original, with the same deadline;
 *  2  the bound ids come from the input (split at 0x00 bytes, so empty and
 *     over-long ones occur): corr_new refuses exactly the empty ones and
 *     those over CORR_MAX_BOUND_ID; what it makes verifies for those ids and
 *     no others.
 * A violated property aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "correlation.h"

#define CHECK(c)       \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

static corr_key key;      /* makes and checks ids (modes 1, 2) */
static corr_key verifier; /* only checks (mode 0): no id of it exists */

static void mode_id(const uint8_t *d, size_t n) {
  char *s = malloc(n + 1);
  CHECK(s);
  memcpy(s, d, n);
  s[n] = '\0';
  int64_t dl = -7;
  CHECK(corr_verify(&verifier, s, "conv", "run", "call", &dl) == AW_EINVAL);
  CHECK(dl == -7);
  free(s);
}

static void mode_edit(const uint8_t *d, size_t n) {
  if (n < 8) return;
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = u << 8 | d[i];
  int64_t deadline = (int64_t)u;
  char id[CORR_ID_SIZE];
  int rc = corr_new(&key, "conv", "run", "call", deadline, id, sizeof id);
  CHECK(rc == (deadline < 0 ? AW_EINVAL : AW_OK));
  if (rc) return;
  char t[CORR_ID_SIZE + 2];
  memcpy(t, id, CORR_ID_SIZE);
  t[CORR_ID_SIZE] = t[CORR_ID_SIZE + 1] = '\0';
  for (size_t i = 8; i + 1 < n; i += 2) {
    uint8_t op = d[i], arg = d[i + 1];
    size_t pos = (size_t)op % (CORR_ID_LEN + 1);
    if (op >= 0xf0) {
      t[pos] = '\0'; /* truncate */
    } else if (op >= 0xe0 && strlen(t) == CORR_ID_LEN) {
      t[CORR_ID_LEN] = (char)arg; /* append one byte */
      t[CORR_ID_LEN + 1] = '\0';
    } else if (pos < CORR_ID_LEN) {
      t[pos] = (char)arg;
    }
  }
  int64_t got = -7;
  rc = corr_verify(&key, t, "conv", "run", "call", &got);
  if (strcmp(t, id) == 0) {
    CHECK(rc == AW_OK && got == deadline);
  } else {
    CHECK(rc == AW_EINVAL && got == -7);
  }
}

static void mode_bound(const uint8_t *d, size_t n) {
  char *s = malloc(n + 3);
  CHECK(s);
  memcpy(s, d, n);
  s[n] = s[n + 1] = s[n + 2] = '\0';
  const char *ids[3];
  size_t lens[3];
  const char *p = s;
  for (int i = 0; i < 3; i++) {
    ids[i] = p;
    lens[i] = strlen(p);
    p += lens[i] + (p + lens[i] < s + n ? 1 : 0);
    if (p > s + n) p = s + n;
  }
  int valid = 1;
  for (int i = 0; i < 3; i++) valid &= lens[i] > 0 && lens[i] <= CORR_MAX_BOUND_ID;
  char id[CORR_ID_SIZE];
  int rc = corr_new(&key, ids[0], ids[1], ids[2], 1, id, sizeof id);
  CHECK(rc == (valid ? AW_OK : AW_EINVAL));
  if (rc == AW_OK) {
    CHECK(corr_verify(&key, id, ids[0], ids[1], ids[2], NULL) == AW_OK);
    /* Any other binding fails: the ids rotated (unless all equal), or one
     * of them one byte longer. */
    if (strcmp(ids[0], ids[1]) || strcmp(ids[1], ids[2]))
      CHECK(corr_verify(&key, id, ids[1], ids[2], ids[0], NULL) == AW_EINVAL);
    char longer[CORR_MAX_BOUND_ID + 2];
    memcpy(longer, ids[2], lens[2]);
    longer[lens[2]] = 'x';
    longer[lens[2] + 1] = '\0';
    CHECK(corr_verify(&key, id, ids[0], ids[1], longer, NULL) == AW_EINVAL);
  }
  free(s);
}

/** libFuzzer entry point: one input = one correlation id, or its making. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    CHECK(corr_key_init(&key, "fuzz-corr-secret-0123456789abcdef", 33) == AW_OK);
    CHECK(corr_key_init(&verifier, "fuzz-corr-verifier-0123456789abcdef", 35) == AW_OK);
    ready = 1;
  }
  if (size < 1) return 0;
  switch (data[0] % 3) {
  case 0: mode_id(data + 1, size - 1); break;
  case 1: mode_edit(data + 1, size - 1); break;
  default: mode_bound(data + 1, size - 1); break;
  }
  return 0;
}
