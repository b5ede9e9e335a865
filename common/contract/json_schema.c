/* json_schema.c -- JSON Schema subset validator (see json_schema.h).
 *
 * A schema is compiled once into a tree of nodes that point into the parsed
 * cJSON document (enum and const values are compared in place), so
 * validation neither looks keywords up nor allocates.  Both the compiler
 * and the validator recurse; recursion depth is bounded by
 * JSCHEMA_MAX_DEPTH, checked before descending.
 *
 * Error text is built in fixed buffers (sb below) that only ever cut at a
 * UTF-8 character boundary and mark a cut with "...", so whatever the
 * input, the message handed to a model is valid UTF-8 of bounded size.
 */
#include "json_schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msgpack_util.h" /* mpu_utf8_seq: the project's strict UTF-8 decoder */

/* Message layout: "<path>: <reason>", each part bounded on its own so a
 * long path cannot push the reason out of the message. */
#define PATH_MAX_LEN 96                                  /* bytes of path */
#define REASON_MAX_LEN (JSCHEMA_ERR_MAX - 1 - PATH_MAX_LEN - 2) /* bytes of reason */
#define KEY_MAX_LEN 40 /* bytes of one property name shown in a path */
#define SEG_SIZE 64    /* one rendered path segment, NUL included */
/* Compile paths hold a keyword and a name or index per schema level. */
#define CPATH_SEGS (2 * JSCHEMA_MAX_DEPTH + 4)
#define VPATH_SEGS (JSCHEMA_MAX_DEPTH + 2)
#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- bounded UTF-8-safe string builder --------------------------------------- */

typedef struct {
  char *p;
  size_t cap; /* >= 4, NUL included */
  size_t len;
  bool cut; /* something did not fit */
} sb;

static void sb_init(sb *b, char *p, size_t cap) {
  b->p = p;
  b->cap = cap;
  b->len = 0;
  b->cut = false;
  p[0] = '\0';
}

/* Append s[0..n), which must be valid UTF-8; when it does not fit, keep
 * what does up to a character boundary. */
