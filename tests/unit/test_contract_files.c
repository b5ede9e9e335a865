/* test_contract_files.c -- the files of the Kafka contract
 * (common/contract/contract_files.c, contract.c, contract_encode.c): an
 * image_file part's inline bytes, a message's attachments and
 * include_steps in the request; generated files, steps and container
 * citations in the response; the examples of schemas/examples that carry
 * them.
 *
 * Needs: nothing (no broker, no network).  Reads schemas/examples from the
 * source tree (mp_fixture.h).
 *
 * Requests are written as JSON views (mpfx_from_json_bin: a "data" string
 * is base64 and becomes bin, as contract_to_json shows it) so that each
 * case reads as the event a producer would send; a str `data` is packed
 * with mpfx_from_json, which keeps strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "mp_fixture.h"

/* ---- helpers ------------------------------------------------------------------- */

typedef struct decoded {
  int rc;
  contract_request *r;
  const char *code;
  char ev[129], conv[257], err[256];
} decoded;

static void decode_bytes(const void *p, size_t n, const contract_limits *lim, decoded *d) {
  memset(d, 0, sizeof *d);
  d->rc = contract_request_decode(p, n, lim, &d->r, &d->code, d->ev, sizeof d->ev, d->conv, sizeof d->conv, d->err,
                                  sizeof d->err);
}

/* bin: 1 -> "data" strings are base64 bin; 0 -> strings stay strings. */
static void decode_json(const char *json, int bin, const contract_limits *lim, decoded *d) {
  msgpack_sbuffer sb;
  if (bin) mpfx_from_json_bin(json, &sb);
  else mpfx_from_json(json, &sb);
  decode_bytes(sb.data, sb.size, lim, d);
  msgpack_sbuffer_destroy(&sb);
}

static contract_request *expect_ok_lim(const char *json, const contract_limits *lim) {
  decoded d;
  decode_json(json, 1, lim, &d);
  if (d.rc) fail_msg("decode failed: %d %s %s (%.300s)", d.rc, d.code, d.err, json);
  assert_non_null(d.r);
  return d.r;
}

static contract_request *expect_ok(const char *json) { return expect_ok_lim(json, NULL); }

static void check_reject(const decoded *d, int rc, const char *code, const char *errpart, const char *what) {
  if (d->rc != rc || !d->code || strcmp(d->code, code) || !strstr(d->err, errpart) || strcmp(d->ev, "e1") ||
      strcmp(d->conv, "c1"))
    fail_msg("%.200s: want rc=%d %s '%s'; got rc=%d %s '%s' ids '%s'/'%s'", what, rc, code, errpart, d->rc,
             d->code ? d->code : "(null)", d->err, d->ev, d->conv);
  assert_null(d->r);
}

static void expect_reject_lim(const char *json, const contract_limits *lim, int rc, const char *code,
                              const char *errpart) {
  decoded d;
  decode_json(json, 1, lim, &d);
  check_reject(&d, rc, code, errpart, json);
}

static void expect_reject(const char *json, int rc, const char *code, const char *errpart) {
  expect_reject_lim(json, NULL, rc, code, errpart);
}

/* printf into a malloc'd string the test frees. */
static char *fmt(const char *f, ...) AW_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  assert_true(vasprintf(&s, f, ap) >= 0);
  va_end(ap);
  return s;
}

/* n bytes of standard padded base64 encoding n bytes of 'A'..'A' patterns:
 * "QUFB" is "AAA"; malloc'd.  n must be a multiple of 3 or end padded. */
static char *b64_of_n(size_t n) {
  size_t full = n / 3, rest = n % 3;
  char *s = malloc(4 * (full + 1) + 1);
  assert_non_null(s);
  for (size_t i = 0; i < full; i++) memcpy(s + 4 * i, "QUFB", 4);
  char *t = s + 4 * full;
  if (rest == 1) memcpy(t, "QQ==", 4), t += 4;
  if (rest == 2) memcpy(t, "QUE=", 4), t += 4;
  *t = '\0';
  return s;
}

#define HEAD "\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"assistant\":\"a\""
#define PNG_B64 "iVBORw0KGgo=" /* the 8 bytes of the PNG signature */
#define PNG_SIG "\x89PNG\r\n\x1a\n"

static cJSON *json_view(const buf *b) {
  char *s = mpfx_json_view(b->data, b->len, NULL);
  cJSON *c = cJSON_Parse(s);
  if (!c) fail_msg("JSON view does not parse: %s", s);
  free(s);
  return c;
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = jget(o, k);
  if (!cJSON_IsString(v)) fail_msg("%s is not a string", k);
  return v->valuestring;
}

/* ---- image parts ---------------------------------------------------------------- */

static void inline_image_decodes_its_bytes_type_and_name(void **state) {
  (void)state;
  contract_request *r = expect_ok(
      "{" HEAD ",\"content\":[{\"type\":\"text\",\"text\":\"look\"},"
      "{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"IMAGE/PNG; q=1\","
      "\"filename\":\"parcel photo.png\",\"detail\":\"low\"},"
      "{\"type\":\"image_file\",\"file_id\":\"file-1\"},"
      "{\"type\":\"image_url\",\"url\":\"https://x/y.jpg\"}]}");
  assert_int_equal(r->nparts, 4);
  const contract_part *p = &r->parts[1];
  assert_int_equal(p->type, CONTRACT_PART_IMAGE_FILE);
  assert_null(p->text); /* inline: no file id */
  assert_int_equal(p->text_len, 0);
  assert_int_equal(p->data_len, 8);
  assert_memory_equal(p->data, PNG_SIG, 8);
  assert_string_equal(p->media_type, "image/png"); /* the list's spelling */
  assert_string_equal(p->filename, "parcel photo.png");
  assert_string_equal(p->detail, "low");
  /* By file id: no inline fields. */
  assert_string_equal(r->parts[2].text, "file-1");
  assert_null(r->parts[2].data);
  assert_null(r->parts[2].media_type);
  assert_null(r->parts[2].filename);
  /* Other parts have none either, and nothing is attached. */
  assert_null(r->parts[0].data);
  assert_null(r->parts[3].data);
  assert_int_equal(r->nattachments, 0);
  assert_null(r->attachments);
  assert_int_equal(r->include_steps, 0);
  /* Everything lives in the request's one allocation. */
  const char *lo = (const char *)r, *hi = lo + malloc_usable_size(r);
  assert_true((const char *)p->data >= lo && (const char *)p->data + p->data_len <= hi);
  assert_true(p->filename >= lo && p->filename < hi);
  contract_request_free(r);

  /* Every image type, without a name; the name is optional. */
  const char *types[] = {"image/png", "image/jpeg", "image/gif", "image/webp"};
  for (size_t i = 0; i < 4; i++) {
    char *j = fmt("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"%s\"}]}",
                  types[i]);
    r = expect_ok(j);
    assert_string_equal(r->parts[0].media_type, types[i]);
    assert_null(r->parts[0].filename);
    assert_null(r->parts[0].detail);
    contract_request_free(r);
    free(j);
  }
}

