/* rkeys.c -- Redis key names (see rkeys.h for the grammar and why it is
 * injective).  Pure string work: no allocation, no I/O. */
#include "rkeys.h"

#include <stdio.h>
#include <string.h>

static const char HEX[] = "0123456789ABCDEF";

/* The bytes that never stand for themselves in a key. */
static int needs_escape(unsigned char b) {
  return b == '%' || b == '{' || b == '}' || b == ':' || b == ' ' || b < 0x20 || b >= 0x7f;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1; /* lower case is not canonical */
}

int rk_prefix_ok(const char *prefix) {
  if (!prefix) return 0;
  size_t n = strlen(prefix);
  if (n == 0 || n >= RK_PREFIX_SIZE) return 0;
  for (const char *p = prefix; *p; p++)
    if (*p == '{' || *p == '}' || (unsigned char)*p < 0x20 || *p == 0x7f) return 0;
  return 1;
}

int rk_space_init(rk_space *s, const char *prefix, int tenanted) {
  if (!prefix || !*prefix) prefix = "aw";
  s->tenanted = tenanted ? 1 : 0;
  if (!rk_prefix_ok(prefix)) {
    /* Keys built with it would fail (rk_conv_key re-checks); keep it for
     * the error messages. */
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    return AW_EINVAL;
  }
  memcpy(s->prefix, prefix, strlen(prefix) + 1);
  return AW_OK;
}

int rk_encode(const void *in, size_t len, char *out, size_t n, size_t *out_len) {
  const unsigned char *p = in;
  size_t k = 0;
  if (!out || n == 0 || (!p && len)) return AW_EINVAL;
  for (size_t i = 0; i < len; i++) {
    if (needs_escape(p[i])) {
      if (k + 3 >= n) return AW_ETOOBIG;
      out[k++] = '%';
      out[k++] = HEX[p[i] >> 4];
      out[k++] = HEX[p[i] & 15];
    } else {
      if (k + 1 >= n) return AW_ETOOBIG;
      out[k++] = (char)p[i];
    }
  }
  out[k] = '\0';
  if (out_len) *out_len = k;
  return AW_OK;
}

int rk_decode(const char *in, size_t len, void *out, size_t n, size_t *out_len) {
  unsigned char *o = out;
  size_t k = 0;
  if (!o || n == 0 || (!in && len)) return AW_EINVAL;
  for (size_t i = 0; i < len; i++) {
    unsigned char b = (unsigned char)in[i];
    if (b == '%') {
      if (len - i < 3) return AW_EPARSE; /* '%' needs two digits after it */
      int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
      if (hi < 0 || lo < 0) return AW_EPARSE;
      b = (unsigned char)(hi << 4 | lo);
      if (!needs_escape(b)) return AW_EPARSE; /* encode never escapes it */
      i += 2;
    } else if (needs_escape(b)) {
      return AW_EPARSE; /* encode never leaves it raw */
    }
    if (k + 1 >= n) return AW_ETOOBIG;
    o[k++] = b;
  }
  o[k] = '\0';
  if (out_len) *out_len = k;
  return AW_OK;
}

int rk_tenant_ok(const void *t, size_t len) {
  const unsigned char *p = t;
  if (!p || len == 0 || len > RK_TENANT_MAX) return 0;
  for (size_t i = 0; i < len; i++)
    if (p[i] < 0x20 || p[i] == 0x7f) return 0;
  return 1;
}

int rk_ref_make(const char *tenant, const char *conv, char *out, size_t n) {
  if (!conv || !*conv || !out || n == 0) return AW_EINVAL;
  size_t cl = strlen(conv);
  if (cl > RK_ID_MAX) return AW_ETOOBIG;
  size_t k = 0;
  if (tenant && *tenant) {
    if (!rk_tenant_ok(tenant, strlen(tenant))) return AW_EINVAL;
    int rc = rk_encode(tenant, strlen(tenant), out, n, &k);
    if (rc) return rc;
    if (k + 1 >= n) return AW_ETOOBIG;
    out[k++] = ':';
  }
  if (k + cl >= n) return AW_ETOOBIG;
  memcpy(out + k, conv, cl + 1);
  return AW_OK;
}

int rk_ref_split(const rk_space *s, const char *ref, char *tenant, size_t tn, const char **conv) {
  if (!s || !ref || !tenant || tn == 0 || !conv) return AW_EPARSE;
  if (!s->tenanted) {
    if (!*ref) return AW_EPARSE;
    tenant[0] = '\0';
    *conv = ref;
    return AW_OK;
  }
  const char *colon = strchr(ref, ':');
  if (!colon || colon == ref || !colon[1]) return AW_EPARSE;
  char t[RK_TENANT_MAX + 1];
  size_t tl = 0;
  if (rk_decode(ref, (size_t)(colon - ref), t, sizeof t, &tl) != AW_OK || !rk_tenant_ok(t, tl) || tl >= tn)
    return AW_EPARSE;
  memcpy(tenant, t, tl + 1);
  *conv = colon + 1;
  return AW_OK;
}

/* Appends to a bounded key; a failed append poisons the rest (ok = 0). */
typedef struct kbuf {
  char *p;
  size_t n, k;
  int ok;
} kbuf;

static void put(kbuf *b, const char *s) {
  size_t l = strlen(s);
  if (!b->ok || b->k + l >= b->n) {
    b->ok = 0;
    return;
  }
  memcpy(b->p + b->k, s, l + 1);
  b->k += l;
}