static void sb_put(sb *b, const char *s, size_t n) {
  if (b->cut) return;
  size_t room = b->cap - 1 - b->len;
  if (n > room) {
    n = room;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    b->cut = true;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

/* For ASCII-only output (numbers, fixed words): a cut may land anywhere. */
static void AW_PRINTF(2, 3) sb_printf(sb *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Make a cut visible: end the text in "..." (at a character boundary). */
static void sb_finish(sb *b) {
  if (!b->cut) return;
  size_t n = b->len < b->cap - 4 ? b->len : b->cap - 4;
  while (n > 0 && ((unsigned char)b->p[n] & 0xC0) == 0x80) n--;
  memcpy(b->p + n, "...", 4);
  b->len = n + 3;
}

/* Append untrusted text s (NUL-terminated, any bytes) quoted JSON-style
 * without the quotes: \" \\ and control characters escaped, invalid UTF-8
 * shown as U+FFFD.  pointer: also escape '~' and '/' as JSON Pointer does. */
static void sb_escaped(sb *b, const char *s, bool pointer) {
  const unsigned char *u = (const unsigned char *)(s ? s : "");
  size_t n = strlen((const char *)u);
  for (size_t i = 0; i < n && !b->cut;) {
    unsigned char ch = u[i];
    if (ch >= 0x80) {
      size_t k = mpu_utf8_seq(u + i, n - i);
      if (k) sb_put(b, (const char *)u + i, k);
      else sb_str(b, "\xEF\xBF\xBD");
      i += k ? k : 1;
      continue;
    }
    if (ch < 0x20 || ch == 0x7f) sb_printf(b, "\\u%04x", ch);
    else if (ch == '"') sb_str(b, "\\\"");
    else if (ch == '\\') sb_str(b, "\\\\");
    else if (pointer && ch == '~') sb_str(b, "~0");
    else if (pointer && ch == '/') sb_str(b, "~1");
    else sb_put(b, (const char *)u + i, 1);
    i++;
  }
}

/* Copy a finished message into the caller's buffer, cutting at a character
 * boundary with "..." when it does not fit. */
static void copy_out(char *dst, size_t dst_size, const char *src) {
  if (!dst || !dst_size) return;
  size_t len = strlen(src);
  if (len < dst_size) {
    memcpy(dst, src, len + 1);
    return;
  }
  size_t dots = dst_size >= 4 ? 3 : 0;
  size_t n = dst_size - 1 - dots;
  while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
  memcpy(dst, src, n);
  memcpy(dst + n, "...", dots);
  dst[n + dots] = '\0';
}

/* aw_seterr() with copy_out()'s cut, for the few messages made with
 * printf (parse errors, bad arguments; their text is ASCII). */
static int AW_PRINTF(4, 5) seterr(int err, char *errstr, size_t errstr_size, const char *fmt, ...) {
  char msg[JSCHEMA_ERR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  copy_out(errstr, errstr_size, msg);
  return err;
}

/* ---- paths ------------------------------------------------------------------- */

/* One step into a value: a property name, or an array index when key is NULL. */
typedef struct {
  const char *key;
  size_t index;
} seg;

static bool is_identifier(const char *s) {
  if (!s || !*s || strlen(s) > KEY_MAX_LEN) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(p > s && c >= '0' && c <= '9')) return false;
  }
  return true;
}

/* Render one segment: ".name" / "[\"odd name\"]" / "[3]" for instance
 * paths, "/name" / "/3" for JSON pointers into the schema. */
static size_t render_seg(const seg *s, bool pointer, char out[SEG_SIZE]) {
  sb b;
  sb_init(&b, out, SEG_SIZE);
  if (!s->key) {
    sb_printf(&b, pointer ? "/%zu" : "[%zu]", s->index);
    return b.len;
  }
  char kbuf[KEY_MAX_LEN + 1];
  sb k;
  sb_init(&k, kbuf, sizeof kbuf);
  sb_escaped(&k, s->key, pointer);
  sb_finish(&k);
  if (pointer) sb_str(&b, "/");
  else sb_str(&b, is_identifier(s->key) ? "." : "[\"");
  sb_str(&b, kbuf);
  if (!pointer && !is_identifier(s->key)) sb_str(&b, "\"]");
  return b.len;
}

/* Render root + segs into out (size PATH_MAX_LEN + 1).  A path too long
 * keeps its end, where the problem is: "$...[7].name". */
static void render_path(const seg *segs, int n, bool pointer, char *out) {
  char tmp[SEG_SIZE];
  size_t total = 1;
  for (int i = 0; i < n; i++) total += render_seg(&segs[i], pointer, tmp);
  int first = 0;
  if (total > PATH_MAX_LEN) {
    size_t used = 1 + 3; /* root and "..." */
    first = n;
    while (first > 0) {
      size_t l = render_seg(&segs[first - 1], pointer, tmp);
      if (used + l > PATH_MAX_LEN) break;
      used += l;
      first--;
    }
  }
  sb b;
  sb_init(&b, out, PATH_MAX_LEN + 1);
  sb_str(&b, pointer ? "#" : "$");
  if (first > 0) sb_str(&b, "...");
  for (int i = first; i < n; i++) {
    size_t l = render_seg(&segs[i], pointer, tmp);
    sb_put(&b, tmp, l);
  }
}

/* ---- strict parsing ---------------------------------------------------------- */

/* What cJSON lets through but JSON does not, or what it would silently
 * change: invalid UTF-8, raw control characters, and "\u0000", which cJSON
 * decodes into a C string that ends there, so "c\u0000x" would be checked
 * as "c" while the service reads all of it.  Run on text cJSON accepted,
 * so string boundaries are where the scan thinks they are. */
static const char *lex_problem(const unsigned char *s, size_t n, size_t *at) {
  bool in_string = false;
  for (size_t i = 0; i < n;) {
    unsigned char ch = s[i];
    *at = i;
    if (ch >= 0x80) {
      size_t k = mpu_utf8_seq(s + i, n - i);
      if (!k) return "invalid UTF-8";
      i += k;
    } else if (ch < 0x20) {
      if (in_string || (ch != '\t' && ch != '\n' && ch != '\r')) return "control character";
      i++;
    } else if (in_string && ch == '\\') {
      if (i + 6 <= n && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4)) return "\\u0000 in a string";
      i += 2; /* the escaped character is ASCII in accepted text */
    } else {
      if (ch == '"') in_string = !in_string;
      i++;
    }
  }
  return NULL;
}

/* Parse text[0..len) as one JSON value and nothing but whitespace after it.
 * On failure writes "<what> are/is not valid JSON (<why> at offset N)". */
static int parse_strict(const char *text, size_t len, const char *what, cJSON **out, char *errstr,
                        size_t errstr_size) {
  *out = NULL;
  const char *end = NULL;
  const char *why = NULL;
  size_t at = 0;
  cJSON *root = text ? cJSON_ParseWithLengthOpts(text, len, &end, 0) : NULL;
  if (!root) {
    why = "syntax error";
    at = (text && end && end >= text && end <= text + len) ? (size_t)(end - text) : 0;
  } else {
    if (!end) end = text; /* cJSON always sets it; if not, refuse rather than guess */
    while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end != text + len) {
      why = "unexpected text after the value";
      at = (size_t)(end - text);
    } else {
      why = lex_problem((const unsigned char *)text, len, &at);
    }
  }
  if (why) {
    cJSON_Delete(root);
    return seterr(AW_EPARSE, errstr, errstr_size, "%s not valid JSON (%s at offset %zu)", what, why, at);
  }
  *out = root;
  return AW_OK;
}