static void image_file_needs_exactly_one_of_file_id_and_data(void **state) {
  (void)state;
  static const struct {
    const char *part, *code, *err;
  } cases[] = {
      {"{\"type\":\"image_file\"}", "missing_field", "content[0].file_id (or content[0].data)"},
      {"{\"type\":\"image_file\",\"file_id\":null,\"data\":null}", "missing_field", "content[0].file_id"},
      {"{\"type\":\"image_file\",\"file_id\":\"file-1\",\"data\":\"" PNG_B64 "\",\"media_type\":\"image/png\"}",
       "invalid_field", "content[0]: exactly one of file_id and data"},
      {"{\"type\":\"image_file\",\"file_id\":\"file-1\",\"media_type\":\"image/png\"}", "invalid_field",
       "content[0].media_type is only for inline data"},
      {"{\"type\":\"image_file\",\"file_id\":\"file-1\",\"filename\":\"a.png\"}", "invalid_field",
       "content[0].filename is only for inline data"},
      {"{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"image/png\",\"data\":\"" PNG_B64 "\"}",
       "invalid_field", "duplicate key in content[0]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *j = fmt("{" HEAD ",\"content\":[%s]}", cases[i].part);
    expect_reject(j, AW_EINVAL, cases[i].code, cases[i].err);
    free(j);
  }
  /* data, media_type and filename of other part types are unknown keys,
   * ignored as before. */
  contract_request *r = expect_ok("{" HEAD ",\"content\":[{\"type\":\"text\",\"text\":\"x\",\"data\":\"" PNG_B64
                                  "\",\"media_type\":\"image/bmp\"}]}");
  assert_null(r->parts[0].data);
  contract_request_free(r);
}

static void inline_data_must_be_non_empty_bin(void **state) {
  (void)state;
  decoded d;
  /* A base64 string is not decoded: it is a str, not bin. */
  decode_json("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"image/png\"}]}",
              0, NULL, &d);
  check_reject(&d, AW_EINVAL, "invalid_field", "content[0].data must be binary (msgpack bin), not a string", "str");
  decode_json("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":5,\"media_type\":\"image/png\"}]}", 0, NULL,
              &d);
  check_reject(&d, AW_EINVAL, "invalid_field", "content[0].data must be binary", "int");
  expect_reject("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"\",\"media_type\":\"image/png\"}]}",
                AW_EINVAL, "invalid_field", "content[0].data must not be empty");
  decode_json("{" HEAD ",\"attachments\":[{\"data\":\"x\",\"filename\":\"a.txt\",\"media_type\":\"text/plain\","
              "\"tools\":[\"file_search\"]}],\"content\":\"hi\"}",
              0, NULL, &d);
  check_reject(&d, AW_EINVAL, "invalid_field", "attachments[0].data must be binary (msgpack bin), not a string",
               "attachment str");
}

static void inline_image_media_type_must_be_an_image_type(void **state) {
  (void)state;
  expect_reject("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\"}]}", AW_EINVAL,
                "missing_field", "content[0].media_type");
  expect_reject("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":7}]}",
                AW_EINVAL, "invalid_field", "content[0].media_type must be a string");
  const char *bad[] = {"image/bmp", "text/plain", "image/pngx", "image/", "png", "image/svg+xml"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *j = fmt("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"%s\"}]}",
                  bad[i]);
    char *want = fmt("content[0].media_type: %s is not supported (allowed: image/png, image/jpeg, image/gif, "
                     "image/webp)",
                     bad[i]);
    expect_reject(j, AW_EINVAL, "unsupported_media_type", want);
    free(want);
    free(j);
  }
  /* The echo of a long type is bounded; the message still names the list. */
  char *j = fmt("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"image/%0200d\"}]}",
                0);
  decoded d;
  decode_json(j, 1, NULL, &d);
  check_reject(&d, AW_EINVAL, "unsupported_media_type", "(allowed: image/png", "long type");
  assert_true(strlen(d.err) < 200);
  free(j);
}

static void file_names_must_be_plain_names(void **state) {
  (void)state;
  char name255[256];
  memset(name255, 'n', 255);
  memcpy(name255 + 251, ".png", 4);
  name255[255] = '\0';
  const char *bad[] = {"a/b.png", "..\\\\b.png", "", "..", ".", "a\\u0001.png", "a\\n.png", "a\\u007f.png", NULL};
  for (int which = 0; which < 2; which++) {
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      char n256[260];
      if (!bad[i]) snprintf(n256, sizeof n256, "x%s", name255); /* 256 bytes */
      const char *nm = bad[i] ? bad[i] : n256;
      char *j = which == 0 ? fmt("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64
                                 "\",\"media_type\":\"image/png\",\"filename\":\"%s\"}]}",
                                 nm)
                           : fmt("{" HEAD ",\"content\":\"hi\",\"attachments\":[{\"data\":\"" PNG_B64
                                 "\",\"media_type\":\"text/plain\",\"filename\":\"%s\",\"tools\":[\"file_search\"]}]}",
                                 nm);
      expect_reject(j, AW_EINVAL, "invalid_field", which == 0 ? "content[0].filename" : "attachments[0].filename");
      free(j);
    }
    /* 255 bytes, dots and spaces inside, UTF-8: a name. */
    const char *good[] = {name255, "a..b.png", ".hidden.png", "Fran\xC3\xA7ois report.png"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
      char *j = which == 0 ? fmt("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64
                                 "\",\"media_type\":\"image/png\",\"filename\":\"%s\"}]}",
                                 good[i])
                           : fmt("{" HEAD ",\"content\":\"hi\",\"attachments\":[{\"data\":\"" PNG_B64
                                 "\",\"media_type\":\"text/plain\",\"filename\":\"%s\",\"tools\":[\"file_search\"]}]}",
                                 good[i]);
      contract_request *r = expect_ok(j);
      assert_string_equal(which == 0 ? r->parts[0].filename : r->attachments[0].filename, good[i]);
      contract_request_free(r);
      free(j);
    }
  }
}

