/* test_json_schema.c -- validating tool-call arguments against a function's
 * JSON Schema (common/contract/json_schema.c).
 *
 * Needs: nothing (no broker, no network, no Redis).
 *
 * Messages are compared whole: they are handed to a model, so their wording
 * is behaviour.  Leaks are caught by the ASan build (LeakSanitizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"
#include "msgpack_util.h" /* mpu_utf8_valid */

/* ---- helpers ------------------------------------------------------------------ */

static jschema *compile(const char *schema) {
  jschema *s = NULL;
  char err[JSCHEMA_ERR_MAX];
  int rc = jschema_compile(schema, strlen(schema), &s, err, sizeof err);
  if (rc) fail_msg("compile %s: %s (%s)", schema, aw_strerror(rc), err);
  assert_non_null(s);
  return s;
}

/* Is err the message want?  A want ending in '*' is a prefix: where cJSON
 * places a syntax error is its business, not ours. */
static bool message_is(const char *err, const char *want) {
  size_t n = strlen(want);
  if (n && want[n - 1] == '*') return !strncmp(err, want, n - 1);
  return !strcmp(err, want);
}

/* schema must fail to compile with rc and message want. */
static void compile_fails(const char *schema, int rc, const char *want) {
  jschema *s = (jschema *)1;
  char err[JSCHEMA_ERR_MAX];
  int got = jschema_compile(schema, strlen(schema), &s, err, sizeof err);
  if (got != rc) fail_msg("compile %s: got %s (%s), want %s", schema, aw_strerror(got), err, aw_strerror(rc));
  assert_null(s);
  if (want && !message_is(err, want)) fail_msg("compile %s:\n got  %s\n want %s", schema, err, want);
}

static void accepts(const jschema *s, const char *json) {
  char err[JSCHEMA_ERR_MAX] = "untouched";
  int rc = jschema_validate_text(s, json, strlen(json), err, sizeof err);
  if (rc) fail_msg("%s: rejected with %s: %s", json, aw_strerror(rc), err);
  assert_string_equal(err, "");
}

static void rejects(const jschema *s, const char *json, const char *want) {
  char err[JSCHEMA_ERR_MAX];
  int rc = jschema_validate_text(s, json, strlen(json), err, sizeof err);
  if (rc != AW_EINVAL) fail_msg("%s: got %s (%s), want EINVAL", json, aw_strerror(rc), err);
  if (strcmp(err, want)) fail_msg("%s:\n got  %s\n want %s", json, err, want);
}

/* One schema, then instances: each accepted when want is NULL, else
 * rejected with that message. */
typedef struct {
  const char *json, *want;
} instance_case;

static void check_cases(const char *schema, const instance_case *cases, size_t n) {
  jschema *s = compile(schema);
  for (size_t i = 0; i < n; i++) {
    if (cases[i].want) rejects(s, cases[i].json, cases[i].want);
    else accepts(s, cases[i].json);
  }
  jschema_free(s);
}
#define CHECK_CASES(schema, ...)                                   \
  do {                                                             \
    const instance_case cases_[] = {__VA_ARGS__};                  \
    check_cases(schema, cases_, sizeof cases_ / sizeof cases_[0]); \
  } while (0)

/* n nested arrays around x: "[[x]]" for n = 2.  Caller frees. */
static char *nested_arrays(size_t n, const char *x) {
  size_t xl = strlen(x);
  char *p = malloc(2 * n + xl + 1);
  assert_non_null(p);
  memset(p, '[', n);
  memcpy(p + n, x, xl);
  memset(p + n + xl, ']', n);
  p[2 * n + xl] = '\0';
  return p;
}

/* A schema of n levels: n - 1 "items" below the root, the innermost inner. */
static char *nested_items_schema(size_t n, const char *inner) {
  size_t il = strlen(inner), open = strlen("{\"items\":");
  char *p = malloc((n - 1) * (open + 1) + il + 1);
  assert_non_null(p);
  char *w = p;
  for (size_t i = 0; i + 1 < n; i++, w += open) memcpy(w, "{\"items\":", open);
  memcpy(w, inner, il);
  w += il;
  memset(w, '}', n - 1);
  w[n - 1] = '\0';
  return p;
}

/* ---- the OpenAI example -------------------------------------------------------------- */