/* ---- compiled schema ------------------------------------------------------------ */

enum {
  T_OBJECT = 1 << 0,
  T_ARRAY = 1 << 1,
  T_STRING = 1 << 2,
  T_NUMBER = 1 << 3,
  T_INTEGER = 1 << 4,
  T_BOOLEAN = 1 << 5,
  T_NULL = 1 << 6,
};
static const char *const type_names[] = {"object", "array", "string", "number",
                                         "integer", "boolean", "null"};
static const char *const type_nouns[] = {"an object", "an array", "a string", "a number",
                                         "an integer", "a boolean", "null"};
#define N_TYPES (sizeof type_names / sizeof type_names[0])

typedef struct node node;
typedef struct {
  const char *name; /* points into the document */
  node *schema;
} prop;

struct node {
  bool never;     /* the schema false (also additionalProperties: false) */
  bool has_type;  /* "type" given; types may then be 0 (an empty list: nothing matches) */
  unsigned types; /* T_* */
  const cJSON *enum_values; /* array, or NULL */
  const cJSON *const_value; /* or NULL */
  bool has_min, has_max, has_xmin, has_xmax;
  double min, max, xmin, xmax;
  size_t min_items, max_items, min_length, max_length; /* max: SIZE_MAX when absent */
  prop *props; /* sorted by name */
  size_t n_props;
  const cJSON *required; /* array of strings, or NULL */
  node *additional;      /* NULL: any additional property is fine */
  node *items;           /* NULL: any item is fine */
  node **all_of, **any_of, **one_of;
  size_t n_all_of, n_any_of, n_one_of;
};

struct jschema {
  cJSON *doc;
  node *root;
};

static void node_free(node *n) {
  if (!n) return;
  for (size_t i = 0; i < n->n_props; i++) node_free(n->props[i].schema);
  free(n->props);
  node_free(n->additional);
  node_free(n->items);
  for (size_t i = 0; i < n->n_all_of; i++) node_free(n->all_of[i]);
  for (size_t i = 0; i < n->n_any_of; i++) node_free(n->any_of[i]);
  for (size_t i = 0; i < n->n_one_of; i++) node_free(n->one_of[i]);
  free(n->all_of);
  free(n->any_of);
  free(n->one_of);
  free(n);
}

void jschema_free(jschema *s) {
  if (!s) return;
  node_free(s->root);
  cJSON_Delete(s->doc);
  free(s);
}

/* ---- compiler -------------------------------------------------------------------- */

typedef struct {
  seg path[CPATH_SEGS];
  int plen;
  char *errstr;
  size_t errstr_size;
} cctx;

enum kw {
  KW_TYPE, KW_ENUM, KW_CONST, KW_PROPERTIES, KW_REQUIRED, KW_ADDITIONAL, KW_ITEMS,
  KW_MIN_ITEMS, KW_MAX_ITEMS, KW_MIN_LENGTH, KW_MAX_LENGTH, KW_MINIMUM, KW_MAXIMUM,
  KW_XMIN, KW_XMAX, KW_ANY_OF, KW_ONE_OF, KW_ALL_OF, KW_REF, KW_COUNT
};
static const char *const keywords[KW_COUNT] = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref"};

static void push(seg *path, int *plen, int max, const char *key, size_t index) {
  /* Callers bound the depth first; the guard keeps a bug from writing out of bounds. */
  if (*plen < max) path[*plen] = (seg){key, index};
  (*plen)++;
}