static void put_enc(kbuf *b, const char *s, size_t len) {
  size_t l = 0;
  if (!b->ok || len > RK_ID_MAX || rk_encode(s, len, b->p + b->k, b->n - b->k, &l) != AW_OK) {
    b->ok = 0;
    return;
  }
  b->k += l;
}

/* A handle name: one lower-case word that is none of the suffixes' first
 * words, so RK_HANDLE keys never meet the other kinds. */
static int handle_name_ok(const char *h) {
  static const char *const taken[] = {"ev", "evp", "evf", "turn", "hist"};
  if (!h || !*h || strlen(h) > 32) return 0;
  for (const char *p = h; *p; p++)
    if (*p < 'a' || *p > 'z') return 0;
  for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++)
    if (strcmp(h, taken[i]) == 0) return 0;
  return 1;
}

int rk_conv_key(const rk_space *s, const char *ref, rk_kind kind, const char *arg, char *out, size_t n) {
  if (!s || !ref || !out || n == 0 || !rk_prefix_ok(s->prefix)) return AW_EINVAL;
  int wants_arg = kind != RK_HIST && kind != RK_HIST_IDS;
  if (wants_arg ? (!arg || !*arg) : arg != NULL) return AW_EINVAL;
  if (kind == RK_HANDLE && !handle_name_ok(arg)) return AW_EINVAL;
  if (wants_arg && strlen(arg) > RK_ID_MAX) return AW_ETOOBIG;
  char tenant[RK_TENANT_MAX + 1];
  const char *conv = NULL;
  if (rk_ref_split(s, ref, tenant, sizeof tenant, &conv) != AW_OK) return AW_EINVAL;
  size_t cl = strlen(conv);
  if (cl > RK_ID_MAX) return AW_ETOOBIG;
  kbuf b = {out, n, 0, 1};
  out[0] = '\0';
  put(&b, s->prefix);
  put(&b, ":{");
  if (tenant[0]) {
    put(&b, "t:");
    put_enc(&b, tenant, strlen(tenant));
    put(&b, ":");
  }
  put(&b, "c:");
  put_enc(&b, conv, cl);
  put(&b, "}:");
  switch (kind) {
  case RK_HANDLE: put(&b, arg); break;
  case RK_OUTCOME: put(&b, "ev:"); put_enc(&b, arg, strlen(arg)); break;
  case RK_PROGRESS: put(&b, "evp:"); put_enc(&b, arg, strlen(arg)); break;
  case RK_TURN: put(&b, "turn:"); put_enc(&b, arg, strlen(arg)); break;
  case RK_HIST: put(&b, "hist"); break;
  case RK_HIST_IDS: put(&b, "hist:ids"); break;
  case RK_HIST_PENDING: put(&b, "hist:p:"); put_enc(&b, arg, strlen(arg)); break;
  case RK_UPLOADS: put(&b, "evf:"); put_enc(&b, arg, strlen(arg)); break;
  default: return AW_EINVAL;
  }
  if (!b.ok) {
    out[0] = '\0';
    return AW_ETOOBIG;
  }
  return AW_OK;
}

int rk_fleet_key(const rk_space *s, rk_fleet_kind kind, const char *arg, char *out, size_t n) {
  if (!s || !arg || !*arg || !out || n == 0 || !rk_prefix_ok(s->prefix)) return AW_EINVAL;
  if (strlen(arg) > RK_ID_MAX) return AW_ETOOBIG;
  kbuf b = {out, n, 0, 1};
  out[0] = '\0';
  put(&b, s->prefix);
  switch (kind) {
  case RK_CORR: put(&b, ":tc:"); break;
  case RK_WAKE: put(&b, ":wake:"); break;
  case RK_KB: put(&b, ":kb:"); break;
  case RK_KB_LOCK: put(&b, ":kblock:"); break;
  default: return AW_EINVAL;
  }
  put_enc(&b, arg, strlen(arg));
  if (!b.ok) {
    out[0] = '\0';
    return AW_ETOOBIG;
  }
  return AW_OK;
}

/* The head is taken from rk_conv_key itself (the hist key without its
 * last word), so the pattern cannot drift from the grammar. */
int rk_conv_match(const rk_space *s, const char *ref, int kind, char *out, size_t n) {
  const char *word;
  switch (kind) {
  case RK_MATCH_ALL: word = ""; break;
  case RK_OUTCOME: word = "ev:"; break;
  case RK_PROGRESS: word = "evp:"; break;
  case RK_TURN: word = "turn:"; break;
  case RK_HIST_PENDING: word = "hist:p:"; break;
  default: return AW_EINVAL;
  }
  if (!out || n == 0) return AW_EINVAL;
  char head[RK_KEY_MAX];
  int rc = rk_conv_key(s, ref, RK_HIST, NULL, head, sizeof head);
  if (rc) return rc;
  size_t hl = strlen(head) - strlen("hist");
  kbuf b = {out, n, 0, 1};
  out[0] = '\0';
  for (size_t i = 0; i < hl && b.ok; i++) {
    char c[3] = {'\\', head[i], '\0'};
    int glob = head[i] == '*' || head[i] == '?' || head[i] == '[' || head[i] == ']' || head[i] == '\\';
    put(&b, glob ? c : c + 1);
  }
  put(&b, word);
  put(&b, "*");
  if (!b.ok) {
    out[0] = '\0';
    return AW_ETOOBIG;
  }
  return AW_OK;
}