/* max_inline_bytes: exactly the limit passes, one byte more is
 * file_too_large naming the field, its size and the limit; for an image and
 * for an attachment; with a small configured limit and with the default. */
static void inline_bytes_limit_is_exact(void **state) {
  (void)state;
  contract_limits lim;
  contract_limits_default(&lim);
  assert_int_equal(lim.max_inline_bytes, 512 * 1024);
  assert_int_equal(lim.max_attachments, 10);
  const size_t limits[] = {7, 512 * 1024};
  for (size_t li = 0; li < 2; li++) {
    lim.max_inline_bytes = limits[li];
    for (size_t extra = 0; extra < 2; extra++) {
      size_t n = limits[li] + extra;
      char *b64 = b64_of_n(n);
      char *img = fmt("{" HEAD ",\"content\":[{\"type\":\"image_file\",\"data\":\"%s\",\"media_type\":\"image/gif\"}]}", b64);
      char *att = fmt("{" HEAD ",\"content\":\"hi\",\"attachments\":[{\"file_id\":\"file-1\",\"tools\":[\"file_search\"]},"
                      "{\"data\":\"%s\",\"filename\":\"a.csv\",\"media_type\":\"text/csv\",\"tools\":[\"code_interpreter\"]}]}",
                      b64);
      if (!extra) {
        contract_request *r = expect_ok_lim(img, &lim);
        assert_int_equal(r->parts[0].data_len, n);
        assert_memory_equal(r->parts[0].data, "AAAAAAA", 7);
        contract_request_free(r);
        r = expect_ok_lim(att, &lim);
        assert_int_equal(r->attachments[1].data_len, n);
        contract_request_free(r);
      } else {
        char *want = fmt("content[0].data is %zu bytes, limit %zu", n, limits[li]);
        expect_reject_lim(img, &lim, AW_ETOOBIG, "file_too_large", want);
        free(want);
        want = fmt("attachments[1].data is %zu bytes, limit %zu", n, limits[li]);
        expect_reject_lim(att, &lim, AW_ETOOBIG, "file_too_large", want);
        free(want);
      }
      free(att);
      free(img);
      free(b64);
    }
  }
}

/* ---- attachments -------------------------------------------------------------- */

static void attachments_decode_by_id_and_inline_with_their_tools(void **state) {
  (void)state;
  contract_request *r = expect_ok(
      "{" HEAD ",\"content\":\"chart it\",\"attachments\":["
      "{\"file_id\":\"file-doc\",\"tools\":[\"file_search\"]},"
      "{\"data\":\"cmVnaW9uLHNhbGVzCg==\",\"filename\":\"sales.csv\",\"media_type\":\"Text/CSV; charset=utf-8\","
      "\"tools\":[\"code_interpreter\",\"file_search\"],\"future\":{\"x\":1}},"
      "{\"file_id\":\"file-2\",\"tools\":[\"code_interpreter\"],\"filename\":null}]}");
  assert_int_equal(r->nattachments, 3);
  const contract_attachment *a = r->attachments;
  assert_string_equal(a[0].file_id, "file-doc");
  assert_null(a[0].data);
  assert_null(a[0].filename);
  assert_null(a[0].media_type);
  assert_int_equal(a[0].tools, CONTRACT_ATT_FILE_SEARCH);
  assert_null(a[1].file_id);
  assert_int_equal(a[1].data_len, 13);
  assert_memory_equal(a[1].data, "region,sales\n", 13);
  assert_string_equal(a[1].filename, "sales.csv");
  assert_string_equal(a[1].media_type, "Text/CSV; charset=utf-8"); /* as given: the upload's type */
  assert_int_equal(a[1].tools, CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER);
  assert_int_equal(a[2].tools, CONTRACT_ATT_CODE_INTERPRETER);
  const char *lo = (const char *)r, *hi = lo + malloc_usable_size(r);
  assert_true((const char *)a >= lo && (const char *)a[1].data + 13 <= hi && a[1].media_type < hi);
  contract_request_free(r);
  /* Empty and nil: none. */
  r = expect_ok("{" HEAD ",\"content\":\"x\",\"attachments\":[]}");
  assert_int_equal(r->nattachments, 0);
  assert_null(r->attachments);
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"content\":\"x\",\"attachments\":null}");
  assert_int_equal(r->nattachments, 0);
  contract_request_free(r);
}

