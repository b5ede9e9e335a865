/* fuzz_json_schema.c -- libFuzzer target for the tool-arguments validator
 * (common/contract/json_schema.c).
 *
 * Input: schema text, a NUL byte, instance text.  Without a NUL the whole
 * input is tried as a schema and as an instance of a few fixed schemas
 * (the OpenAI get_weather example and one using every supported keyword),
 * so the fuzzer reaches the validator before it has learnt the split.
 *
 * Build: cmake -DAW_FUZZ=ON -DCMAKE_C_COMPILER=clang, then
 *   ./fuzz_json_schema -max_total_time=60 corpus/
 * Good seeds: a tool's "parameters" schema, NUL, its arguments JSON.
 *
 * Beyond "does not crash, does not leak", it checks what callers rely on:
 *  - compile answers AW_OK, AW_EPARSE or AW_EINVAL, and *out is set only on
 *    success;
 *  - every message is non-empty on failure, empty on success, valid UTF-8
 *    and shorter than JSCHEMA_ERR_MAX; validation messages start with a
 *    path ("$"), parse failures with "arguments are not valid JSON (";
 *  - the same call twice gives the same answer (no hidden state);
 *  - a small errstr gets the same code and a prefix of the full message,
 *    cut at a character boundary;
 *  - the schema true accepts any v that parses and is not nested too
 *    deeply, and so do {"const": v} and {"enum": [0, v]};
 *  - {"allOf": [S]} answers as S does, message included, and
 *    {"anyOf": [false, S]} gives the same code.
 * A violated property aborts, so libFuzzer saves the input.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"
#include "msgpack_util.h" /* mpu_utf8_valid */

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

static const char WEATHER[] =
    "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"description\":"
    "\"City name\"}},\"required\":[\"location\"]}";
static const char EVERYTHING[] =
    "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"q\"],\"properties\":{"
    "\"q\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},"
    "\"n\":{\"type\":\"integer\",\"minimum\":0,\"exclusiveMaximum\":100},"
    "\"x\":{\"type\":\"number\",\"exclusiveMinimum\":-1.5,\"maximum\":1e6},"
    "\"u\":{\"enum\":[\"c\",\"f\",null,1,[1],{\"a\":1}]},\"k\":{\"const\":{\"v\":[true,false]}},"
    "\"tags\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":[\"string\",\"null\"]}},"
    "\"opt\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"object\",\"required\":[\"a\"],"
    "\"additionalProperties\":{\"type\":\"boolean\"}}]},"
    "\"one\":{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":2}]},"
    "\"all\":{\"allOf\":[{\"type\":\"number\"},{\"maximum\":5}]},\"no\":false,\"yes\":true}}";

static int utf8_ok(const char *s) { return mpu_utf8_valid(s, strlen(s)); }

/* The message of a failed call: what every caller may show a model. */
static void check_message(int rc, const char *err) {
  CHECK(strlen(err) < JSCHEMA_ERR_MAX && utf8_ok(err));
  CHECK(rc == AW_OK ? err[0] == '\0' : err[0] != '\0');
}

/* A cut message is the full one's prefix, then "..." when there was room. */
static void check_cut(const char *full, const char *cut, size_t size) {
  size_t n = strlen(cut);
  CHECK(n < size && utf8_ok(cut));
  if (strlen(full) < size) {
    CHECK(!strcmp(full, cut));
    return;
  }
  size_t keep = size >= 4 ? n - 3 : n;
  if (size >= 4) CHECK(n >= 3 && !strcmp(cut + n - 3, "..."));
  CHECK(!memcmp(full, cut, keep));
}

/* Validate text against s with every property that needs no second schema;
 * returns the code. */
static int validate(const jschema *s, const char *text, size_t len, char err[JSCHEMA_ERR_MAX]) {
  int rc = jschema_validate_text(s, text, len, err, JSCHEMA_ERR_MAX);
  CHECK(rc == AW_OK || rc == AW_EINVAL || rc == AW_EPARSE);
  check_message(rc, err);
  if (rc == AW_EINVAL) CHECK(err[0] == '$');
  if (rc == AW_EPARSE) CHECK(!strncmp(err, "arguments are not valid JSON (", 30));

  char again[JSCHEMA_ERR_MAX];
  CHECK(jschema_validate_text(s, text, len, again, sizeof again) == rc && !strcmp(again, err));
  char small[12];
  size_t size = 1 + len % sizeof small;
  CHECK(jschema_validate_text(s, text, len, small, size) == rc);
  check_cut(err, small, size);
  CHECK(jschema_validate_text(s, text, len, NULL, 0) == rc);
  return rc;
}

static jschema *compile(const char *text, size_t len, int *rc_out, char err[JSCHEMA_ERR_MAX]) {
  jschema *s = (jschema *)&s; /* must be overwritten */
  int rc = jschema_compile(text, len, &s, err, JSCHEMA_ERR_MAX);
  CHECK(rc == AW_OK || rc == AW_EINVAL || rc == AW_EPARSE);
  CHECK(rc == AW_OK ? s != NULL : s == NULL);
  check_message(rc, err);
  if (rc == AW_EPARSE) CHECK(!strncmp(err, "schema is not valid JSON (", 26));
  if (rc == AW_EINVAL) CHECK(err[0] == '#');
  *rc_out = rc;
  return s;
}

