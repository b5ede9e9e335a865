/* mp_fixture.c -- see mp_fixture.h. */
#include "mp_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "buf.h"
#include "contract.h"

/* Larger than any view a test asks for; the bound of the view itself is
 * contract_to_json's own test (test_contract.c). */
#define VIEW_MAX (4u << 20)

void mpfx_begin(mpfx *m) {
  msgpack_sbuffer_init(&m->sb);
  msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

void mpfx_str(mpfx *m, const char *s) { msgpack_pack_str_with_body(&m->pk, s, strlen(s)); }

void mpfx_strn(mpfx *m, const char *s, size_t n) { msgpack_pack_str_with_body(&m->pk, s, n); }

/* A base64 string (standard alphabet, padded: the JSON view's) as bin. */
static void pack_base64_bin(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  if (n % 4) fail_msg("not padded base64: %s", s);
  unsigned char *out = malloc(n / 4 * 3 + 1);
  assert_non_null(out);
  int m = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
  if (m < 0) fail_msg("not base64: %s", s);
  while (n && s[n - 1] == '=') { /* EVP_DecodeBlock counts the padding as zero bytes */
    n--;
    m--;
  }
  msgpack_pack_bin(pk, (size_t)m);
  msgpack_pack_bin_body(pk, out, (size_t)m);
  free(out);
}

static void pack_json_as(msgpack_packer *pk, const cJSON *j, int bin_data);

static void pack_json(msgpack_packer *pk, const cJSON *j) { pack_json_as(pk, j, 0); }

static void pack_json_as(msgpack_packer *pk, const cJSON *j, int bin_data) {
  if (bin_data && cJSON_IsString(j) && j->string && !strcmp(j->string, "data")) {
    pack_base64_bin(pk, j->valuestring);
  } else if (cJSON_IsNull(j)) {
    msgpack_pack_nil(pk);
  } else if (cJSON_IsTrue(j)) {
    msgpack_pack_true(pk);
  } else if (cJSON_IsFalse(j)) {
    msgpack_pack_false(pk);
  } else if (cJSON_IsNumber(j)) {
    double d = j->valuedouble;
    if (d == floor(d) && fabs(d) < 9e15) msgpack_pack_int64(pk, (int64_t)d);
    else msgpack_pack_double(pk, d);
  } else if (cJSON_IsString(j)) {
    msgpack_pack_str_with_body(pk, j->valuestring, strlen(j->valuestring));
  } else if (cJSON_IsArray(j)) {
    msgpack_pack_array(pk, (size_t)cJSON_GetArraySize(j));
    for (const cJSON *c = j->child; c; c = c->next) pack_json_as(pk, c, bin_data);
  } else if (cJSON_IsObject(j)) {
    msgpack_pack_map(pk, (size_t)cJSON_GetArraySize(j));
    for (const cJSON *c = j->child; c; c = c->next) {
      msgpack_pack_str_with_body(pk, c->string, strlen(c->string));
      pack_json_as(pk, c, bin_data);
    }
  } else {
    fail_msg("unsupported JSON value");
  }
}

void mpfx_from_json(const char *json, msgpack_sbuffer *sb) {
  cJSON *j = cJSON_Parse(json);
  if (!j) fail_msg("test JSON does not parse: %s", json);
  msgpack_sbuffer_init(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  pack_json(&pk, j);
  cJSON_Delete(j);
}

void mpfx_from_json_bin(const char *json, msgpack_sbuffer *sb) {
  cJSON *j = cJSON_Parse(json);
  if (!j) fail_msg("test JSON does not parse: %s", json);
  msgpack_sbuffer_init(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  pack_json_as(&pk, j, 1);
  cJSON_Delete(j);
}

char *mpfx_json_view(const void *p, size_t n, int *rc) {
  buf j;
  buf_init(&j, VIEW_MAX);
  int r = contract_to_json(p, n, &j);
  if (rc) *rc = r;
  else assert_int_equal(r, AW_OK);
  char *s = strdup(j.data ? j.data : "");
  assert_non_null(s);
  buf_free(&j);
  return s;
}

char *mpfx_source_file(const char *rel) {
  char root[1024];
  const char *env = getenv("AW_SOURCE_DIR");
  if (env) {
    snprintf(root, sizeof root, "%s", env);
  } else {
    snprintf(root, sizeof root, "%s", __FILE__);
    char *p = strstr(root, "tests/unit/mp_fixture.c");
    if (!p) fail_msg("cannot find the source tree from %s; set AW_SOURCE_DIR", __FILE__);
    *p = '\0';
    if (p == root) strcpy(root, ".");
  }
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  assert_int_equal(fseek(f, 0, SEEK_SET), 0);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

void mpfx_same_shape(const cJSON *a, const cJSON *b, const char *path) {
  if ((a->type & 0xff) != (b->type & 0xff) && !(cJSON_IsBool(a) && cJSON_IsBool(b)))
    fail_msg("%s: JSON types differ", path);
  char sub[512];
  if (cJSON_IsObject(a)) {
    for (const cJSON *c = a->child; c; c = c->next) {
      snprintf(sub, sizeof sub, "%s.%s", path, c->string);
      const cJSON *o = cJSON_GetObjectItemCaseSensitive(b, c->string);
      if (!o) fail_msg("%s: only in the example", sub);
      mpfx_same_shape(c, o, sub);
    }
    for (const cJSON *c = b->child; c; c = c->next)
      if (!cJSON_GetObjectItemCaseSensitive(a, c->string))
        fail_msg("%s.%s: only in the encoder's output", path, c->string);
  } else if (cJSON_IsArray(a) && a->child && b->child) {
    snprintf(sub, sizeof sub, "%s[0]", path);
    mpfx_same_shape(a->child, b->child, sub);
  }
}
