/* contract_json.c -- the JSON view of any contract message (contract.h's
 * contract_to_json): the msgpack map as JSON, binary as base64, for the CLI
 * (`tail`, `send`) and the tests that check messages against schemas/.
 * Apart from the codec because it knows no message: it converts any msgpack
 * value, bounded by buf's maximum. */
#include "contract.h"
#include "msgpack_util.h"

#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON view ------------------------------------------------------------- */

/* Escaped string contents (no quotes).  Safe runs are appended in one go;
 * invalid UTF-8 becomes \ufffd so the output is always valid JSON. */
static int json_escape(buf *out, const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t run = 0, i = 0;
  int rc;
  while (i < n) {
    unsigned char ch = s[i];
    size_t k = 1;
    const char *esc = NULL;
    char tmp[8];
    if (ch == '"') esc = "\\\"";
    else if (ch == '\\') esc = "\\\\";
    else if (ch == '\n') esc = "\\n";
    else if (ch == '\r') esc = "\\r";
    else if (ch == '\t') esc = "\\t";
    else if (ch == '\b') esc = "\\b";
    else if (ch == '\f') esc = "\\f";
    else if (ch < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", ch);
      esc = tmp;
    } else if (ch >= 0x80) {
      k = mpu_utf8_seq(s + i, n - i);
      if (!k) {
        esc = "\\ufffd";
        k = 1;
      }
    }
    if (!esc) {
      i += k;
      continue;
    }
    if (i > run && (rc = buf_append(out, s + run, i - run))) return rc;
    if ((rc = buf_appends(out, esc))) return rc;
    i += k;
    run = i;
  }
  if (n > run && (rc = buf_append(out, s + run, n - run))) return rc;
  return AW_OK;
}

static int json_string(buf *out, const char *p, size_t n) {
  int rc = buf_append(out, "\"", 1);
  if (!rc) rc = json_escape(out, p, n);
  if (!rc) rc = buf_append(out, "\"", 1);
  return rc;
}

/* Standard base64 with padding, no quotes. */
static int json_base64(buf *out, const void *data, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = data;
  char chunk[256];
  size_t c = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < n) v |= (uint32_t)s[i + 1] << 8;
    if (i + 2 < n) v |= s[i + 2];
    chunk[c++] = tbl[v >> 18 & 63];
    chunk[c++] = tbl[v >> 12 & 63];
    chunk[c++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
    chunk[c++] = i + 2 < n ? tbl[v & 63] : '=';
    if (c == sizeof chunk) {
      int rc = buf_append(out, chunk, c);
      if (rc) return rc;
      c = 0;
    }
  }
  return c ? buf_append(out, chunk, c) : AW_OK;
}

/* Shortest of a few precisions that reads back to the same value, so 0.1
 * prints as 0.1 and not 0.10000000000000001.  JSON has no NaN/Infinity:
 * they become null. */
static int json_double(buf *out, double d, bool single) {
  if (!isfinite(d)) return buf_appends(out, "null");
  static const int precs[] = {6, 9, 15, 17};
  char tmp[40];
  for (size_t i = 0; i < sizeof precs / sizeof precs[0]; i++) {
    snprintf(tmp, sizeof tmp, "%.*g", precs[i], d);
    double back = strtod(tmp, NULL);
    if (single ? (float)back == (float)d : back == d) break;
  }
  return buf_appends(out, tmp);
}

static int json_value(buf *out, const msgpack_object *o);

/* Map keys that are not strings become the string of their JSON text
 * (bin: its base64), so every map converts to an object.  Keys nested in
 * keys escape their quotes once per level, so the text can grow
 * exponentially with depth; the temporary is capped at what out can still
 * take, which makes such input fail with ETOOBIG early. */
static int json_key(buf *out, const msgpack_object *k) {
  if (k->type == MSGPACK_OBJECT_STR) return json_string(out, k->via.str.ptr, k->via.str.size);
  buf tmp;
  buf_init(&tmp, out->max - out->len);
  int rc = k->type == MSGPACK_OBJECT_BIN ? json_base64(&tmp, k->via.bin.ptr, k->via.bin.size)
                                         : json_value(&tmp, k);
  if (!rc) rc = json_string(out, tmp.data ? tmp.data : "", tmp.len);
  buf_free(&tmp);
  return rc;
}

static int json_value(buf *out, const msgpack_object *o) {
  int rc;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return buf_appends(out, "null");
  case MSGPACK_OBJECT_BOOLEAN: return buf_appends(out, o->via.boolean ? "true" : "false");
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return buf_appendf(out, "%llu", (unsigned long long)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return buf_appendf(out, "%lld", (long long)o->via.i64);
  case MSGPACK_OBJECT_FLOAT32: return json_double(out, o->via.f64, true);
  case MSGPACK_OBJECT_FLOAT64: return json_double(out, o->via.f64, false);
  case MSGPACK_OBJECT_STR: return json_string(out, o->via.str.ptr, o->via.str.size);
  case MSGPACK_OBJECT_BIN:
    if ((rc = buf_append(out, "\"", 1))) return rc;
    if ((rc = json_base64(out, o->via.bin.ptr, o->via.bin.size))) return rc;
    return buf_append(out, "\"", 1);
  case MSGPACK_OBJECT_EXT:
    if ((rc = buf_appendf(out, "{\"ext\":%d,\"data\":\"", (int)o->via.ext.type))) return rc;
    if ((rc = json_base64(out, o->via.ext.ptr, o->via.ext.size))) return rc;
    return buf_appends(out, "\"}");
  case MSGPACK_OBJECT_ARRAY:
    if ((rc = buf_append(out, "[", 1))) return rc;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      if (i && (rc = buf_append(out, ",", 1))) return rc;
      if ((rc = json_value(out, &o->via.array.ptr[i]))) return rc;
    }
    return buf_append(out, "]", 1);
  case MSGPACK_OBJECT_MAP:
    if ((rc = buf_append(out, "{", 1))) return rc;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      if (i && (rc = buf_append(out, ",", 1))) return rc;
      if ((rc = json_key(out, &o->via.map.ptr[i].key))) return rc;
      if ((rc = buf_append(out, ":", 1))) return rc;
      if ((rc = json_value(out, &o->via.map.ptr[i].val))) return rc;
    }
    return buf_append(out, "}", 1);
  }
  return AW_EPARSE;
}

int contract_to_json(const void *data, size_t len, buf *out) {
  size_t end = 0;
  if (!data || mpu_skip(data, len, &end) || end != len) return AW_EPARSE;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  msgpack_unpack_return ur = msgpack_unpack_next(&u, data, len, &off);
  int rc;
  if (ur == MSGPACK_UNPACK_NOMEM_ERROR) rc = AW_ENOMEM;
  else if (ur != MSGPACK_UNPACK_SUCCESS || off != len) rc = AW_EPARSE;
  else if ((rc = json_value(out, &u.data)))
    buf_free(out); /* no half a document; and a failing json_key's tmp left out intact */
  msgpack_unpacked_destroy(&u);
  return rc;
}