/* "#/properties/days/type: <reason>[ \"<quoted>\"]" into the caller's errstr. */
static int cfail(cctx *c, int err, const char *reason, const char *quoted) {
  char path[PATH_MAX_LEN + 1], msg[JSCHEMA_ERR_MAX];
  render_path(c->path, c->plen < CPATH_SEGS ? c->plen : CPATH_SEGS, true, path);
  sb b;
  sb_init(&b, msg, sizeof msg);
  sb_str(&b, path);
  sb_str(&b, ": ");
  sb_str(&b, reason);
  if (quoted) {
    sb_str(&b, " \"");
    sb_escaped(&b, quoted, false);
    sb_str(&b, "\"");
  }
  sb_finish(&b);
  copy_out(c->errstr, c->errstr_size, msg);
  return err;
}

static int compile_node(cctx *c, const cJSON *j, int depth, node **out);

static int prop_cmp(const void *a, const void *b) {
  return strcmp(((const prop *)a)->name, ((const prop *)b)->name);
}

static bool count_ok(const cJSON *v, size_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0) || d != floor(d)) return false;
  *out = d >= 9007199254740992.0 ? SIZE_MAX : (size_t)d; /* beyond 2^53: no limit in practice */
  return true;
}

static int type_bit(const cJSON *v) {
  if (!cJSON_IsString(v) || !v->valuestring) return -1;
  for (size_t i = 0; i < N_TYPES; i++)
    if (!strcmp(v->valuestring, type_names[i])) return 1 << i;
  return -1;
}

/* A non-empty array of schemas (anyOf, oneOf, allOf). */
static int compile_list(cctx *c, const cJSON *v, int depth, node ***out, size_t *n_out) {
  size_t n = 0;
  if (cJSON_IsArray(v))
    for (const cJSON *e = v->child; e; e = e->next) n++;
  if (!n) return cfail(c, AW_EINVAL, "must be a non-empty array of schemas", NULL);
  *out = calloc(n, sizeof **out);
  if (!*out) return cfail(c, AW_ENOMEM, "out of memory", NULL);
  size_t i = 0;
  for (const cJSON *e = v->child; e; e = e->next, i++) {
    push(c->path, &c->plen, CPATH_SEGS, NULL, i);
    int rc = compile_node(c, e, depth + 1, &(*out)[i]);
    *n_out = i + 1; /* what is there gets freed with the node, even on failure */
    if (rc) return rc;
    c->plen--;
  }
  return AW_OK;
}