/* Compile a schema made from text, which must work unless it nests too
 * deeply once wrapped. */
static jschema *compile_wrapped(const char *text) {
  char err[JSCHEMA_ERR_MAX];
  int rc;
  jschema *s = compile(text, strlen(text), &rc, err);
  CHECK(rc == AW_OK || (rc == AW_EINVAL && strstr(err, "nest too deeply")));
  return s;
}

/* Schemas built around an instance accept it: true, {"const": v} and
 * {"enum": [0, v]}. */
static void check_instance_schemas(const jschema *yes, const char *text, size_t len) {
  char err[JSCHEMA_ERR_MAX];
  int rc = validate(yes, text, len, err);
  CHECK(rc != AW_EINVAL || strstr(err, "nested too deeply"));
  if (rc) return;
  cJSON *v = cJSON_ParseWithLength(text, len);
  CHECK(v);
  for (int i = 0; i < 2; i++) {
    cJSON *root = cJSON_CreateObject();
    cJSON *copy = cJSON_Duplicate(v, 1);
    CHECK(root && copy);
    if (i == 0) {
      cJSON_AddItemToObject(root, "const", copy);
    } else {
      cJSON *list = cJSON_AddArrayToObject(root, "enum");
      CHECK(list);
      cJSON_AddItemToArray(list, cJSON_CreateNumber(0));
      cJSON_AddItemToArray(list, copy);
    }
    char *schema = cJSON_PrintUnformatted(root);
    CHECK(schema);
    /* cJSON prints 1e400 (infinity) as null: only values that survive
     * printing make a fair test. */
    cJSON *back = cJSON_Parse(schema);
    const cJSON *bv = back ? (i == 0 ? back->child : cJSON_GetArrayItem(back->child, 1)) : NULL;
    if (bv && cJSON_Compare(bv, v, 1)) {
      jschema *s = compile_wrapped(schema);
      CHECK(s); /* the value is data: it adds no schema nesting */
      CHECK(jschema_validate(s, v, err, sizeof err) == AW_OK);
      jschema_free(s);
    }
    cJSON_Delete(back);
    cJSON_free(schema);
    cJSON_Delete(root);
  }
  cJSON_Delete(v);
}

static void check_pair(const char *schema, size_t slen, const char *inst, size_t ilen) {
  char err[JSCHEMA_ERR_MAX];
  int crc;
  jschema *s = compile(schema, slen, &crc, err);
  if (!s) return;
  char verr[JSCHEMA_ERR_MAX];
  int rc = validate(s, inst, ilen, verr);
  jschema_free(s);
  if (rc == AW_EPARSE) return;

  /* Wrapping: the schema text is one valid JSON value, so it can be pasted
   * into an array (a byte order mark at its start cannot). */
  if (slen >= 3 && !memcmp(schema, "\xEF\xBB\xBF", 3)) return;
  static const char *const fmt[] = {"{\"allOf\":[%.*s]}", "{\"anyOf\":[false,%.*s]}"};
  for (int i = 0; i < 2; i++) {
    size_t size = slen + 32;
    char *w = malloc(size);
    CHECK(w);
    snprintf(w, size, fmt[i], (int)slen, schema);
    jschema *ws = compile_wrapped(w);
    free(w);
    if (!ws) continue;
    char werr[JSCHEMA_ERR_MAX];
    CHECK(validate(ws, inst, ilen, werr) == rc);
    if (i == 0) CHECK(!strcmp(werr, verr));
    jschema_free(ws);
  }
}

/** libFuzzer entry point: schema text, NUL, instance text (or one text). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static jschema *fixed[3]; /* get_weather, every keyword, true */
  if (!fixed[0]) {
    char err[JSCHEMA_ERR_MAX];
    CHECK(jschema_compile(WEATHER, strlen(WEATHER), &fixed[0], err, sizeof err) == AW_OK);
    CHECK(jschema_compile(EVERYTHING, strlen(EVERYTHING), &fixed[1], err, sizeof err) == AW_OK);
    CHECK(jschema_compile("true", 4, &fixed[2], err, sizeof err) == AW_OK);
  }
  if (size > 1 << 16) return 0; /* (schema size x instance size) work: keep runs fast */
  /* Copies sized exactly, so ASan sees any read past the given length. */
  const uint8_t *nul = memchr(data, 0, size);
  if (!nul) {
    char *text = malloc(size ? size : 1);
    CHECK(text);
    memcpy(text, data, size);
    char err[JSCHEMA_ERR_MAX];
    for (int i = 0; i < 2; i++) (void)validate(fixed[i], text, size, err);
    check_instance_schemas(fixed[2], text, size);
    int rc;
    jschema_free(compile(text, size, &rc, err));
    free(text);
    return 0;
  }
  size_t slen = (size_t)(nul - data), ilen = size - slen - 1;
  char *schema = malloc(slen ? slen : 1), *inst = malloc(ilen ? ilen : 1);
  CHECK(schema && inst);
  memcpy(schema, data, slen);
  memcpy(inst, nul + 1, ilen);
  check_pair(schema, slen, inst, ilen);
  check_instance_schemas(fixed[2], inst, ilen);
  free(schema);
  free(inst);
  return 0;
}