static void attachments_reject_each_bad_field_by_name(void **state) {
  (void)state;
  static const struct {
    const char *att, *code, *err;
  } cases[] = {
      {"{\"file_id\":\"f\"}", "invalid_field", "field attachments must be an array"},
      {"[5]", "invalid_field", "attachments[0] must be a map"},
      {"[{\"file_id\":\"f\",\"tools\":[\"file_search\"]},{}]", "missing_field", "attachments[1].file_id (or attachments[1].data)"},
      {"[{\"file_id\":\"f\",\"data\":\"" PNG_B64 "\",\"tools\":[\"file_search\"]}]", "invalid_field",
       "attachments[0]: exactly one of file_id and data"},
      {"[{\"file_id\":\"\",\"tools\":[\"file_search\"]}]", "invalid_field", "attachments[0].file_id must not be empty"},
      {"[{\"file_id\":7,\"tools\":[\"file_search\"]}]", "invalid_field", "attachments[0].file_id must be a string"},
      {"[{\"file_id\":\"f\",\"filename\":\"a.txt\",\"tools\":[\"file_search\"]}]", "invalid_field",
       "attachments[0].filename is only for inline data"},
      {"[{\"file_id\":\"f\",\"media_type\":\"text/plain\",\"tools\":[\"file_search\"]}]", "invalid_field",
       "attachments[0].media_type is only for inline data"},
      {"[{\"data\":\"" PNG_B64 "\",\"media_type\":\"text/plain\",\"tools\":[\"file_search\"]}]", "missing_field",
       "attachments[0].filename"},
      {"[{\"data\":\"" PNG_B64 "\",\"filename\":\"a.txt\",\"tools\":[\"file_search\"]}]", "missing_field",
       "attachments[0].media_type"},
      {"[{\"data\":\"" PNG_B64 "\",\"filename\":\"a.zip\",\"media_type\":\"application/zip\",\"tools\":[\"file_search\"]}]",
       "unsupported_media_type", "attachments[0].media_type: application/zip is not supported"},
      {"[{\"data\":\"" PNG_B64 "\",\"filename\":\"a.png\",\"media_type\":\"image/png\",\"tools\":[\"code_interpreter\"]}]",
       "unsupported_media_type", "attachments[0].media_type: image/png is not supported"},
      {"[{\"file_id\":\"f\"}]", "missing_field", "attachments[0].tools"},
      {"[{\"file_id\":\"f\",\"tools\":null}]", "missing_field", "attachments[0].tools"},
      {"[{\"file_id\":\"f\",\"tools\":[]}]", "invalid_field", "attachments[0].tools must be an array of 1..2"},
      {"[{\"file_id\":\"f\",\"tools\":\"file_search\"}]", "invalid_field", "attachments[0].tools must be an array"},
      {"[{\"file_id\":\"f\",\"tools\":[\"file_search\",\"code_interpreter\",\"file_search\"]}]", "invalid_field",
       "attachments[0].tools must be an array of 1..2"},
      {"[{\"file_id\":\"f\",\"tools\":[\"web_search\"]}]", "invalid_field",
       "attachments[0].tools[0] must be \"file_search\" or \"code_interpreter\""},
      {"[{\"file_id\":\"f\",\"tools\":[\"file_search\",7]}]", "invalid_field", "attachments[0].tools[1] must be"},
      {"[{\"file_id\":\"f\",\"tools\":[\"code_interpreter\",\"code_interpreter\"]}]", "invalid_field",
       "attachments[0].tools names a tool twice"},
      {"[{\"file_id\":\"f\",\"tools\":[\"file_search\"],\"file_id\":\"g\"}]", "invalid_field",
       "duplicate key in attachments[0]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *j = fmt("{" HEAD ",\"content\":\"hi\",\"attachments\":%s}", cases[i].att);
    expect_reject(j, AW_EINVAL, cases[i].code, cases[i].err);
    free(j);
  }
}

/* max_attachments: exactly the limit passes, one more is
 * too_many_attachments; with a small configured limit and the default 10. */
static void attachment_count_limit_is_exact(void **state) {
  (void)state;
  contract_limits lim;
  contract_limits_default(&lim);
  const size_t limits[] = {2, 10};
  for (size_t li = 0; li < 2; li++) {
    lim.max_attachments = limits[li];
    for (size_t extra = 0; extra < 2; extra++) {
      size_t n = limits[li] + extra;
      char list[2048] = "";
      size_t off = 0;
      for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s{\"file_id\":\"file-%zu\",\"tools\":[\"file_search\"]}",
                                i ? "," : "", i);
      char *j = fmt("{" HEAD ",\"content\":\"hi\",\"attachments\":[%s]}", list);
      if (!extra) {
        contract_request *r = expect_ok_lim(j, &lim);
        assert_int_equal(r->nattachments, n);
        char last[32];
        snprintf(last, sizeof last, "file-%zu", n - 1);
        assert_string_equal(r->attachments[n - 1].file_id, last);
        contract_request_free(r);
      } else {
        char *want = fmt("attachments has %zu files, limit %zu", n, limits[li]);
        expect_reject_lim(j, &lim, AW_ETOOBIG, "too_many_attachments", want);
        free(want);
      }
      free(j);
    }
  }
}

static void attachment_types_are_the_listed_ones_in_any_case(void **state) {
  (void)state;
  const char *ok[] = {
      "text/plain", "text/markdown", "text/csv", "text/html", "text/x-python", "text/x-c", "text/x-java",
      "text/javascript", "application/json", "application/pdf", "application/msword",
      "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
      "application/vnd.openxmlformats-officedocument.presentationml.presentation",
      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/xml", "text/xml",
      /* case and parameters */
      "TEXT/CSV", "Application/PDF", "text/plain; charset=utf-8", "text/plain;charset=utf-8", " text/csv ",
      "text/markdown ; variant=GFM", "text/plain;",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (!contract_attachment_type_ok(ok[i])) fail_msg("%s refused", ok[i]);
  const char *bad[] = {"",          "text",       "text/",          "text/csvx",     "xtext/csv",        "image/png",
                       "text/x-cc", "text/plain x", "application/zip", "application/octet-stream", ";text/plain",
                       "text/*",    "*/*"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (contract_attachment_type_ok(bad[i])) fail_msg("%s accepted", bad[i]);
  assert_false(contract_attachment_type_ok(NULL));
}

/* attachments and include_steps belong to messages; include_steps is a bool. */
static void attachments_and_include_steps_belong_to_messages(void **state) {
  (void)state;
  contract_request *r = expect_ok("{" HEAD ",\"content\":\"x\",\"include_steps\":true}");
  assert_int_equal(r->include_steps, 1);
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"content\":\"x\",\"include_steps\":false}");
  assert_int_equal(r->include_steps, 0);
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"content\":\"x\",\"include_steps\":null}");
  assert_int_equal(r->include_steps, 0);
  contract_request_free(r);
  expect_reject("{" HEAD ",\"content\":\"x\",\"include_steps\":1}", AW_EINVAL, "invalid_field",
                "include_steps must be a boolean");
  expect_reject("{" HEAD ",\"content\":\"x\",\"include_steps\":\"yes\"}", AW_EINVAL, "invalid_field",
                "include_steps must be a boolean");
  const char *kinds[] = {"history", "append", "reset", "delete", "cancel"};
  for (size_t i = 0; i < 5; i++) {
    char *j = fmt("{\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"kind\":\"%s\",%s"
                  "\"attachments\":[{\"file_id\":\"f\",\"tools\":[\"file_search\"]}]}",
                  kinds[i], i == 1 ? "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]," : "");
    char *want = fmt("attachments is not allowed with kind %s", kinds[i]);
    expect_reject(j, AW_EINVAL, "invalid_field", want);
    free(want);
    free(j);
    j = fmt("{\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"kind\":\"%s\",\"include_steps\":false}", kinds[i]);
    want = fmt("include_steps is not allowed with kind %s", kinds[i]);
    expect_reject(j, AW_EINVAL, "invalid_field", want);
    free(want);
    free(j);
  }
  /* An appended message is history: its parts are text only, also inline images. */
  expect_reject("{\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"kind\":\"append\",\"messages\":[{\"role\":"
                "\"user\",\"content\":[{\"type\":\"image_file\",\"data\":\"" PNG_B64 "\",\"media_type\":\"image/png\"}]}]}",
                AW_EINVAL, "invalid_field", "only text parts can be appended");
}

/* ---- the encoder ------------------------------------------------------------ */

static void a_request_with_files_round_trips_through_the_encoder(void **state) {
  (void)state;
  contract_part parts[] = {
      {.type = CONTRACT_PART_TEXT, .text = "chart", .text_len = 5},
      {.type = CONTRACT_PART_IMAGE_FILE, .data = PNG_SIG "\0\0", .data_len = 10, .media_type = "image/webp",
       .filename = "a.webp", .detail = "high"},
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "G", .data_len = 1, .media_type = "image/gif"},
      {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-img", .text_len = 8, .detail = "auto"},
  };
  contract_attachment att[] = {
      {.file_id = "file-doc", .tools = CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER},
      {.data = "a,b\n1,\0", .data_len = 7, .filename = "t.csv", .media_type = "text/csv; charset=utf-8",
       .tools = CONTRACT_ATT_CODE_INTERPRETER},
  };
  contract_request in = {.event_id = "e1", .conversation_id = "c1", .assistant = "a", .parts = parts, .nparts = 4,
                         .attachments = att, .nattachments = 2, .include_steps = 1, .stream = 1};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_request_encode(&in, &b), AW_OK);
  decoded d;
  decode_bytes(b.data, b.len, NULL, &d);
  if (d.rc) fail_msg("re-decode failed: %s", d.err);
  const contract_request *r = d.r;
  assert_int_equal(r->nparts, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(r->parts[i].type, parts[i].type);
    assert_int_equal(r->parts[i].data_len, parts[i].data_len);
    if (parts[i].data) assert_memory_equal(r->parts[i].data, parts[i].data, parts[i].data_len);
    else assert_null(r->parts[i].data);
    assert_true(!parts[i].media_type || !strcmp(r->parts[i].media_type, parts[i].media_type));
    assert_true(!parts[i].filename ? !r->parts[i].filename : !strcmp(r->parts[i].filename, parts[i].filename));
    assert_true(!parts[i].detail ? !r->parts[i].detail : !strcmp(r->parts[i].detail, parts[i].detail));
  }
  assert_string_equal(r->parts[3].text, "file-img");
  assert_int_equal(r->nattachments, 2);
  assert_string_equal(r->attachments[0].file_id, "file-doc");
  assert_int_equal(r->attachments[0].tools, CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER);
  assert_int_equal(r->attachments[1].data_len, 7);
  assert_memory_equal(r->attachments[1].data, "a,b\n1,\0", 7);
  assert_string_equal(r->attachments[1].filename, "t.csv");
  assert_string_equal(r->attachments[1].media_type, "text/csv; charset=utf-8");
  assert_int_equal(r->attachments[1].tools, CONTRACT_ATT_CODE_INTERPRETER);
  assert_int_equal(r->include_steps, 1);
  assert_int_equal(r->stream, 1);
  /* The wire form: tools as names in a fixed order, data as bin. */
  cJSON *j = json_view(&b);
  const cJSON *a0 = cJSON_GetArrayItem(jget(j, "attachments"), 0);
  assert_string_equal(cJSON_GetArrayItem(jget(a0, "tools"), 0)->valuestring, "file_search");
  assert_string_equal(cJSON_GetArrayItem(jget(a0, "tools"), 1)->valuestring, "code_interpreter");
  const cJSON *p1 = cJSON_GetArrayItem(jget(j, "content"), 1);
  assert_null(jget(p1, "file_id"));
  assert_string_equal(jstr(p1, "data"), "iVBORw0KGgoAAA=="); /* base64 of the 10 bytes */
  assert_true(cJSON_IsTrue(jget(j, "include_steps")));
  cJSON_Delete(j);
  contract_request_free(d.r);
  buf_free(&b);
}