static int compile_keyword(cctx *c, node *n, int kw, const cJSON *v, int depth) {
  switch (kw) {
  case KW_TYPE:
    n->has_type = true;
    if (cJSON_IsString(v)) {
      int t = type_bit(v);
      if (t < 0) return cfail(c, AW_EINVAL, "unknown type", v->valuestring);
      n->types = (unsigned)t;
      return AW_OK;
    }
    if (!cJSON_IsArray(v)) return cfail(c, AW_EINVAL, "must be a type name or an array of type names", NULL);
    for (const cJSON *e = v->child; e; e = e->next) {
      int t = type_bit(e);
      if (t < 0)
        return cJSON_IsString(e) ? cfail(c, AW_EINVAL, "unknown type", e->valuestring)
                                 : cfail(c, AW_EINVAL, "must be a type name or an array of type names", NULL);
      n->types |= (unsigned)t;
    }
    return AW_OK;
  case KW_ENUM:
    if (!cJSON_IsArray(v)) return cfail(c, AW_EINVAL, "must be an array", NULL);
    n->enum_values = v;
    return AW_OK;
  case KW_CONST:
    n->const_value = v;
    return AW_OK;
  case KW_PROPERTIES: {
    if (!cJSON_IsObject(v)) return cfail(c, AW_EINVAL, "must be an object of schemas", NULL);
    size_t count = 0;
    for (const cJSON *e = v->child; e; e = e->next) count++;
    if (!count) return AW_OK;
    n->props = calloc(count, sizeof *n->props);
    if (!n->props) return cfail(c, AW_ENOMEM, "out of memory", NULL);
    for (const cJSON *e = v->child; e; e = e->next) {
      prop *p = &n->props[n->n_props++];
      p->name = e->string ? e->string : "";
      push(c->path, &c->plen, CPATH_SEGS, p->name, 0);
      int rc = compile_node(c, e, depth + 1, &p->schema);
      if (rc) return rc;
      c->plen--;
    }
    /* Sorted for lookup by bsearch; a name given twice is a mistake in the
     * schema that would otherwise apply one of the two silently. */
    qsort(n->props, n->n_props, sizeof *n->props, prop_cmp);
    for (size_t i = 1; i < n->n_props; i++)
      if (!strcmp(n->props[i - 1].name, n->props[i].name))
        return cfail(c, AW_EINVAL, "duplicate property", n->props[i].name);
    return AW_OK;
  }
  case KW_REQUIRED:
    if (!cJSON_IsArray(v)) return cfail(c, AW_EINVAL, "must be an array of property names", NULL);
    for (const cJSON *e = v->child; e; e = e->next)
      if (!cJSON_IsString(e) || !e->valuestring)
        return cfail(c, AW_EINVAL, "must be an array of property names", NULL);
    n->required = v;
    return AW_OK;
  case KW_ADDITIONAL:
  case KW_ITEMS:
    if (cJSON_IsTrue(v)) return AW_OK; /* the same as absent */
    if (!cJSON_IsBool(v) && !cJSON_IsObject(v))
      return cfail(c, AW_EINVAL,
                   kw == KW_ITEMS ? "must be a schema (the array form is not supported)"
                                  : "must be a boolean or a schema",
                   NULL);
    return compile_node(c, v, depth + 1, kw == KW_ITEMS ? &n->items : &n->additional);
  case KW_MIN_ITEMS:
  case KW_MAX_ITEMS:
  case KW_MIN_LENGTH:
  case KW_MAX_LENGTH: {
    size_t *dst = kw == KW_MIN_ITEMS    ? &n->min_items
                  : kw == KW_MAX_ITEMS  ? &n->max_items
                  : kw == KW_MIN_LENGTH ? &n->min_length
                                        : &n->max_length;
    if (!count_ok(v, dst)) return cfail(c, AW_EINVAL, "must be a non-negative integer", NULL);
    return AW_OK;
  }
  case KW_MINIMUM:
  case KW_MAXIMUM:
  case KW_XMIN:
  case KW_XMAX:
    if (!cJSON_IsNumber(v)) return cfail(c, AW_EINVAL, "must be a number", NULL);
    if (kw == KW_MINIMUM) n->has_min = true, n->min = v->valuedouble;
    else if (kw == KW_MAXIMUM) n->has_max = true, n->max = v->valuedouble;
    else if (kw == KW_XMIN) n->has_xmin = true, n->xmin = v->valuedouble;
    else n->has_xmax = true, n->xmax = v->valuedouble;
    return AW_OK;
  case KW_ANY_OF: return compile_list(c, v, depth, &n->any_of, &n->n_any_of);
  case KW_ONE_OF: return compile_list(c, v, depth, &n->one_of, &n->n_one_of);
  case KW_ALL_OF: return compile_list(c, v, depth, &n->all_of, &n->n_all_of);
  default: /* KW_REF */
    return cfail(c, AW_EINVAL, "$ref is not supported", NULL);
  }
}

/* Compile schema j at nesting level depth (the root is 1) into *out.  *out
 * is set as soon as the node exists, so the caller frees a partly built
 * tree on failure. */
static int compile_node(cctx *c, const cJSON *j, int depth, node **out) {
  *out = NULL;
  if (depth > JSCHEMA_MAX_DEPTH)
    return cfail(c, AW_EINVAL, "schemas nest too deeply (the limit is " STR(JSCHEMA_MAX_DEPTH) ")", NULL);
  node *n = calloc(1, sizeof *n);
  if (!n) return cfail(c, AW_ENOMEM, "out of memory", NULL);
  n->max_items = n->max_length = SIZE_MAX;
  *out = n;
  if (cJSON_IsBool(j)) {
    n->never = cJSON_IsFalse(j);
    return AW_OK;
  }
  if (!cJSON_IsObject(j)) return cfail(c, AW_EINVAL, "a schema must be an object or a boolean", NULL);
  unsigned seen = 0;
  for (const cJSON *k = j->child; k; k = k->next) {
    int kw = 0;
    while (kw < KW_COUNT && (!k->string || strcmp(k->string, keywords[kw]))) kw++;
    if (kw == KW_COUNT) continue; /* not ours: JSON Schema says ignore it */
    push(c->path, &c->plen, CPATH_SEGS, k->string, 0);
    if (seen & (1u << kw)) return cfail(c, AW_EINVAL, "keyword given twice", NULL);
    seen |= 1u << kw;
    int rc = compile_keyword(c, n, kw, k, depth);
    if (rc) return rc;
    c->plen--;
  }
  return AW_OK;
}