static void get_weather_example_checks_required_location(void **state) {
  (void)state;
  CHECK_CASES("{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\","
              "\"description\":\"City name\"}},\"required\":[\"location\"]}",
              {"{\"location\":\"Paris\"}", NULL},
              {" {\"location\" : \"Paris\"}\n", NULL},
              {"{\"location\":\"Paris\",\"unit\":\"c\"}", NULL}, /* additional allowed by default */
              {"{}", "$.location: required property missing"},
              {"{\"city\":\"Paris\"}", "$.location: required property missing"},
              {"{\"location\":3}", "$.location: must be a string"},
              {"{\"location\":null}", "$.location: must be a string"},
              {"[\"Paris\"]", "$: must be an object"},
              {"\"Paris\"", "$: must be an object"});
}

/* ---- type -------------------------------------------------------------------------- */

static void type_accepts_its_kind_and_names_it_otherwise(void **state) {
  (void)state;
  static const struct {
    const char *type, *ok, *bad, *want;
  } t[] = {
      {"object", "{}", "[]", "$: must be an object"},
      {"array", "[1]", "{}", "$: must be an array"},
      {"string", "\"\"", "1", "$: must be a string"},
      {"number", "1.5", "\"1.5\"", "$: must be a number"},
      {"integer", "-7", "7.5", "$: must be an integer"},
      {"boolean", "false", "0", "$: must be a boolean"},
      {"null", "null", "false", "$: must be null"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char schema[64];
    snprintf(schema, sizeof schema, "{\"type\":\"%s\"}", t[i].type);
    CHECK_CASES(schema, {t[i].ok, NULL}, {t[i].bad, t[i].want});
  }
}

static void integer_is_a_number_without_fraction(void **state) {
  (void)state;
  CHECK_CASES("{\"type\":\"integer\"}", {"3", NULL}, {"3.0", NULL}, {"-0", NULL}, {"1e2", NULL},
              {"9007199254740993", NULL}, {"3.5", "$: must be an integer"},
              {"1e-1", "$: must be an integer"}, {"true", "$: must be an integer"});
  CHECK_CASES("{\"type\":\"number\"}", {"3", NULL}, {"-2.5e3", NULL}, {"null", "$: must be a number"});
}

static void type_list_accepts_any_listed_kind(void **state) {
  (void)state;
  CHECK_CASES("{\"type\":[\"string\",\"null\"]}", {"\"x\"", NULL}, {"null", NULL},
              {"1", "$: must be a string or null"});
  CHECK_CASES("{\"type\":[\"null\",\"array\",\"object\"]}", {"[]", NULL},
              {"true", "$: must be an object, an array or null"});
  CHECK_CASES("{\"type\":[]}", {"1", "$: no type is allowed here"});
}

/* ---- objects ------------------------------------------------------------------------- */

static void properties_check_each_member_with_its_path(void **state) {
  (void)state;
  CHECK_CASES("{\"properties\":{\"a\":{\"type\":\"integer\"},\"odd key\":{\"type\":\"string\"},"
              "\"b\":{\"properties\":{\"c\":{\"type\":\"boolean\"}}}}}",
              {"{}", NULL}, /* properties do not make anything required */
              {"{\"a\":1,\"odd key\":\"x\",\"b\":{\"c\":true},\"z\":[]}", NULL},
              {"[1]", NULL}, /* object keywords ignore non-objects */
              {"{\"a\":\"1\"}", "$.a: must be an integer"},
              {"{\"odd key\":1}", "$[\"odd key\"]: must be a string"},
              {"{\"b\":{\"c\":\"yes\"}}", "$.b.c: must be a boolean"},
              /* Duplicate keys: every occurrence is checked, not only the first. */
              {"{\"a\":1,\"a\":\"x\"}", "$.a: must be an integer"});
}

static void required_names_the_missing_property(void **state) {
  (void)state;
  CHECK_CASES("{\"required\":[\"a\",\"b\"]}", {"{\"a\":0,\"b\":null}", NULL},
              {"{\"b\":1}", "$.a: required property missing"},
              {"{\"a\":1}", "$.b: required property missing"},
              {"{\"A\":1,\"b\":1}", "$.a: required property missing"}, /* case-sensitive */
              {"\"not an object\"", NULL});
}

static void additional_properties_false_refuses_unknown_members(void **state) {
  (void)state;
  CHECK_CASES("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}",
              {"{\"a\":1}", NULL}, {"{}", NULL},
              {"{\"a\":1,\"foo\":2}", "$: additional property \"foo\" is not allowed"},
              {"{\"x\":{\"y\":1}}", "$: additional property \"x\" is not allowed"},
              {"{\"q\\\"\\n\":1}", "$: additional property \"q\\\"\\u000a\" is not allowed"});
}

static void additional_properties_schema_checks_unknown_members(void **state) {
  (void)state;
  CHECK_CASES("{\"properties\":{\"name\":{\"type\":\"string\"}},"
              "\"additionalProperties\":{\"type\":\"integer\"}}",
              {"{\"name\":\"n\",\"x\":1,\"y\":2}", NULL},
              {"{\"name\":\"n\",\"x\":\"1\"}", "$.x: must be an integer"},
              {"{\"name\":2}", "$.name: must be a string"});
  CHECK_CASES("{\"additionalProperties\":true}", {"{\"x\":1}", NULL});
}

/* ---- enum / const ------------------------------------------------------------------------ */

static void enum_lists_the_allowed_values(void **state) {
  (void)state;
  CHECK_CASES("{\"type\":\"object\",\"properties\":{\"units\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"]}}}",
              {"{\"units\":\"c\"}", NULL}, {"{\"units\":\"f\"}", NULL},
              {"{\"units\":\"C\"}", "$.units: must be one of \"c\", \"f\""},
              {"{\"units\":\"kelvin\"}", "$.units: must be one of \"c\", \"f\""});
  /* Any JSON values; numbers compare by value; objects regardless of order. */
  CHECK_CASES("{\"enum\":[1,null,[1,2],{\"a\":1,\"b\":2}]}", {"1", NULL}, {"1.0", NULL}, {"null", NULL},
              {"[1,2]", NULL}, {"{\"b\":2,\"a\":1}", NULL},
              {"[2,1]", "$: must be one of 1, null, [1,2], {\"a\":1,\"b\":2}"},
              {"\"1\"", "$: must be one of 1, null, [1,2], {\"a\":1,\"b\":2}"});
  CHECK_CASES("{\"enum\":[{\"Key\":1}]}", {"{\"Key\":1}", NULL},
              {"{\"key\":1}", "$: must be one of {\"Key\":1}"});
  CHECK_CASES("{\"enum\":[]}", {"1", "$: no value is allowed here (empty enum)"});
}