/* What was encoded before files existed keeps its keys: no attachments, no
 * include_steps, an image by file id as {type, file_id}. */
static void a_request_without_files_encodes_as_before(void **state) {
  (void)state;
  contract_part parts[] = {{.type = CONTRACT_PART_IMAGE_FILE, .text = "file-1", .text_len = 6}};
  contract_request in = {.event_id = "e1", .conversation_id = "c1", .assistant = "a", .parts = parts, .nparts = 1};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_request_encode(&in, &b), AW_OK);
  char *view = mpfx_json_view(b.data, b.len, NULL);
  assert_string_equal(view, "{\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"assistant\":\"a\","
                            "\"content\":[{\"type\":\"image_file\",\"file_id\":\"file-1\"}],\"stream\":false}");
  free(view);
  buf_free(&b);
}

static void request_encode_refuses_inconsistent_files(void **state) {
  (void)state;
  contract_part text = {.type = CONTRACT_PART_TEXT, .text = "x", .text_len = 1};
  contract_attachment ok = {.file_id = "f", .tools = CONTRACT_ATT_FILE_SEARCH};
  contract_attachment bad_att[] = {
      {.tools = CONTRACT_ATT_FILE_SEARCH},                                           /* neither */
      {.file_id = "f", .data = "d", .data_len = 1, .filename = "a.txt", .media_type = "text/plain",
       .tools = CONTRACT_ATT_FILE_SEARCH},                                           /* both */
      {.file_id = "f"},                                                              /* no tools */
      {.file_id = "f", .tools = 4},                                                  /* unknown tool */
      {.data = "d", .data_len = 1, .media_type = "text/plain", .tools = CONTRACT_ATT_FILE_SEARCH}, /* no name */
      {.data = "d", .data_len = 1, .filename = "a.txt", .tools = CONTRACT_ATT_FILE_SEARCH},        /* no type */
      {.data = "d", .data_len = 0, .filename = "a.txt", .media_type = "text/plain", .tools = CONTRACT_ATT_FILE_SEARCH},
  };
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(buf_appends(&b, "keep"), AW_OK);
  for (size_t i = 0; i < sizeof bad_att / sizeof bad_att[0]; i++) {
    contract_request r = {.event_id = "e", .conversation_id = "c", .assistant = "a", .parts = &text, .nparts = 1,
                          .attachments = &bad_att[i], .nattachments = 1};
    if (contract_request_encode(&r, &b) != AW_EINVAL) fail_msg("attachment case %zu encoded", i);
  }
  contract_request r = {.event_id = "e", .conversation_id = "c", .assistant = "a", .parts = &text, .nparts = 1,
                        .nattachments = 1};
  assert_int_equal(contract_request_encode(&r, &b), AW_EINVAL); /* count without array */
  contract_part bad_part[] = {
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "d", .data_len = 1},                           /* no type */
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "d", .data_len = 0, .media_type = "image/png"}, /* empty */
      {.type = CONTRACT_PART_IMAGE_URL, .text = "u", .text_len = 1, .data = "d", .data_len = 1,
       .media_type = "image/png"}, /* data on another type */
  };
  for (size_t i = 0; i < sizeof bad_part / sizeof bad_part[0]; i++) {
    contract_request q = {.event_id = "e", .conversation_id = "c", .assistant = "a", .parts = &bad_part[i], .nparts = 1};
    if (contract_request_encode(&q, &b) != AW_EINVAL) fail_msg("part case %zu encoded", i);
  }
  /* Files and steps of another kind would be dropped. */
  contract_request h = {.kind = CONTRACT_KIND_RESET, .event_id = "e", .conversation_id = "c", .attachments = &ok,
                        .nattachments = 1};
  assert_int_equal(contract_request_encode(&h, &b), AW_EINVAL);
  h.nattachments = 0;
  h.attachments = NULL;
  h.include_steps = 1;
  assert_int_equal(contract_request_encode(&h, &b), AW_EINVAL);
  assert_int_equal(b.len, 4); /* untouched */
  h.include_steps = 0;
  assert_int_equal(contract_request_encode(&h, &b), AW_OK);
  buf_free(&b);
}