int jschema_compile(const char *schema_json, size_t len, jschema **out, char *errstr, size_t errstr_size) {
  if (errstr && errstr_size) errstr[0] = '\0';
  if (!out) return seterr(AW_EINVAL, errstr, errstr_size, "no output pointer");
  *out = NULL;
  cJSON *doc = NULL;
  int rc = parse_strict(schema_json, len, "schema is", &doc, errstr, errstr_size);
  if (rc) return rc;
  jschema *s = calloc(1, sizeof *s);
  if (!s) {
    cJSON_Delete(doc);
    return seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  s->doc = doc;
  cctx c = {.plen = 0, .errstr = errstr, .errstr_size = errstr_size};
  rc = compile_node(&c, doc, 1, &s->root);
  if (rc) {
    jschema_free(s);
    return rc;
  }
  *out = s;
  return AW_OK;
}

/* ---- validator -------------------------------------------------------------------- */

typedef struct {
  int depth; /* instance path length where it was found: deeper = closer to a match */
  char path[PATH_MAX_LEN + 1];
  char reason[REASON_MAX_LEN + 1];
} verr;

typedef struct {
  seg path[VPATH_SEGS];
  int plen;
  verr err;
  sb reason; /* open while a failure is being described */
} vctx;

/* Start describing a failure at the current path; the caller appends the
 * reason to the returned builder and returns vfail_end(c). */
static sb *vfail_begin(vctx *c) {
  c->err.depth = c->plen;
  render_path(c->path, c->plen < VPATH_SEGS ? c->plen : VPATH_SEGS, false, c->err.path);
  sb_init(&c->reason, c->err.reason, sizeof c->err.reason);
  return &c->reason;
}

static int vfail_end(vctx *c) {
  sb_finish(&c->reason);
  return AW_EINVAL;
}

static int vfail(vctx *c, const char *reason) {
  sb_str(vfail_begin(c), reason);
  return vfail_end(c);
}

/* Shortest text that reads back as d ("3", "0.1", "1e+300"). */
static void put_number(sb *b, double d) {
  char tmp[40];
  if (d == floor(d) && fabs(d) < 1e15) snprintf(tmp, sizeof tmp, "%.0f", d);
  else {
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d) snprintf(tmp, sizeof tmp, "%.17g", d);
  }
  sb_str(b, tmp);
}

/* A schema value in a message: strings escaped by us, the rest printed by
 * cJSON into a fixed buffer (a value too long to show is elided). */
static void put_value(sb *b, const cJSON *v) {
  if (cJSON_IsString(v)) {
    sb_str(b, "\"");
    sb_escaped(b, v->valuestring, false);
    sb_str(b, "\"");
  } else if (cJSON_IsNumber(v)) {
    put_number(b, v->valuedouble);
  } else {
    char tmp[96];
    /* cJSON wants a few spare bytes beyond what it prints. */
    if (cJSON_PrintPreallocated((cJSON *)v, tmp, (int)sizeof tmp - 8, 0)) sb_str(b, tmp);
    else sb_str(b, cJSON_IsArray(v) ? "[...]" : "{...}");
  }
}

static unsigned kind_of(const cJSON *v) {
  if (cJSON_IsObject(v)) return T_OBJECT;
  if (cJSON_IsArray(v)) return T_ARRAY;
  if (cJSON_IsString(v)) return T_STRING;
  if (cJSON_IsBool(v)) return T_BOOLEAN;
  if (cJSON_IsNull(v)) return T_NULL;
  if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    return T_NUMBER | (isfinite(d) && d == floor(d) ? T_INTEGER : 0);
  }
  return 0; /* cJSON_Raw or invalid: matches no type */
}

static size_t code_points(const char *s) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) n += (*p & 0xC0) != 0x80;
  return n;
}

/* Refuse arrays/objects nested deeper than JSCHEMA_MAX_DEPTH before
 * anything else looks at the value (cJSON_Compare recurses too). */