static void const_requires_that_one_value(void **state) {
  (void)state;
  CHECK_CASES("{\"properties\":{\"kind\":{\"const\":\"celsius\"},\"n\":{\"const\":0.5},"
              "\"z\":{\"const\":null}}}",
              {"{\"kind\":\"celsius\",\"n\":0.5,\"z\":null}", NULL},
              {"{\"kind\":\"Celsius\"}", "$.kind: must be \"celsius\""},
              {"{\"n\":0.25}", "$.n: must be 0.5"}, {"{\"z\":false}", "$.z: must be null"});
}

/* ---- arrays ----------------------------------------------------------------------------- */

static void items_check_every_item_with_its_index(void **state) {
  (void)state;
  CHECK_CASES("{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"id\"],"
              "\"properties\":{\"id\":{\"type\":\"integer\"},\"tags\":{\"items\":{\"type\":\"string\"}}}}}",
              {"[]", NULL}, {"[{\"id\":1},{\"id\":2,\"tags\":[\"a\",\"b\"]}]", NULL},
              {"[{\"id\":1},{\"id\":\"2\"}]", "$[1].id: must be an integer"},
              {"[{\"id\":1},{}]", "$[1].id: required property missing"},
              {"[{\"id\":1,\"tags\":[\"a\",7]}]", "$[0].tags[1]: must be a string"},
              {"[1]", "$[0]: must be an object"});
}

static void min_and_max_items_bound_the_count(void **state) {
  (void)state;
  CHECK_CASES("{\"minItems\":1,\"maxItems\":2}", {"[1]", NULL}, {"[1,2]", NULL},
              {"[]", "$: must have at least 1 item"}, {"[1,2,3]", "$: must have at most 2 items"},
              {"\"abc\"", NULL});
  CHECK_CASES("{\"minItems\":2,\"maxItems\":1}", {"[1]", "$: must have at least 2 items"});
  CHECK_CASES("{\"maxItems\":0}", {"[]", NULL}, {"[[]]", "$: must have at most 0 items"});
}

/* ---- strings -------------------------------------------------------------------------- */