/* ---- the response ----------------------------------------------------------- */

static void response_lists_files_steps_and_container_citations(void **state) {
  (void)state;
  contract_annotation ann = {.type = "container_file_citation", .text = "chart.png", .file_id = "cfile_1",
                             .start_index = 3, .end_index = 12, .filename = "chart.png", .container_id = "cntr_1"};
  contract_out_part parts[] = {{.type = "text", .text = "see chart.png", .text_len = 13, .annotations = &ann,
                                .nannotations = 1},
                               {.type = "image_file", .text = "cfile_1", .text_len = 7}};
  contract_out_message msg = {.id = "msg_1", .parts = parts, .nparts = 2};
  contract_file files[] = {
      {.file_id = "cfile_1", .container_id = "cntr_1", .filename = "chart.png", .media_type = "image/png", .bytes = 8,
       .data = PNG_SIG, .data_len = 8},
      {.file_id = "file-2", .filename = NULL, .media_type = NULL, .bytes = -1},
  };
  const char *queries[] = {"refund policy", "returns"};
  contract_step_result results[] = {{.file_id = "file-doc", .filename = "policy.pdf", .score = 0.75, .text = "30 days"},
                                    {.file_id = "file-x", .filename = "x.md", .score = INFINITY}};
  contract_step_output outs[] = {{.type = "logs", .logs = "215\n"}, {.type = "image", .file_id = "cfile_1"},
                                 {.type = "file", .file_id = "cfile_2"}};
  contract_step steps[] = {
      {.type = "file_search", .id = "fs_1", .status = "completed", .queries = queries, .nqueries = 2,
       .results = results, .nresults = 2},
      {.type = "code_interpreter", .id = "ci_1", .code = "print(1)", .outputs = outs, .noutputs = 3},
  };
  contract_response r = {.event_id = "e1", .conversation_id = "c1", .status = "completed", .messages = &msg,
                         .nmessages = 1, .timings = {1, 2, 3}, .backend_kind = "responses",
                         .backend_conversation = "conv_1", .backend_turn = "resp_1", .files = files, .nfiles = 2,
                         .steps = steps, .nsteps = 2, .want_steps = 1};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  const cJSON *c = jget(cJSON_GetArrayItem(jget(j, "messages"), 0), "content");
  const cJSON *a = cJSON_GetArrayItem(jget(jget(cJSON_GetArrayItem(c, 0), "text"), "annotations"), 0);
  assert_string_equal(jstr(a, "type"), "container_file_citation");
  assert_string_equal(jstr(a, "container_id"), "cntr_1");
  assert_string_equal(jstr(a, "filename"), "chart.png");
  assert_int_equal(cJSON_GetArraySize(a), 7);
  const cJSON *img = cJSON_GetArrayItem(c, 1);
  assert_string_equal(jstr(jget(img, "image_file"), "file_id"), "cfile_1");
  assert_int_equal(cJSON_GetArraySize(img), 2);

  const cJSON *f0 = cJSON_GetArrayItem(jget(j, "files"), 0), *f1 = cJSON_GetArrayItem(jget(j, "files"), 1);
  assert_string_equal(jstr(f0, "file_id"), "cfile_1");
  assert_string_equal(jstr(f0, "container_id"), "cntr_1");
  assert_string_equal(jstr(f0, "filename"), "chart.png");
  assert_string_equal(jstr(f0, "media_type"), "image/png");
  assert_int_equal(jget(f0, "bytes")->valuedouble, 8);
  assert_string_equal(jstr(f0, "data"), "iVBORw0KGgo=");
  assert_int_equal(cJSON_GetArraySize(f0), 6);
  /* By reference: no data; unknown name, type and size as documented. */
  assert_null(jget(f1, "data"));
  assert_null(jget(f1, "container_id"));
  assert_string_equal(jstr(f1, "filename"), "");
  assert_string_equal(jstr(f1, "media_type"), "application/octet-stream");
  assert_true(cJSON_IsNull(jget(f1, "bytes")));

  const cJSON *s0 = cJSON_GetArrayItem(jget(j, "steps"), 0), *s1 = cJSON_GetArrayItem(jget(j, "steps"), 1);
  assert_string_equal(jstr(s0, "type"), "file_search");
  assert_string_equal(jstr(s0, "id"), "fs_1");
  assert_string_equal(jstr(s0, "status"), "completed");
  assert_string_equal(cJSON_GetArrayItem(jget(s0, "queries"), 1)->valuestring, "returns");
  const cJSON *r0 = cJSON_GetArrayItem(jget(s0, "results"), 0), *r1 = cJSON_GetArrayItem(jget(s0, "results"), 1);
  assert_string_equal(jstr(r0, "filename"), "policy.pdf");
  assert_true(jget(r0, "score")->valuedouble == 0.75);
  assert_string_equal(jstr(r0, "text"), "30 days");
  assert_null(jget(r1, "text"));
  assert_true(cJSON_IsNumber(jget(r1, "score")) && jget(r1, "score")->valuedouble == 0.0); /* not finite: 0 */
  assert_null(jget(s0, "code"));
  assert_string_equal(jstr(s1, "type"), "code_interpreter");
  assert_null(jget(s1, "status"));
  assert_null(jget(s1, "queries"));
  assert_string_equal(jstr(s1, "code"), "print(1)");
  const cJSON *o = jget(s1, "outputs");
  assert_string_equal(jstr(cJSON_GetArrayItem(o, 0), "logs"), "215\n");
  assert_string_equal(jstr(cJSON_GetArrayItem(o, 1), "type"), "image");
  assert_string_equal(jstr(cJSON_GetArrayItem(o, 1), "file_id"), "cfile_1");
  assert_string_equal(jstr(cJSON_GetArrayItem(o, 2), "file_id"), "cfile_2");
  assert_null(jget(cJSON_GetArrayItem(o, 0), "file_id"));
  cJSON_Delete(j);
  buf_free(&b);
}