static int check_depth(vctx *c, const cJSON *v, int level) {
  if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) return AW_OK;
  if (level > JSCHEMA_MAX_DEPTH)
    return vfail(c, "nested too deeply (the limit is " STR(JSCHEMA_MAX_DEPTH) " arrays or objects)");
  size_t i = 0;
  for (const cJSON *e = v->child; e; e = e->next, i++) {
    push(c->path, &c->plen, VPATH_SEGS, cJSON_IsObject(v) ? (e->string ? e->string : "") : NULL, i);
    int rc = check_depth(c, e, level + 1);
    c->plen--;
    if (rc) return rc;
  }
  return AW_OK;
}

static int validate_node(vctx *c, const node *n, const cJSON *v);

/* anyOf (one = false) and oneOf (one = true).  When nothing matches, the
 * error that got furthest into the value wins ("$.a.b: ..." over "$: must
 * be null"); when all stop here, their reasons are joined with "or". */
static int validate_alternatives(vctx *c, node *const *alts, size_t n, const cJSON *v, bool one) {
  verr best; /* ~250 bytes a level, at most JSCHEMA_MAX_DEPTH levels */
  char joined[REASON_MAX_LEN + 1];
  sb j;
  sb_init(&j, joined, sizeof joined);
  best.depth = -1;
  size_t matched = 0, first = 0;
  for (size_t i = 0; i < n; i++) {
    if (validate_node(c, alts[i], v) == AW_OK) {
      if (!one) return AW_OK;
      if (matched++ == 0) {
        first = i;
        continue;
      }
      sb_printf(vfail_begin(c), "must match exactly one alternative of oneOf, but matches %zu and %zu",
                first + 1, i + 1);
      return vfail_end(c);
    }
    if (c->err.depth > best.depth) best = c->err;
    if (c->err.depth == c->plen) {
      if (j.len) sb_str(&j, " or ");
      sb_str(&j, c->err.reason);
    }
  }
  if (matched) return AW_OK;
  if (best.depth > c->plen) {
    c->err = best;
  } else {
    sb_finish(&j);
    sb_str(vfail_begin(c), joined);
    vfail_end(c);
  }
  return AW_EINVAL;
}

static int fail_type(vctx *c, unsigned types) {
  sb *b = vfail_begin(c);
  if (!types) {
    sb_str(b, "no type is allowed here");
    return vfail_end(c);
  }
  sb_str(b, "must be ");
  size_t total = 0, done = 0;
  for (size_t i = 0; i < N_TYPES; i++) total += (types >> i) & 1;
  for (size_t i = 0; i < N_TYPES; i++) {
    if (!((types >> i) & 1)) continue;
    if (done) sb_str(b, done + 1 == total ? " or " : ", ");
    sb_str(b, type_nouns[i]);
    done++;
  }
  return vfail_end(c);
}

static int validate_object(vctx *c, const node *n, const cJSON *v) {
  if (n->required)
    for (const cJSON *r = n->required->child; r; r = r->next)
      if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) {
        push(c->path, &c->plen, VPATH_SEGS, r->valuestring, 0);
        vfail(c, "required property missing");
        c->plen--;
        return AW_EINVAL;
      }
  if (!n->n_props && !n->additional) return AW_OK;
  /* Every member, so a duplicate key is checked too: a service may read
   * the last of two where cJSON would look up the first. */
  for (const cJSON *m = v->child; m; m = m->next) {
    const char *name = m->string ? m->string : "";
    const prop key = {name, NULL};
    const prop *p = n->n_props ? bsearch(&key, n->props, n->n_props, sizeof *n->props, prop_cmp) : NULL;
    const node *sub = p ? p->schema : n->additional;
    if (!sub) continue;
    if (sub == n->additional && sub->never) {
      sb *b = vfail_begin(c);
      sb_str(b, "additional property \"");
      sb_escaped(b, name, false);
      sb_str(b, "\" is not allowed");
      return vfail_end(c);
    }
    push(c->path, &c->plen, VPATH_SEGS, name, 0);
    int rc = validate_node(c, sub, m);
    c->plen--;
    if (rc) return rc;
  }
  return AW_OK;
}