static void string_lengths_count_code_points(void **state) {
  (void)state;
  /* "héllo" is 5 characters in 6 bytes; "😀" is 1 in 4. */
  CHECK_CASES("{\"minLength\":2,\"maxLength\":5}", {"\"ab\"", NULL}, {"\"h\xc3\xa9llo\"", NULL},
              {"\"h\\u00e9llo\"", NULL}, {"\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"", NULL},
              {"\"a\"", "$: must be at least 2 characters long"},
              {"\"\xf0\x9f\x98\x80\"", "$: must be at least 2 characters long"},
              {"\"h\xc3\xa9llo!\"", "$: must be at most 5 characters long"}, {"7", NULL});
  CHECK_CASES("{\"maxLength\":1}", {"\"ab\"", "$: must be at most 1 character long"});
}

/* ---- numbers -------------------------------------------------------------------------- */

static void numeric_bounds_are_inclusive_or_exclusive(void **state) {
  (void)state;
  CHECK_CASES("{\"minimum\":1,\"maximum\":2.5}", {"1", NULL}, {"2.5", NULL}, {"1.7", NULL},
              {"0.999", "$: must be >= 1"}, {"2.51", "$: must be <= 2.5"}, {"\"0\"", NULL});
  CHECK_CASES("{\"exclusiveMinimum\":0,\"exclusiveMaximum\":10}", {"0.001", NULL}, {"9.99", NULL},
              {"0", "$: must be > 0"}, {"10", "$: must be < 10"}, {"-1e300", "$: must be > 0"});
  CHECK_CASES("{\"minimum\":-1e300}", {"-1e301", "$: must be >= -1e+300"});
  CHECK_CASES("{\"maximum\":0.1}", {"0.2", "$: must be <= 0.1"});
}

/* ---- combinators ------------------------------------------------------------------------- */

static void any_of_reports_all_alternatives_or_the_closest(void **state) {
  (void)state;
  /* The nullable pattern of OpenAI's strict mode. */
  CHECK_CASES("{\"properties\":{\"x\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}}}",
              {"{\"x\":\"a\"}", NULL}, {"{\"x\":null}", NULL},
              {"{\"x\":1}", "$.x: must be a string or must be null"});
  /* A value that got into an alternative is told what that one lacks. */
  CHECK_CASES("{\"properties\":{\"x\":{\"anyOf\":[{\"type\":\"null\"},"
              "{\"type\":\"object\",\"required\":[\"a\"]}]}}}",
              {"{\"x\":{\"a\":1}}", NULL}, {"{\"x\":{}}", "$.x.a: required property missing"},
              {"{\"x\":2}", "$.x: must be null or must be an object"});
  /* Equally close alternatives: the first one speaks. */
  CHECK_CASES("{\"anyOf\":[{\"required\":[\"a\"]},{\"required\":[\"b\"]}]}", {"{\"b\":1}", NULL},
              {"{}", "$.a: required property missing"});
}

static void one_of_needs_exactly_one_match(void **state) {
  (void)state;
  CHECK_CASES("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":2}]}", {"1", NULL}, {"2.5", NULL},
              {"\"s\"", NULL}, /* not a number: only "minimum" ... */
              {"3", "$: must match exactly one alternative of oneOf, but matches 1 and 2"},
              {"1.5", "$: must be an integer or must be >= 2"});
}

static void all_of_needs_every_match(void **state) {
  (void)state;
  CHECK_CASES("{\"allOf\":[{\"type\":\"integer\"},{\"minimum\":2},{\"maximum\":4}]}", {"3", NULL},
              {"3.5", "$: must be an integer"}, {"1", "$: must be >= 2"}, {"5", "$: must be <= 4"});
}

static void boolean_schemas_accept_or_refuse_everything(void **state) {
  (void)state;
  CHECK_CASES("true", {"1", NULL}, {"{\"a\":[null]}", NULL});
  CHECK_CASES("{}", {"1", NULL}, {"[]", NULL});
  CHECK_CASES("false", {"{}", "$: no value is allowed here"});
  CHECK_CASES("{\"properties\":{\"x\":false,\"y\":true},\"items\":false}", {"{\"y\":1}", NULL},
              {"[]", NULL}, {"{\"x\":1}", "$.x: no value is allowed here"},
              {"[0]", "$[0]: no value is allowed here"});
}

static void unsupported_and_unknown_keywords_are_ignored(void **state) {
  (void)state;
  CHECK_CASES("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"title\":\"t\","
              "\"description\":\"d\",\"examples\":[1],\"default\":3,\"nullable\":true,"
              "\"properties\":{\"d\":{\"type\":\"string\",\"pattern\":\"^[0-9]+$\",\"format\":\"date\"},"
              "\"e\":{}},\"x-vendor\":{\"type\":7},\"type\":\"object\"}",
              {"{\"d\":\"not digits and not a date\"}", NULL}, {"null", "$: must be an object"});
  /* "$ref" as a property name is a name, not a keyword. */
  CHECK_CASES("{\"properties\":{\"$ref\":{\"type\":\"string\"}}}", {"{\"$ref\":\"x\"}", NULL},
              {"{\"$ref\":1}", "$[\"$ref\"]: must be a string"});
}

/* ---- compile errors ------------------------------------------------------------------------ */

