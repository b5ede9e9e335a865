/* fuzz_commit_metadata.c -- libFuzzer target for the commit metadata the
 * worker reads back from the broker when it is assigned a partition
 * (worker/intake/offset_tracker.c: otrk_skip_parse, otrk_skip_has), and the
 * tracker that writes it (otrk_add, otrk_done, otrk_metadata).
 *
 * Two modes, chosen by the first byte:
 *  - read: the next 8 bytes are the committed offset (any int64_t: the
 *    broker's, or a foreign client's), the rest the metadata.  Parsing
 *    returns OK, EPARSE or EINVAL; no offset at or below the base is ever in
 *    the set, a failed parse gives an empty set, and otrk_skip_has is asked
 *    about offsets around the base, around INT64_MIN/INT64_MAX and from the
 *    input (UBSan: no overflow; ASan: no read past the bits).
 *  - round trip: the bytes drive a tracker (gaps between offsets, which are
 *    done, a start near INT64_MAX included); whatever otrk_metadata writes
 *    parses back to exactly the done offsets beyond the commit point.
 * A violated property aborts, so libFuzzer keeps the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "offset_tracker.h"

#define CHECK(c)   \
  do {             \
    if (!(c)) abort(); \
  } while (0)

static int64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return (int64_t)v;
}

static void read_mode(const uint8_t *data, size_t size) {
  if (size < 8) return;
  int64_t base = rd64(data);
  const uint8_t *md = data + 8;
  size_t len = size - 8;
  otrk_skip s;
  int rc = otrk_skip_parse(&s, base, md, len);
  CHECK(rc == AW_OK || rc == AW_EPARSE || rc == AW_EINVAL || rc == AW_ENOMEM);
  if (rc != AW_OK) CHECK(s.bits == NULL && s.nbits == 0);
  if (base < 0) CHECK(rc == AW_EINVAL);
  int64_t probes[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, base, INT64_MAX, INT64_MAX - 1,
                      base > INT64_MIN ? base - 1 : base, base < INT64_MAX ? base + 1 : base,
                      base <= INT64_MAX - (int64_t)s.nbits ? base + (int64_t)s.nbits : base,
                      base <= INT64_MAX - (int64_t)s.nbits - 1 ? base + (int64_t)s.nbits + 1 : base,
                      len >= 8 ? rd64(md) : 0};
  size_t nset = 0;
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    int has = otrk_skip_has(&s, probes[i]);
    CHECK(has == 0 || has == 1);
    if (probes[i] <= base || rc != AW_OK) CHECK(!has);
    nset += (size_t)has;
  }
  /* Every set bit is an offset the set answers for, and nothing past. */
  if (rc == AW_OK && s.bits && base >= 0) {
    for (size_t b = 0; b < s.nbits && b < 4096; b++) {
      if ((uint64_t)base + 1 + b > (uint64_t)INT64_MAX) break;
      int64_t o = base + 1 + (int64_t)b;
      CHECK(otrk_skip_has(&s, o) == ((s.bits[b / 8] >> (b % 8)) & 1));
    }
  }
  (void)nset;
  otrk_skip_free(&s);
  CHECK(s.bits == NULL);
}

static void round_trip_mode(const uint8_t *data, size_t size) {
  if (size < 3) return;
  /* Start: small, or just below INT64_MAX (what the tracker may hold). */
  int64_t start = data[0] & 1 ? INT64_MAX - 1 - (int64_t)(size * 16) : (int64_t)data[1] * 1000;
  otrk t;
  otrk_init(&t);
  int64_t *offs = malloc(size * sizeof *offs);
  unsigned char *done = calloc(size, 1);
  CHECK(offs && done);
  size_t n = 0;
  int64_t o = start;
  for (size_t i = 2; i < size; i++) {
    o += data[i] & 15; /* gaps: compaction, transaction markers */
    if (otrk_add(&t, o) != AW_OK) break;
    offs[n++] = o;
    o++;
  }
  for (size_t i = 0; i < n; i++) {
    if (data[2 + i] & 0x80) {
      CHECK(otrk_done(&t, offs[i]) == AW_OK);
      done[i] = 1;
    }
  }
  char md[OTRK_META_MAX_BYTES + 1];
  int rc = otrk_metadata(&t, md, sizeof md);
  int64_t cp = otrk_commit_point(&t);
  if (rc == AW_OK) {
    otrk_skip s;
    CHECK(otrk_skip_parse(&s, cp, md, strlen(md)) == (cp < 0 ? AW_EINVAL : AW_OK));
    for (size_t i = 0; i < n; i++) CHECK(otrk_skip_has(&s, offs[i]) == (done[i] && offs[i] > cp));
    /* Offsets in the gaps were never consumed: never in the set. */
    for (size_t i = 0; i + 1 < n; i++)
      for (int64_t g = offs[i] + 1; g < offs[i + 1]; g++) CHECK(!otrk_skip_has(&s, g));
    otrk_skip_free(&s);
  } else {
    CHECK(rc == AW_ETOOBIG);
  }
  free(offs);
  free(done);
  otrk_free(&t);
}

/** libFuzzer entry point: one input = one commit's metadata (with its base),
 *  or a tracker's history. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1) read_mode(data + 1, size - 1);
  else round_trip_mode(data + 1, size - 1);
  return 0;
}