static int validate_node(vctx *c, const node *n, const cJSON *v) {
  if (n->never) return vfail(c, "no value is allowed here");
  unsigned kind = kind_of(v);
  if (n->has_type && !(n->types & kind)) return fail_type(c, n->types);
  if (n->const_value && !cJSON_Compare(v, n->const_value, 1)) {
    sb *b = vfail_begin(c);
    sb_str(b, "must be ");
    put_value(b, n->const_value);
    return vfail_end(c);
  }
  if (n->enum_values) {
    const cJSON *e = n->enum_values->child;
    while (e && !cJSON_Compare(v, e, 1)) e = e->next;
    if (!e) {
      sb *b = vfail_begin(c);
      sb_str(b, n->enum_values->child ? "must be one of " : "no value is allowed here (empty enum)");
      for (e = n->enum_values->child; e && !b->cut; e = e->next) {
        put_value(b, e);
        if (e->next) sb_str(b, ", ");
      }
      return vfail_end(c);
    }
  }
  if (kind & T_NUMBER) {
    double d = v->valuedouble;
    const char *op = NULL;
    double bound = 0;
    if (n->has_min && d < n->min) op = ">=", bound = n->min;
    else if (n->has_xmin && d <= n->xmin) op = ">", bound = n->xmin;
    else if (n->has_max && d > n->max) op = "<=", bound = n->max;
    else if (n->has_xmax && d >= n->xmax) op = "<", bound = n->xmax;
    if (op) {
      sb *b = vfail_begin(c);
      sb_printf(b, "must be %s ", op);
      put_number(b, bound);
      return vfail_end(c);
    }
  }
  if ((kind & T_STRING) && (n->min_length || n->max_length != SIZE_MAX)) {
    size_t len = code_points(v->valuestring);
    if (len < n->min_length || len > n->max_length) {
      bool lo = len < n->min_length;
      size_t lim = lo ? n->min_length : n->max_length;
      sb_printf(vfail_begin(c), "must be at %s %zu character%s long", lo ? "least" : "most", lim,
                lim == 1 ? "" : "s");
      return vfail_end(c);
    }
  }
  if (kind & T_ARRAY) {
    size_t count = 0;
    for (const cJSON *e = v->child; e; e = e->next) count++;
    if (count < n->min_items || count > n->max_items) {
      bool lo = count < n->min_items;
      size_t lim = lo ? n->min_items : n->max_items;
      sb_printf(vfail_begin(c), "must have at %s %zu item%s", lo ? "least" : "most", lim,
                lim == 1 ? "" : "s");
      return vfail_end(c);
    }
    if (n->items) {
      size_t i = 0;
      for (const cJSON *e = v->child; e; e = e->next, i++) {
        push(c->path, &c->plen, VPATH_SEGS, NULL, i);
        int rc = validate_node(c, n->items, e);
        c->plen--;
        if (rc) return rc;
      }
    }
  }
  if (kind & T_OBJECT) {
    int rc = validate_object(c, n, v);
    if (rc) return rc;
  }
  for (size_t i = 0; i < n->n_all_of; i++) {
    int rc = validate_node(c, n->all_of[i], v);
    if (rc) return rc;
  }
  if (n->n_any_of && validate_alternatives(c, n->any_of, n->n_any_of, v, false)) return AW_EINVAL;
  if (n->n_one_of && validate_alternatives(c, n->one_of, n->n_one_of, v, true)) return AW_EINVAL;
  return AW_OK;
}

int jschema_validate(const jschema *s, const cJSON *instance, char *errstr, size_t errstr_size) {
  if (errstr && errstr_size) errstr[0] = '\0';
  if (!s || !instance) return seterr(AW_EINVAL, errstr, errstr_size, "no schema or no value");
  vctx c;
  c.plen = 0;
  int rc = check_depth(&c, instance, 1);
  if (!rc) rc = validate_node(&c, s->root, instance);
  if (rc) {
    char msg[JSCHEMA_ERR_MAX];
    snprintf(msg, sizeof msg, "%s: %s", c.err.path, c.err.reason); /* fits by construction */
    copy_out(errstr, errstr_size, msg);
  }
  return rc;
}

int jschema_validate_text(const jschema *s, const char *json, size_t len, char *errstr, size_t errstr_size) {
  if (errstr && errstr_size) errstr[0] = '\0';
  if (!s) return seterr(AW_EINVAL, errstr, errstr_size, "no schema");
  cJSON *v = NULL;
  int rc = parse_strict(json, len, "arguments are", &v, errstr, errstr_size);
  if (rc) return rc;
  rc = jschema_validate(s, v, errstr, errstr_size);
  cJSON_Delete(v);
  return rc;
}