static void wrong_typed_keywords_fail_to_compile(void **state) {
  (void)state;
  static const struct {
    const char *schema, *want;
  } t[] = {
      {"3", "#: a schema must be an object or a boolean"},
      {"null", "#: a schema must be an object or a boolean"},
      {"{\"required\":3}", "#/required: must be an array of property names"},
      {"{\"required\":[\"a\",1]}", "#/required: must be an array of property names"},
      {"{\"type\":5}", "#/type: must be a type name or an array of type names"},
      {"{\"type\":[\"string\",1]}", "#/type: must be a type name or an array of type names"},
      {"{\"properties\":{\"a\":{\"type\":\"strin\"}}}", "#/properties/a/type: unknown type \"strin\""},
      {"{\"type\":[\"null\",\"int\"]}", "#/type: unknown type \"int\""},
      {"{\"properties\":[]}", "#/properties: must be an object of schemas"},
      {"{\"properties\":{\"a/b~\":3}}", "#/properties/a~1b~0: a schema must be an object or a boolean"},
      {"{\"enum\":\"a\"}", "#/enum: must be an array"},
      {"{\"additionalProperties\":\"no\"}", "#/additionalProperties: must be a boolean or a schema"},
      {"{\"items\":[{}]}", "#/items: must be a schema (the array form is not supported)"},
      {"{\"items\":{\"items\":1}}", "#/items/items: must be a schema (the array form is not supported)"},
      {"{\"minLength\":-1}", "#/minLength: must be a non-negative integer"},
      {"{\"maxLength\":1.5}", "#/maxLength: must be a non-negative integer"},
      {"{\"minItems\":\"1\"}", "#/minItems: must be a non-negative integer"},
      {"{\"maxItems\":null}", "#/maxItems: must be a non-negative integer"},
      {"{\"minimum\":\"0\"}", "#/minimum: must be a number"},
      {"{\"maximum\":[]}", "#/maximum: must be a number"},
      {"{\"exclusiveMinimum\":true}", "#/exclusiveMinimum: must be a number"},
      {"{\"exclusiveMaximum\":false}", "#/exclusiveMaximum: must be a number"},
      {"{\"anyOf\":[]}", "#/anyOf: must be a non-empty array of schemas"},
      {"{\"oneOf\":{}}", "#/oneOf: must be a non-empty array of schemas"},
      {"{\"allOf\":[{},{\"anyOf\":[true,2]}]}", "#/allOf/1/anyOf/1: a schema must be an object or a boolean"},
      {"{\"type\":\"string\",\"type\":\"integer\"}", "#/type: keyword given twice"},
      {"{\"properties\":{\"b\":{},\"a\":{},\"b\":{\"type\":\"string\"}}}",
       "#/properties: duplicate property \"b\""},
      {"{\"$ref\":\"#/$defs/x\"}", "#/$ref: $ref is not supported"},
      {"{\"properties\":{\"loc\":{\"$ref\":\"#/$defs/loc\"}},\"$defs\":{\"loc\":{}}}",
       "#/properties/loc/$ref: $ref is not supported"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) compile_fails(t[i].schema, AW_EINVAL, t[i].want);
}

static void invalid_schema_json_is_a_parse_error(void **state) {
  (void)state;
  compile_fails("", AW_EPARSE, "schema is not valid JSON (syntax error at offset 0)");
  compile_fails("{\"type\":}", AW_EPARSE, "schema is not valid JSON (syntax error at offset *");
  compile_fails("{} {}", AW_EPARSE, "schema is not valid JSON (unexpected text after the value at offset 3)");
  compile_fails("{\"enum\":[\"a\\u0000b\"]}", AW_EPARSE,
                "schema is not valid JSON (\\u0000 in a string at offset 11)");
  jschema *s = (jschema *)1;
  assert_int_equal(jschema_compile(NULL, 0, &s, NULL, 0), AW_EPARSE);
  assert_null(s);
  assert_int_equal(jschema_compile("{}", 2, NULL, NULL, 0), AW_EINVAL);
}

static void schema_text_need_not_be_nul_terminated(void **state) {
  (void)state;
  const char text[] = "{\"type\":\"integer\"}garbage";
  jschema *s = NULL;
  assert_int_equal(jschema_compile(text, strlen("{\"type\":\"integer\"}"), &s, NULL, 0), AW_OK);
  rejects(s, "\"x\"", "$: must be an integer");
  jschema_free(s);
  jschema_free(NULL);
}

/* ---- instance text ----------------------------------------------------------------------- */

static void instance_text_must_be_one_strict_json_value(void **state) {
  (void)state;
  jschema *s = compile("{\"type\":\"object\"}");
  static const struct {
    const char *json, *want;
  } t[] = {
      {"", "arguments are not valid JSON (syntax error at offset 0)"},
      {"{\"location\":", "arguments are not valid JSON (syntax error at offset *"},
      {"{'a':1}", "arguments are not valid JSON (syntax error at offset *"},
      {"{\"a\":tru}", "arguments are not valid JSON (syntax error at offset *"},
      {"{} x", "arguments are not valid JSON (unexpected text after the value at offset 3)"},
      {"{}}", "arguments are not valid JSON (unexpected text after the value at offset 2)"},
      {"{\"a\":1}{\"b\":2}", "arguments are not valid JSON (unexpected text after the value at offset 7)"},
      {"{\"a\":\"c\\u0000x\"}", "arguments are not valid JSON (\\u0000 in a string at offset 7)"},
      {"{\"a\":\"\xff\"}", "arguments are not valid JSON (invalid UTF-8 at offset 6)"},
      {"{\"a\":\"\xed\xa0\x80\"}", "arguments are not valid JSON (invalid UTF-8 at offset 6)"},
      {"{\"a\":\"x\ty\"}", "arguments are not valid JSON (control character at offset 7)"},
      {"\x01{}", "arguments are not valid JSON (control character at offset 0)"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char err[JSCHEMA_ERR_MAX];
    int rc = jschema_validate_text(s, t[i].json, strlen(t[i].json), err, sizeof err);
    if (rc != AW_EPARSE || !message_is(err, t[i].want))
      fail_msg("case %zu: got %s \"%s\", want EPARSE \"%s\"", i, aw_strerror(rc), err, t[i].want);
  }
  /* Whitespace around the value is fine; an escaped backslash before "u0000" is text. */
  accepts(s, " \t\r\n{\"a\":\"x\\\\u0000\"} \n");
  /* Only len bytes are read. */
  const char buf[] = "{\"a\":1}{\"b\":2}";
  char err[JSCHEMA_ERR_MAX];
  assert_int_equal(jschema_validate_text(s, buf, 7, err, sizeof err), AW_OK);
  assert_int_equal(jschema_validate_text(s, buf, 6, err, sizeof err), AW_EPARSE);
  /* An embedded NUL byte is not whitespace. */
  assert_int_equal(jschema_validate_text(s, "{}\0", 3, err, sizeof err), AW_EPARSE);
  assert_int_equal(jschema_validate_text(s, NULL, 0, err, sizeof err), AW_EPARSE);
  assert_int_equal(jschema_validate_text(NULL, "{}", 2, err, sizeof err), AW_EINVAL);
  jschema_free(s);
}

static void validate_takes_a_parsed_tree_and_clears_errstr(void **state) {
  (void)state;
  jschema *s = compile("{\"required\":[\"a\"]}");
  cJSON *v = cJSON_Parse("{\"a\":1}");
  char err[JSCHEMA_ERR_MAX] = "stale";
  assert_int_equal(jschema_validate(s, v, err, sizeof err), AW_OK);
  assert_string_equal(err, "");
  cJSON_DeleteItemFromObject(v, "a");
  assert_int_equal(jschema_validate(s, v, err, sizeof err), AW_EINVAL);
  assert_string_equal(err, "$.a: required property missing");
  assert_int_equal(jschema_validate(s, v, NULL, 0), AW_EINVAL);
  assert_int_equal(jschema_validate(NULL, v, err, sizeof err), AW_EINVAL);
  assert_int_equal(jschema_validate(s, NULL, err, sizeof err), AW_EINVAL);
  cJSON_Delete(v);
  jschema_free(s);

  /* A tree built by hand may hold what JSON text cannot: invalid UTF-8 in a
   * name is shown as U+FFFD, so the message stays valid UTF-8. */
  s = compile("{\"additionalProperties\":false}");
  v = cJSON_CreateObject();
  assert_non_null(cJSON_AddNumberToObject(v, "\xff\x80k", 1));
  assert_int_equal(jschema_validate(s, v, err, sizeof err), AW_EINVAL);
  assert_string_equal(err, "$: additional property \"\xef\xbf\xbd\xef\xbf\xbdk\" is not allowed");
  cJSON_Delete(v);
  jschema_free(s);
}

/* ---- bounds ------------------------------------------------------------------------------ */

static void schema_depth_is_bounded_at_compile(void **state) {
  (void)state;
  char *ok = nested_items_schema(JSCHEMA_MAX_DEPTH, "{\"type\":\"integer\"}");
  jschema *s = compile(ok);
  /* The deepest subschema still validates: 31 arrays deep, then an integer. */
  char *good = nested_arrays(JSCHEMA_MAX_DEPTH - 1, "1");
  char *bad = nested_arrays(JSCHEMA_MAX_DEPTH - 1, "\"1\"");
  accepts(s, good);
  char want[JSCHEMA_ERR_MAX] = "$";
  for (int i = 0; i < JSCHEMA_MAX_DEPTH - 1; i++) strcat(want, "[0]");
  strcat(want, ": must be an integer");
  rejects(s, bad, want);
  jschema_free(s);
  free(ok);
  free(good);
  free(bad);

  char *deep = nested_items_schema(JSCHEMA_MAX_DEPTH + 1, "{}");
  jschema *d = (jschema *)1;
  char err[JSCHEMA_ERR_MAX];
  assert_int_equal(jschema_compile(deep, strlen(deep), &d, err, sizeof err), AW_EINVAL);
  assert_null(d);
  assert_non_null(strstr(err, ": schemas nest too deeply (the limit is 32)"));
  assert_memory_equal(err, "#...", 4);
  free(deep);
  /* Far deeper than the limit (cJSON itself stops at 1000): refused, no crash. */
  deep = nested_items_schema(990, "{}");
  assert_int_equal(jschema_compile(deep, strlen(deep), &d, err, sizeof err), AW_EINVAL);
  free(deep);
}

static void instance_depth_is_bounded_at_validation(void **state) {
  (void)state;
  const char *schemas[] = {"{}", "{\"const\":1}", "{\"enum\":[[[1]]]}", "{\"items\":{\"items\":true}}"};
  for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
    jschema *s = compile(schemas[i]);
    char *ok = nested_arrays(JSCHEMA_MAX_DEPTH, "");
    char *over = nested_arrays(JSCHEMA_MAX_DEPTH + 1, "");
    char *far = nested_arrays(999, "");
    char err[JSCHEMA_ERR_MAX];
    int rc = jschema_validate_text(s, ok, strlen(ok), err, sizeof err);
    /* Within the limit the schema decides (const/enum reject, the others accept). */
    assert_int_equal(rc, i == 1 || i == 2 ? AW_EINVAL : AW_OK);
    if (rc) assert_memory_equal(err, "$: must be ", 11);
    /* 32 steps do not fit in a path: it keeps its end, where the problem is. */
    char want[JSCHEMA_ERR_MAX] = "$...";
    for (int k = 0; k < 30; k++) strcat(want, "[0]");
    strcat(want, ": nested too deeply (the limit is 32 arrays or objects)");
    rejects(s, over, want);
    assert_int_equal(jschema_validate_text(s, far, strlen(far), err, sizeof err), AW_EINVAL);
    assert_non_null(strstr(err, "nested too deeply"));
    free(ok);
    free(over);
    free(far);
    jschema_free(s);
  }
  /* Objects count too. */
  jschema *s = compile("true");
  char obj[40 * 8 + 1] = "";
  for (int i = 0; i < 33; i++) strcat(obj, "{\"k\":");
  strcat(obj, "1");
  for (int i = 0; i < 33; i++) strcat(obj, "}");
  char err[JSCHEMA_ERR_MAX];
  assert_int_equal(jschema_validate_text(s, obj, strlen(obj), err, sizeof err), AW_EINVAL);
  assert_non_null(strstr(err, ".k.k: nested too deeply"));
  jschema_free(s);
}

static void messages_are_bounded_escaped_utf8(void **state) {
  (void)state;
  jschema *s = compile("{\"additionalProperties\":false,\"properties\":{\"n\":{\"type\":\"string\"}}}");
  /* A 600-byte property name of two-byte characters. */
  char json[1024] = "{\"";
  for (int i = 0; i < 300; i++) strcat(json, "\xc3\xa9");
  strcat(json, "\":1}");
  char err[JSCHEMA_ERR_MAX];
  assert_int_equal(jschema_validate_text(s, json, strlen(json), err, sizeof err), AW_EINVAL);
  assert_true(strlen(err) < JSCHEMA_ERR_MAX);
  assert_true(mpu_utf8_valid(err, strlen(err)));
  assert_memory_equal(err, "$: additional property \"\xc3\xa9", 26);
  assert_string_equal(err + strlen(err) - 3, "...");

  /* The same name as a path segment is shortened inside its brackets. */
  jschema *t = compile("{\"additionalProperties\":{\"type\":\"string\"}}");
  assert_int_equal(jschema_validate_text(t, json, strlen(json), err, sizeof err), AW_EINVAL);
  assert_true(mpu_utf8_valid(err, strlen(err)));
  assert_memory_equal(err, "$[\"\xc3\xa9", 5);
  assert_non_null(strstr(err, "...\"]: must be a string"));
  jschema_free(t);

  /* Control characters and quotes in names are escaped. */
  rejects(s, "{\"a\\tb\\\"\":1}", "$: additional property \"a\\u0009b\\\"\" is not allowed");

  /* A small buffer gets a prefix cut at a character boundary, ending "...". */
  const char *nj = "{\"n\":1}";
  char small[8];
  assert_int_equal(jschema_validate_text(s, nj, strlen(nj), small, sizeof small), AW_EINVAL);
  assert_string_equal(small, "$.n:...");
  char tiny[3];
  assert_int_equal(jschema_validate_text(s, nj, strlen(nj), tiny, sizeof tiny), AW_EINVAL);
  assert_string_equal(tiny, "$.");
  assert_int_equal(jschema_validate_text(s, json, strlen(json), small, sizeof small), AW_EINVAL);
  assert_true(mpu_utf8_valid(small, strlen(small)));
  /* "$: add" fits, so the cut is plain; for a cut inside "é" see below. */
  assert_string_equal(small, "$: a...");
  assert_int_equal(jschema_validate_text(s, nj, strlen(nj), NULL, 0), AW_EINVAL);
  jschema_free(s);

  /* A cut that would split a character backs off to its start. */
  jschema *u = compile("{\"properties\":{\"\xc3\xa9\":{\"type\":\"string\"}}}");
  char eight[8];
  assert_int_equal(jschema_validate_text(u, "{\"\xc3\xa9\":1}", 8, eight, sizeof eight), AW_EINVAL);
  /* Full text: "$[\"é\"]: must be a string"; 4 bytes fit before "...", the 4th would split é. */
  assert_string_equal(eight, "$[\"...");
  jschema_free(u);
}

/* Long enum lists are cut, not overflowed. */
static void long_enum_lists_are_cut(void **state) {
  (void)state;
  char schema[4096] = "{\"enum\":[";
  for (int i = 0; i < 100; i++) {
    char v[32];
    snprintf(v, sizeof v, "%s\"value-%03d\"", i ? "," : "", i);
    strcat(schema, v);
  }
  strcat(schema, "]}");
  jschema *s = compile(schema);
  char err[JSCHEMA_ERR_MAX];
  assert_int_equal(jschema_validate_text(s, "\"nope\"", 6, err, sizeof err), AW_EINVAL);
  assert_memory_equal(err, "$: must be one of \"value-000\", \"value-001\"", 41);
  assert_string_equal(err + strlen(err) - 3, "...");
  assert_true(strlen(err) <= JSCHEMA_ERR_MAX - 1);
  accepts(s, "\"value-099\"");
  jschema_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(get_weather_example_checks_required_location),
      cmocka_unit_test(type_accepts_its_kind_and_names_it_otherwise),
      cmocka_unit_test(integer_is_a_number_without_fraction),
      cmocka_unit_test(type_list_accepts_any_listed_kind),
      cmocka_unit_test(properties_check_each_member_with_its_path),
      cmocka_unit_test(required_names_the_missing_property),
      cmocka_unit_test(additional_properties_false_refuses_unknown_members),
      cmocka_unit_test(additional_properties_schema_checks_unknown_members),
      cmocka_unit_test(enum_lists_the_allowed_values),
      cmocka_unit_test(const_requires_that_one_value),
      cmocka_unit_test(items_check_every_item_with_its_index),
      cmocka_unit_test(min_and_max_items_bound_the_count),
      cmocka_unit_test(string_lengths_count_code_points),
      cmocka_unit_test(numeric_bounds_are_inclusive_or_exclusive),
      cmocka_unit_test(any_of_reports_all_alternatives_or_the_closest),
      cmocka_unit_test(one_of_needs_exactly_one_match),
      cmocka_unit_test(all_of_needs_every_match),
      cmocka_unit_test(boolean_schemas_accept_or_refuse_everything),
      cmocka_unit_test(unsupported_and_unknown_keywords_are_ignored),
      cmocka_unit_test(wrong_typed_keywords_fail_to_compile),
      cmocka_unit_test(invalid_schema_json_is_a_parse_error),
      cmocka_unit_test(schema_text_need_not_be_nul_terminated),
      cmocka_unit_test(instance_text_must_be_one_strict_json_value),
      cmocka_unit_test(validate_takes_a_parsed_tree_and_clears_errstr),
      cmocka_unit_test(schema_depth_is_bounded_at_compile),
      cmocka_unit_test(instance_depth_is_bounded_at_validation),
      cmocka_unit_test(messages_are_bounded_escaped_utf8),
      cmocka_unit_test(long_enum_lists_are_cut),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