/* files only when there are some; steps exactly when asked (an empty list
 * when the turn called no tool); neither changes what was written before. */
static void response_writes_files_and_steps_only_when_there_are_or_asked(void **state) {
  (void)state;
  contract_step st = {.type = "file_search", .id = "fs_1"};
  contract_response r = {.event_id = "e1", .conversation_id = "c1", .status = "completed", .timings = {1, 2, 3},
                         .steps = &st, .nsteps = 1};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_null(jget(j, "files"));
  assert_null(jget(j, "steps")); /* not asked: left out */
  assert_int_equal(cJSON_GetArraySize(j), 10);
  cJSON_Delete(j);
  r.want_steps = 1;
  r.nsteps = 0;
  r.steps = NULL;
  buf_reset(&b);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  j = json_view(&b);
  assert_true(cJSON_IsArray(jget(j, "steps")));
  assert_int_equal(cJSON_GetArraySize(jget(j, "steps")), 0);
  assert_int_equal(cJSON_GetArraySize(j), 11);
  cJSON_Delete(j);
  /* An annotation without a container keeps its five keys. */
  contract_annotation ann = {.type = "file_citation", .text = "[1]", .file_id = "f", .start_index = 0, .end_index = 3};
  contract_out_part part = {.type = "text", .text = "[1]", .text_len = 3, .annotations = &ann, .nannotations = 1};
  contract_out_message msg = {.id = "m", .parts = &part, .nparts = 1};
  contract_response plain = {.event_id = "e1", .conversation_id = "c1", .status = "completed", .timings = {1, 2, 3},
                             .messages = &msg, .nmessages = 1};
  buf_reset(&b);
  assert_int_equal(contract_response_encode(&plain, &b), AW_OK);
  char *view = mpfx_json_view(b.data, b.len, NULL);
  assert_non_null(strstr(view, "\"annotations\":[{\"type\":\"file_citation\",\"text\":\"[1]\",\"file_id\":\"f\","
                               "\"start_index\":0,\"end_index\":3}]"));
  free(view);
  buf_free(&b);
}

static void response_encode_refuses_bad_files_and_steps(void **state) {
  (void)state;
  contract_file nofid = {.filename = "a"};
  contract_file datalen = {.file_id = "f", .data_len = 3};
  contract_step_output badout[] = {{.type = "video", .file_id = "x"}, {.type = "image"}, {.type = NULL}};
  const char *nullq[] = {NULL};
  contract_step_result nofile = {.filename = "a"};
  contract_step bad_steps[] = {
      {.type = "web_search", .id = "w"},
      {.type = "file_search"},
      {.type = NULL, .id = "x"},
      {.type = "file_search", .id = "x", .nqueries = 1},
      {.type = "file_search", .id = "x", .queries = nullq, .nqueries = 1},
      {.type = "file_search", .id = "x", .results = &nofile, .nresults = 1},
      {.type = "file_search", .id = "x", .nresults = 1},
      {.type = "code_interpreter", .id = "x", .noutputs = 1},
      {.type = "code_interpreter", .id = "x", .outputs = &badout[0], .noutputs = 1},
      {.type = "code_interpreter", .id = "x", .outputs = &badout[1], .noutputs = 1},
      {.type = "code_interpreter", .id = "x", .outputs = &badout[2], .noutputs = 1},
  };
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(buf_appends(&b, "keep"), AW_OK);
  contract_response r = {.event_id = "e1", .conversation_id = "c1", .status = "completed", .timings = {1, 2, 3}};
  r.files = &nofid;
  r.nfiles = 1;
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  r.files = &datalen;
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  r.files = NULL;
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  r.nfiles = 0;
  r.want_steps = 1;
  for (size_t i = 0; i < sizeof bad_steps / sizeof bad_steps[0]; i++) {
    r.steps = &bad_steps[i];
    r.nsteps = 1;
    if (contract_response_encode(&r, &b) != AW_EINVAL) fail_msg("step case %zu encoded", i);
  }
  r.steps = NULL;
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL); /* count without array */
  /* Files and steps are a message's answer, not another kind's. */
  contract_file ok = {.file_id = "f"};
  contract_response h = {.event_id = "e1", .conversation_id = "c1", .status = "completed", .timings = {1, 2, 3},
                         .kind = CONTRACT_KIND_RESET, .files = &ok, .nfiles = 1};
  assert_int_equal(contract_response_encode(&h, &b), AW_EINVAL);
  h.nfiles = 0;
  h.want_steps = 1;
  assert_int_equal(contract_response_encode(&h, &b), AW_EINVAL);
  assert_int_equal(b.len, 4); /* untouched */
  buf_free(&b);
}

