/* sim_codeint.h -- the scripted model's code interpreter: a chart or data
 * request answered with code, its logs and a generated file (prefix sci_).
 *
 * Why it exists: the worker delivers the files a turn generates (issue 10,
 * part 4) and that path can only be tested against a model that generates
 * them.  Both APIs ask the same of the model -- the Responses API through a
 * code_interpreter tool (files live in its container), the Assistants API
 * through the code_interpreter tool of the assistant or the run (files are
 * /v1/files files of purpose assistants_output) -- so it is decided here
 * once, and each API dresses it in its own shapes (sim_responses.c: a
 * code_interpreter_call item and a container_file_citation annotation;
 * sim_run.c: a tool_calls step and an image_file part or a file_path
 * annotation).
 *
 * The rule, deterministic (no clock, no randomness):
 *  - only a request that names a chart ("chart", "plot", "graph") or a
 *    data file ("csv", "table") calls the tool, and only when the tool is
 *    enabled for the turn; anything else: no call;
 *  - the data are the numbers of the turn's input files (the CSV
 *    attachments, their last numeric column, at most 64 rows), else of the
 *    message text; none: the numbers 1..5;
 *  - a chart request makes `chart.png`: a bar chart of the data, an RGB PNG
 *    (zlib deflate, CRC-32 from zlib), 160x100 pixels, the same bytes for
 *    the same data; a data request makes `summary.csv` ("n,value\n" then a
 *    row per number, then "total,<sum>"), big enough data making a file
 *    past any small inline limit: when the message says "large", the CSV is
 *    padded to 300 KiB with comment lines, for tests of delivery by
 *    reference;
 *  - the code is a fixed Python snippet naming the file; the logs say how
 *    many values were read and what was written.
 *
 * @locality any thread (pure functions).
 */
#ifndef SIM_CODEINT_H
#define SIM_CODEINT_H

#include <stddef.h>
#include "aw_error.h"

typedef struct sci_input_file {
  const char *filename;
  const char *data;
  size_t len;
} sci_input_file;

typedef struct sci_output {
  char *code;          /* the Python the "model" ran */
  char *logs;          /* what it printed */
  char *filename;      /* "chart.png" | "summary.csv" */
  char *media_type;    /* "image/png" | "text/csv" */
  unsigned char *data; /* the file's bytes */
  size_t len;
  int is_image;        /* 1: chart.png */
  char *text;          /* the assistant's sentence about it ("Here is the chart of 5 values.") */
} sci_output;

/** Does this user text ask for the code interpreter? */
int sci_wants_tool(const char *text);

/** Run the "code interpreter" over text and the turn's files.  *out gets
 *  the output (sci_output_free), or NULL when sci_wants_tool(text) is 0.
 *  AW_ENOMEM. */
int sci_run(const char *text, const sci_input_file *files, size_t nfiles, sci_output **out) AW_MUST_CHECK;

void sci_output_free(sci_output *o);

/** The acknowledgement of image inputs: the answer to a message with
 *  nimages (>= 1) image parts starts with "I see N image(s). " (both APIs'
 *  scripted answers prepend it).  Writes it NUL-terminated into out;
 *  returns its length, or -1 when it does not fit. */
int sci_image_ack(int nimages, char *out, size_t out_size);

#endif
