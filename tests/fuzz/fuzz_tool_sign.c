/* fuzz_tool_sign.c -- libFuzzer target for the signature headers of tool
 * requests and replies (common/contract/tool_sign.c): the aw-sig and
 * aw-sig-ts values come from anyone who can write to a topic, and a tool
 * service parses them before it trusts anything.  The first byte chooses
 * the mode:
 *  0  the rest is split into an aw-sig value, an aw-sig-ts value and a tool
 *     request (two length bytes first); a request that decodes is verified
 *     against a key nobody signs with: never accepted, and the reason is
 *     always one of TSIG_R_*;
 *  1  a request signed with the key, then its aw-sig value edited by the
 *     input (position, byte; a truncation; appended bytes): accepted only
 *     while the header still holds the genuine "v1=<mac>" entry, and the
 *     unedited header is always accepted;
 *  2  the input is a tool reply: one that decodes is signed and verifies,
 *     and never under a header taken from the input with the other key.
 * A violated property aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "contract_tool.h"
#include "tool_sign.h"

#define CHECK(c)       \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

#define NOW 1767225600000LL

static tsig_key key;      /* signs (modes 1, 2) */
static tsig_key verifier; /* verifies only: nothing it accepts exists */

static int known_reason(const char *r) {
  static const char *const all[] = {TSIG_R_MISSING, TSIG_R_MALFORMED, TSIG_R_VERSION, TSIG_R_STALE,
                                    TSIG_R_FUTURE,  TSIG_R_MISMATCH,  TSIG_R_ARGUMENTS};
  for (size_t i = 0; r && i < sizeof all / sizeof all[0]; i++)
    if (strcmp(r, all[i]) == 0) return 1;
  return 0;
}

static void mode_foreign(const uint8_t *d, size_t n) {
  if (n < 2) return;
  size_t sl = d[0], tl = d[1] % 24;
  d += 2;
  n -= 2;
  if (sl + tl > n) return;
  const uint8_t *sig = d, *ts = d + sl, *val = d + sl + tl;
  ctool_request *r = NULL;
  if (ctool_request_decode(val, n - sl - tl, 0, &r, NULL, NULL, 0) != AW_OK) return;
  const char *why = NULL;
  int64_t t = 0;
  /* Verified at its own timestamp when it has one, so the MAC is reached. */
  int64_t now = tsig_parse_ts(ts, tl, &t) == AW_OK ? t : NOW;
  CHECK(tsig_request_verify(&verifier, r, sl ? sig : NULL, sl, ts, tl, now, -1, &why) == AW_EINVAL);
  CHECK(known_reason(why));
  ctool_request_free(r);
}

static void mode_edit(const uint8_t *d, size_t n) {
  static const char args[] = "{\"location\":\"Paris\"}";
  ctool_request r = {0};
  r.correlation_id = "tc2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  r.conversation_id = "conv";
  r.tool_call_id = "call_1";
  r.name = "get_weather";
  r.arguments_json = args;
  r.arguments_json_len = sizeof args - 1;
  r.deadline_ms = NOW + 1000;
  r.reply_topic = "replies";
  r.event_id = "evt";
  r.round = 1;
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  CHECK(tsig_request_sign(&key, &r, NOW, sig, ts) == AW_OK);
  CHECK(tsig_request_verify(&key, &r, sig, strlen(sig), ts, strlen(ts), NOW, -1, NULL) == AW_OK);
  char t[TSIG_MAX_HEADER + 64];
  size_t len = strlen(sig);
  memcpy(t, sig, len);
  for (size_t i = 0; i + 1 < n; i += 2) {
    uint8_t op = d[i], arg = d[i + 1];
    size_t pos = len ? (size_t)op % len : 0;
    if (op >= 0xf0) len = pos; /* truncate */
    else if (op >= 0xc0 && len < sizeof t) t[len++] = (char)arg; /* append */
    else if (len) t[pos] = (char)arg;
  }
  const char *why = NULL;
  int rc = tsig_request_verify(&key, &r, t, len, ts, strlen(ts), NOW, -1, &why);
  if (rc == AW_OK) CHECK(len >= strlen(sig) && memmem(t, len, sig, strlen(sig)) != NULL);
  else CHECK(rc == AW_EINVAL && known_reason(why));
}

static void mode_reply(const uint8_t *d, size_t n) {
  ctool_reply *r = NULL;
  if (ctool_reply_decode(d, n, 0, &r, NULL, NULL, 0) != AW_OK) return;
  char sig[TSIG_HEADER_SIZE];
  CHECK(tsig_reply_sign(&key, r, sig) == AW_OK);
  CHECK(tsig_reply_verify(&key, r, sig, strlen(sig), NULL) == AW_OK);
  CHECK(tsig_reply_sign_encoded(&key, d, n, sig) == AW_OK);
  CHECK(tsig_reply_verify(&key, r, sig, strlen(sig), NULL) == AW_OK);
  /* The reply's own output as a header, under the key nobody signs with. */
  const char *why = NULL;
  const char *h = r->output ? r->output : r->error_message;
  size_t hl = r->output ? r->output_len : strlen(r->error_message);
  CHECK(tsig_reply_verify(&verifier, r, h, hl, &why) == AW_EINVAL && known_reason(why));
  CHECK(tsig_reply_verify(&verifier, r, sig, strlen(sig), &why) == AW_EINVAL);
  ctool_reply_free(r);
}

/** libFuzzer entry point: one input = one header set, header edit or reply. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    CHECK(tsig_key_init(&key, "fuzz-tool-request-key-0123456789", 32) == AW_OK);
    CHECK(tsig_key_init(&verifier, "fuzz-tool-request-verifier-0123456789", 37) == AW_OK);
    ready = 1;
  }
  if (size < 1) return 0;
  switch (data[0] % 3) {
  case 0: mode_foreign(data + 1, size - 1); break;
  case 1: mode_edit(data + 1, size - 1); break;
  default: mode_reply(data + 1, size - 1); break;
  }
  return 0;
}