/* ---- examples ------------------------------------------------------------------ */

/* request-attachments.json decodes (its base64 `data` as bin, as the JSON
 * view shows bin) and re-encodes to its shape; response-files.json has the
 * shape the encoder writes. */
static void file_examples_agree_with_the_codec(void **state) {
  (void)state;
  char *text = mpfx_source_file("schemas/examples/request-attachments.json");
  contract_request *r = expect_ok(text);
  assert_int_equal(r->nparts, 4);
  assert_int_equal(r->parts[1].type, CONTRACT_PART_IMAGE_FILE);
  assert_non_null(r->parts[1].data);
  assert_memory_equal(r->parts[1].data, PNG_SIG, 8);
  assert_int_equal(r->nattachments, 2);
  assert_int_equal(r->include_steps, 1);
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_request_encode(r, &b), AW_OK);
  cJSON *ex = cJSON_Parse(text), *got = json_view(&b);
  mpfx_same_shape(ex, got, "request-attachments.json");
  /* Every part and attachment, not only the first of each array. */
  for (int i = 0; i < 4; i++)
    mpfx_same_shape(cJSON_GetArrayItem(jget(ex, "content"), i), cJSON_GetArrayItem(jget(got, "content"), i), "content[i]");
  for (int i = 0; i < 2; i++)
    mpfx_same_shape(cJSON_GetArrayItem(jget(ex, "attachments"), i), cJSON_GetArrayItem(jget(got, "attachments"), i),
                    "attachments[i]");
  assert_string_equal(jstr(cJSON_GetArrayItem(jget(got, "content"), 1), "data"),
                      jstr(cJSON_GetArrayItem(jget(ex, "content"), 1), "data"));
  cJSON_Delete(ex);
  cJSON_Delete(got);
  contract_request_free(r);
  free(text);

  contract_annotation ann = {.type = "container_file_citation", .text = "chart.png", .file_id = "cfile_1",
                             .start_index = 32, .end_index = 41, .filename = "chart.png", .container_id = "cntr_1"};
  contract_out_part parts[] = {{.type = "text", .text = "x", .text_len = 1, .annotations = &ann, .nannotations = 1},
                               {.type = "image_file", .text = "cfile_1", .text_len = 7}};
  contract_out_message msg = {.id = "msg_1", .parts = parts, .nparts = 2};
  contract_file files[] = {{.file_id = "cfile_1", .container_id = "cntr_1", .filename = "chart.png",
                            .media_type = "image/png", .bytes = 8, .data = PNG_SIG, .data_len = 8},
                           {.file_id = "cfile_2", .container_id = "cntr_1", .filename = "summary.csv",
                            .media_type = "text/csv", .bytes = 904211}};
  contract_step_output outs[] = {{.type = "logs", .logs = "215\n"}, {.type = "image", .file_id = "cfile_1"}};
  const char *queries[] = {"q"};
  contract_step_result res = {.file_id = "f", .filename = "p.pdf", .score = 0.5, .text = "t"};
  contract_step steps[] = {{.type = "code_interpreter", .id = "ci_1", .status = "completed", .code = "c",
                            .outputs = outs, .noutputs = 2},
                           {.type = "file_search", .id = "fs_1", .status = "completed", .queries = queries,
                            .nqueries = 1, .results = &res, .nresults = 1}};
  contract_response rsp = {.event_id = "e", .conversation_id = "c", .status = "completed", .messages = &msg,
                           .nmessages = 1, .usage = {.present = 1, .prompt_tokens = 1, .completion_tokens = 1, .total_tokens = 2}, .timings = {1, 2, 3}, .backend_kind = "responses",
                           .backend_conversation = "conv_1", .backend_turn = "resp_1", .files = files, .nfiles = 2,
                           .steps = steps, .nsteps = 2, .want_steps = 1};
  buf_reset(&b);
  assert_int_equal(contract_response_encode(&rsp, &b), AW_OK);
  text = mpfx_source_file("schemas/examples/response-files.json");
  ex = cJSON_Parse(text);
  if (!ex) fail_msg("response-files.json does not parse");
  got = json_view(&b);
  mpfx_same_shape(ex, got, "response-files.json");
  const char *arrays[] = {"files", "steps"};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 2; i++)
      mpfx_same_shape(cJSON_GetArrayItem(jget(ex, arrays[k]), i), cJSON_GetArrayItem(jget(got, arrays[k]), i),
                      arrays[k]);
  const cJSON *exc = jget(cJSON_GetArrayItem(jget(ex, "messages"), 0), "content");
  const cJSON *gotc = jget(cJSON_GetArrayItem(jget(got, "messages"), 0), "content");
  mpfx_same_shape(cJSON_GetArrayItem(exc, 1), cJSON_GetArrayItem(gotc, 1), "content[1]");
  cJSON_Delete(ex);
  cJSON_Delete(got);
  free(text);
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(inline_image_decodes_its_bytes_type_and_name),
      cmocka_unit_test(image_file_needs_exactly_one_of_file_id_and_data),
      cmocka_unit_test(inline_data_must_be_non_empty_bin),
      cmocka_unit_test(inline_image_media_type_must_be_an_image_type),
      cmocka_unit_test(file_names_must_be_plain_names),
      cmocka_unit_test(inline_bytes_limit_is_exact),
      cmocka_unit_test(attachments_decode_by_id_and_inline_with_their_tools),
      cmocka_unit_test(attachments_reject_each_bad_field_by_name),
      cmocka_unit_test(attachment_count_limit_is_exact),
      cmocka_unit_test(attachment_types_are_the_listed_ones_in_any_case),
      cmocka_unit_test(attachments_and_include_steps_belong_to_messages),
      cmocka_unit_test(a_request_with_files_round_trips_through_the_encoder),
      cmocka_unit_test(a_request_without_files_encodes_as_before),
      cmocka_unit_test(request_encode_refuses_inconsistent_files),
      cmocka_unit_test(response_lists_files_steps_and_container_citations),
      cmocka_unit_test(response_writes_files_and_steps_only_when_there_are_or_asked),
      cmocka_unit_test(response_encode_refuses_bad_files_and_steps),
      cmocka_unit_test(file_examples_agree_with_the_codec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
