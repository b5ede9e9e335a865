/* json_schema.h -- validate JSON values against the subset of JSON Schema
 * that OpenAI function-tool "parameters" use (prefix jschema_).
 *
 * Why: a model's tool-call arguments are checked against the function's
 * declared parameters before they are routed to a service, so the model
 * gets a precise message it can act on ("$.days: must be an integer")
 * instead of the service failing on its input.  The service still owns
 * its input; this is a first line, not a guarantee.
 *
 * Supported keywords (everything else is ignored, as JSON Schema says of
 * unknown keywords):
 *   type (a name or an array of names: object, array, string, number,
 *         integer, boolean, null; an integer is a number without a
 *         fractional part, so 1.0 is one), enum, const (compared with
 *         cJSON_Compare: numbers by value, objects without regard to order),
 *   objects: properties, required, additionalProperties (boolean or schema),
 *   arrays:  items (one schema for every item), minItems, maxItems,
 *   strings: minLength, maxLength (in Unicode code points, not bytes),
 *   numbers: minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers,
 *            the 2019+ form; draft-04's booleans are refused),
 *   anyOf, oneOf, allOf (non-empty arrays of schemas),
 *   and the boolean schemas true and false.
 * Not checked: pattern and format (there is no regex engine here), and
 * every other assertion keyword (not, multipleOf, uniqueItems,
 * prefixItems, minProperties...): a schema relying on them accepts more
 * than it says.  "nullable" is OpenAPI, not JSON Schema: ignored.
 * "$ref" is refused at compile time (AW_EINVAL "$ref is not supported"):
 * there is no resolver, and silently skipping a reference would accept
 * anything.
 *
 * Errors are for a model to read: "<path>: <reason>", the path in the
 * instance written as "$", "$.name", "$.list[3]" or "$[\"odd key\"]".
 * Only the first error is reported.  Instance text in a message (property
 * names) is escaped and cut short, the whole message is valid UTF-8 and at
 * most JSCHEMA_ERR_MAX - 1 bytes, and truncation never splits a character
 * (a cut message ends in "...").
 *
 * Bounds: schemas may nest at most JSCHEMA_MAX_DEPTH subschemas deep
 * (compile refuses deeper ones) and instances at most JSCHEMA_MAX_DEPTH
 * arrays/objects deep (validate refuses deeper ones), so recursion is
 * bounded whatever the input.  Validation does not allocate; its time is
 * roughly proportional to (schema size x instance size): each (subschema,
 * instance value) pair is visited at most once, with enum/const compares
 * and property lookups on top.
 *
 * Threads: a compiled schema is immutable and may be used by any number
 * of threads at once.  jschema_compile() and jschema_validate_text() parse
 * with cJSON, which records a failed parse in a global that nothing here
 * reads: harmless, but a race a thread sanitizer would report.
 */
#ifndef AW_JSON_SCHEMA_H
#define AW_JSON_SCHEMA_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "aw_error.h"

#define JSCHEMA_MAX_DEPTH 32 /* subschema nesting, and instance array/object nesting */
#define JSCHEMA_ERR_MAX 256  /* longest message, NUL included; a larger errstr gains nothing */

/** A compiled schema: immutable; owns its parsed cJSON tree. */
typedef struct jschema jschema;

/** Parse and check schema_json[0..len) (need not be NUL-terminated) and
 *  compile it into *out, which the caller frees with jschema_free().
 *  AW_EPARSE: not one valid JSON value (also: invalid UTF-8, "\u0000",
 *  raw control characters, anything but whitespace after the value).
 *  AW_EINVAL: not a schema (neither object nor boolean), a supported
 *  keyword with a wrong value ("required": 3), a keyword given twice in
 *  one schema object or a name twice in one "properties", "$ref", or
 *  nesting deeper than JSCHEMA_MAX_DEPTH;
 *  errstr names the place as a JSON pointer ("#/properties/days/type: ...").
 *  AW_ENOMEM.  On failure *out is NULL. */
int jschema_compile(const char *schema_json, size_t len, jschema **out, char *errstr,
                    size_t errstr_size) AW_MUST_CHECK;

/** Check instance against s.  AW_OK (errstr set to "") or AW_EINVAL with
 *  the first error in errstr (see the top of this file); AW_EINVAL also
 *  for a NULL argument.  Does not allocate. */
int jschema_validate(const jschema *s, const cJSON *instance, char *errstr,
                     size_t errstr_size) AW_MUST_CHECK;

/** Parse json[0..len) as strictly as jschema_compile() parses schemas and
 *  validate it.  AW_EPARSE with "arguments are not valid JSON (...)" when
 *  it does not parse (cJSON cannot tell an allocation failure from a parse
 *  error, so that is AW_EPARSE too), else what jschema_validate() says. */
int jschema_validate_text(const jschema *s, const char *json, size_t len, char *errstr,
                          size_t errstr_size) AW_MUST_CHECK;

/** Free a compiled schema; NULL is a no-op. */
void jschema_free(jschema *s);

#endif
