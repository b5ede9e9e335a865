/* test_backend_responses_files.c -- the Responses backend's files (issue
 * 10): images and attachments in the request (input_image, input_file, the
 * code interpreter's container, include), recognising such an input again
 * on recovery, container_file_citation annotations and the generated files
 * they name (fetched inline or listed by reference before on_done), the
 * hosted tools' steps (file_search_call, code_interpreter_call), gathered
 * over every round of a turn, and a file the API does not have
 * (file_not_found, reject class).  Against the scripted in-process server
 * (backend_fixture.h); the pure builders directly.
 * Needs: loopback networking only.  ASan checks memory; bfx_free checks
 * that every request matched a route and the loop closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "backend_fixture.h"
#include "log.h"
#include "rsp_int.h"

/* ---- turn results ----------------------------------------------------------------------- */

typedef struct tres {
  int done;
  be_end end;
  int err, http_status;
  char status[32], error_code[64], errmsg[512];
  char text[512];
  char ann_type[40], ann_container[40], ann_file[40];
  size_t nfiles, nsteps;
  char file_id[2][40], file_container[2][40], file_name[2][40], file_type[2][40], file_data[2][64];
  int64_t file_bytes[2];
  int file_inline[2];
  char step_type[4][24], step_id[4][24], step_detail[4][256];
} tres;

static void t_done(void *o, const be_turn_result *r) {
  tres *t = o;
  uv_stop(bfx_loop);
  t->done = 1;
  t->end = r->end;
  t->err = r->err;
  t->http_status = r->http_status;
  snprintf(t->status, sizeof t->status, "%s", r->status ? r->status : "");
  snprintf(t->error_code, sizeof t->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(t->errmsg, sizeof t->errmsg, "%s", r->errmsg ? r->errmsg : "");
  for (size_t i = 0; i < r->nmessages; i++)
    for (size_t j = 0; j < r->messages[i].nparts; j++) {
      const contract_out_part *p = &r->messages[i].parts[j];
      strncat(t->text, p->text, sizeof t->text - strlen(t->text) - 1);
      if (p->nannotations) {
        snprintf(t->ann_type, sizeof t->ann_type, "%s", p->annotations[0].type);
        snprintf(t->ann_container, sizeof t->ann_container, "%s",
                 p->annotations[0].container_id ? p->annotations[0].container_id : "(null)");
        snprintf(t->ann_file, sizeof t->ann_file, "%s", p->annotations[0].file_id);
      }
    }
  t->nfiles = r->nfiles;
  for (size_t i = 0; i < r->nfiles && i < 2; i++) {
    const contract_file *f = &r->files[i];
    snprintf(t->file_id[i], sizeof t->file_id[i], "%s", f->file_id);
    snprintf(t->file_container[i], sizeof t->file_container[i], "%s", f->container_id ? f->container_id : "");
    snprintf(t->file_name[i], sizeof t->file_name[i], "%s", f->filename ? f->filename : "");
    snprintf(t->file_type[i], sizeof t->file_type[i], "%s", f->media_type ? f->media_type : "");
    t->file_bytes[i] = f->bytes;
    t->file_inline[i] = f->data != NULL;
    if (f->data && f->data_len < sizeof t->file_data[i]) memcpy(t->file_data[i], f->data, f->data_len);
  }
  t->nsteps = r->nsteps;
  for (size_t i = 0; i < r->nsteps && i < 4; i++) {
    const contract_step *s = &r->steps[i];
    snprintf(t->step_type[i], sizeof t->step_type[i], "%s", s->type);
    snprintf(t->step_id[i], sizeof t->step_id[i], "%s", s->id ? s->id : "");
    char *d = t->step_detail[i];
    size_t n = sizeof t->step_detail[i];
    /* one line per step: status|queries|results (file:name:score:text)|code|outputs */
    int w = snprintf(d, n, "%s|", s->status ? s->status : "-");
    for (size_t k = 0; k < s->nqueries; k++) w += snprintf(d + w, n - (size_t)w, "%s;", s->queries[k]);
    w += snprintf(d + w, n - (size_t)w, "|");
    for (size_t k = 0; k < s->nresults; k++)
      w += snprintf(d + w, n - (size_t)w, "%s:%s:%.2f:%s;", s->results[k].file_id, s->results[k].filename,
                    s->results[k].score, s->results[k].text ? s->results[k].text : "-");
    w += snprintf(d + w, n - (size_t)w, "|%s|", s->code ? s->code : "-");
    for (size_t k = 0; k < s->noutputs; k++)
      w += snprintf(d + w, n - (size_t)w, "%s=%s;", s->outputs[k].type,
                    s->outputs[k].logs ? s->outputs[k].logs : s->outputs[k].file_id);
  }
}

static const be_turn_events EV = {.on_done = t_done};

static const be_assistant ASST_FN = {
    .name = "bot", .model = "gpt-4o",
    .tools_json = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}]",
    .hash = "h1"};
static const be_assistant ASST_CI = {
    .name = "bot", .model = "gpt-4o", .tools_json = "[{\"type\":\"code_interpreter\"}]", .hash = "h2"};

static const contract_part TEXT[] = {{.type = CONTRACT_PART_TEXT, .text = "Chart it", .text_len = 8}};

static be_turn_input input(const be_assistant *a, const contract_part *parts, size_t nparts) {
  be_turn_input in;
  memset(&in, 0, sizeof in);
  in.conversation_id = "c-1";
  in.event_id = "e-1";
  in.handle = "conv_1";
  in.assistant = a;
  in.parts = parts;
  in.nparts = nparts;
  in.tools_routed = 1;
  in.inline_file_max = 1024;
  return in;
}

static ss_resp sse(const char *body) {
  return (ss_resp){.status = 200, .body = body, .ctype = "text/event-stream", .mode = SS_CHUNKED, .chunk = 41};
}

static char *body_json(bfx *f, ss_route *r) { return ss_last_body(&f->srv, r); }

/* ---- output items ----------------------------------------------------------------------------- */

#define CI_ITEM(id, code, outputs) \
  "{\"id\":\"" id "\",\"type\":\"code_interpreter_call\",\"status\":\"completed\",\"container_id\":\"cntr_1\"," \
  "\"code\":\"" code "\",\"outputs\":" outputs "}"
#define FS_ITEM(id) \
  "{\"id\":\"" id "\",\"type\":\"file_search_call\",\"status\":\"completed\",\"queries\":[\"sales 2025\"]," \
  "\"results\":[{\"file_id\":\"file-doc\",\"filename\":\"sales.pdf\",\"score\":0.75,\"text\":\"Q1 up\"}," \
  "{\"filename\":\"no-id.pdf\",\"score\":0.5}]}"
#define CITING_MSG(id, text, fid, name, end) \
  "{\"id\":\"" id "\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[" \
  "{\"type\":\"output_text\",\"text\":\"" text "\",\"annotations\":[{\"type\":\"container_file_citation\"," \
  "\"container_id\":\"cntr_1\",\"file_id\":\"" fid "\",\"filename\":\"" name "\",\"start_index\":0," \
  "\"end_index\":" #end "}]}]}"
#define CI_OUTPUTS \
  "[{\"type\":\"logs\",\"logs\":\"5 values\"}," \
  "{\"type\":\"image\",\"url\":\"https://api.test/v1/containers/cntr_1/files/cfile_png/content\"}," \
  "{\"type\":\"image\",\"url\":\"https://elsewhere.test/x.png\"}," \
  "{\"type\":\"image\",\"url\":\"sandbox:/mnt/data/summary.csv\"}," \
  "{\"type\":\"image\",\"url\":\"sandbox:/mnt/data/uncited.png\"}]"

#define J_CREATED(id) \
  "{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"" id "\",\"status\":\"queued\",\"output\":[]}}"
#define J_ITEM_DONE(item, seq) \
  "{\"type\":\"response.output_item.done\",\"sequence_number\":" #seq ",\"output_index\":0,\"item\":" item "}"
#define J_COMPLETED(id, output, seq) \
  "{\"type\":\"response.completed\",\"sequence_number\":" #seq ",\"response\":{\"id\":\"" id \
  "\",\"status\":\"completed\",\"output\":[" output "]}}"
#define DATA_(json) "data: " json "\n\n"

/* A code interpreter turn: a search, the code and a message citing the
 * CSV it wrote (the final response's output repeats the items). */
static const char *SSE_CHART =
    DATA_(J_CREATED("resp_1"))
    DATA_(J_ITEM_DONE(FS_ITEM("fs_1"), 1))
    DATA_(J_ITEM_DONE(CI_ITEM("ci_1", "print(1)", CI_OUTPUTS), 2))
    DATA_(J_ITEM_DONE(CITING_MSG("msg_1", "summary.csv is ready", "cfile_csv", "summary.csv", 11), 3))
    DATA_(J_COMPLETED("resp_1", FS_ITEM("fs_1") "," CI_ITEM("ci_1", "print(1)", CI_OUTPUTS) ","
                      CITING_MSG("msg_1", "summary.csv is ready", "cfile_csv", "summary.csv", 11), 4));

#define CFILE_META(id, bytes, path) \
  "{\"id\":\"" id "\",\"object\":\"container.file\",\"container_id\":\"cntr_1\",\"created_at\":1," \
  "\"bytes\":" #bytes ",\"path\":\"" path "\",\"source\":\"assistant\"}"

/* ==== sending ================================================================================== */

static void test_images_and_attachments_go_as_input_parts_and_the_container_with_include(void **state) {
  (void)state;
  contract_part parts[] = {
      {.type = CONTRACT_PART_TEXT, .text = "What is on these?", .text_len = 17},
      {.type = CONTRACT_PART_IMAGE_URL, .text = "https://x.test/a.png"},
      {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-img", .detail = "low"}};
  contract_attachment atts[] = {{.file_id = "file-doc", .tools = CONTRACT_ATT_FILE_SEARCH},
                                {.file_id = "file-csv", .tools = CONTRACT_ATT_CODE_INTERPRETER},
                                {.file_id = "file-both", .tools = CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER}};
  be_turn_input in = input(&ASST_FN, parts, 3);
  in.attachments = atts;
  in.nattachments = 3;
  in.include_steps = 1;
  cJSON *inp = NULL, *body = NULL;
  assert_int_equal(rsp_input_user(&in, &inp), AW_OK);
  size_t unplaced = 9;
  assert_int_equal(rsp_json_turn_body(&in, inp, 0, 1, &body, NULL, &unplaced), AW_OK);
  assert_int_equal(unplaced, 0);
  char *s = cJSON_PrintUnformatted(body);
  assert_non_null(strstr(s, "\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":["
                            "{\"type\":\"input_text\",\"text\":\"What is on these?\"},"
                            "{\"type\":\"input_image\",\"image_url\":\"https://x.test/a.png\",\"detail\":\"auto\"},"
                            "{\"type\":\"input_image\",\"file_id\":\"file-img\",\"detail\":\"low\"},"
                            "{\"type\":\"input_file\",\"file_id\":\"file-doc\"},"
                            "{\"type\":\"input_file\",\"file_id\":\"file-both\"}]}]"));
  /* the assistant has no code interpreter: added, with the files */
  assert_non_null(strstr(s, "{\"type\":\"code_interpreter\",\"container\":{\"type\":\"auto\","
                            "\"file_ids\":[\"file-csv\",\"file-both\"]}}"));
  assert_non_null(strstr(s, "\"include\":[\"file_search_call.results\",\"code_interpreter_call.outputs\"]"));
  cJSON_free(s);
  cJSON_Delete(body);

  /* a continuation keeps the tools (and their files), and the include */
  assert_int_equal(rsp_json_turn_body(&in, inp, 1, 1, &body, NULL, NULL), AW_OK);
  s = cJSON_PrintUnformatted(body);
  assert_non_null(strstr(s, "\"file_ids\":[\"file-csv\",\"file-both\"]"));
  assert_non_null(strstr(s, "\"include\":["));
  cJSON_free(s);
  cJSON_Delete(body);
  cJSON_Delete(inp);

  /* without files and steps: the request is today's (one string, no include) */
  be_turn_input plain = input(&ASST_FN, TEXT, 1);
  assert_int_equal(rsp_input_user(&plain, &inp), AW_OK);
  assert_int_equal(rsp_json_turn_body(&plain, inp, 0, 1, &body, NULL, NULL), AW_OK);
  s = cJSON_PrintUnformatted(body);
  assert_non_null(strstr(s, "\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":\"Chart it\"}]"));
  assert_null(strstr(s, "include"));
  assert_null(strstr(s, "code_interpreter"));
  cJSON_free(s);
  cJSON_Delete(body);
  cJSON_Delete(inp);
}

static void test_code_files_merge_into_an_auto_container_and_not_into_a_named_one(void **state) {
  (void)state;
  contract_attachment atts[] = {{.file_id = "file-a", .tools = CONTRACT_ATT_CODE_INTERPRETER},
                                {.file_id = "file-b", .tools = CONTRACT_ATT_CODE_INTERPRETER},
                                {.file_id = "file-s", .tools = CONTRACT_ATT_FILE_SEARCH}};
  cJSON *tools = cJSON_Parse("[{\"type\":\"function\",\"name\":\"f\"},"
                             "{\"type\":\"code_interpreter\",\"container\":{\"type\":\"auto\",\"file_ids\":[\"file-a\",\"file-0\"]}}]");
  size_t unplaced = 9;
  assert_int_equal(rsp_input_code_files(&tools, atts, 3, &unplaced), AW_OK);
  assert_int_equal(unplaced, 0);
  char *s = cJSON_PrintUnformatted(tools);
  assert_string_equal(s, "[{\"type\":\"function\",\"name\":\"f\"},{\"type\":\"code_interpreter\",\"container\":"
                         "{\"type\":\"auto\",\"file_ids\":[\"file-a\",\"file-0\",\"file-b\"]}}]");
  cJSON_free(s);
  cJSON_Delete(tools);

  tools = cJSON_Parse("[{\"type\":\"code_interpreter\",\"container\":\"cntr_fixed\"}]");
  assert_int_equal(rsp_input_code_files(&tools, atts, 3, &unplaced), AW_OK);
  assert_int_equal(unplaced, 2);
  s = cJSON_PrintUnformatted(tools);
  assert_string_equal(s, "[{\"type\":\"code_interpreter\",\"container\":\"cntr_fixed\"}]");
  cJSON_free(s);
  cJSON_Delete(tools);

  /* no code interpreter attachment: tools untouched (NULL stays NULL) */
  tools = NULL;
  assert_int_equal(rsp_input_code_files(&tools, &atts[2], 1, &unplaced), AW_OK);
  assert_null(tools);
  contract_attachment noid = {.tools = CONTRACT_ATT_CODE_INTERPRETER};
  assert_int_equal(rsp_input_code_files(&tools, &noid, 1, &unplaced), AW_EINVAL);
  cJSON_Delete(tools);
}

/* ==== recovery =================================================================================== */

/* The conversation as a server lists it after taking our input: the image
 * part without its url (listed only with include message.input_image.image_url). */
static const char *ITEMS_WITH_IMAGE_INPUT =
    "{\"object\":\"list\",\"has_more\":false,\"data\":["
    "{\"id\":\"msg_a\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":["
    "{\"type\":\"output_text\",\"text\":\"I see 1 image(s). A cat.\",\"annotations\":[]}]},"
    "{\"id\":\"msg_u\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":["
    "{\"type\":\"input_text\",\"text\":\"What is it?\"},"
    "{\"type\":\"input_image\",\"file_id\":\"file-img\",\"image_url\":null,\"detail\":\"auto\"},"
    "{\"type\":\"input_file\",\"file_id\":\"file-doc\"}]}]}";

static void test_recovery_recognises_an_input_with_images_and_files_and_posts_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = ITEMS_WITH_IMAGE_INPUT});
  bfx_start(f);
  contract_part parts[] = {{.type = CONTRACT_PART_TEXT, .text = "What is it?", .text_len = 11},
                           {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-img"}};
  contract_attachment att = {.file_id = "file-doc", .tools = CONTRACT_ATT_FILE_SEARCH};
  be_turn_input in = input(&ASST_FN, parts, 2);
  in.attachments = &att;
  in.nattachments = 1;
  in.recover = 1; /* an earlier attempt may have posted: look first */
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.text, "I see 1 image(s). A cat.");
  assert_int_equal(ss_count(&f->srv, items), 1);
  bfx_free(f); /* a POST /responses would be an unmatched request */

  /* another image in the newest user message: not ours, posted */
  cJSON *stored = cJSON_Parse("{\"type\":\"input_image\",\"file_id\":\"file-other\",\"detail\":\"auto\"}");
  cJSON *sent = cJSON_Parse("{\"type\":\"input_image\",\"file_id\":\"file-img\",\"detail\":\"auto\"}");
  assert_int_equal(rsp_input_same_part(stored, sent), 0);
  cJSON_Delete(stored);
  stored = cJSON_Parse("{\"type\":\"input_file\",\"file_id\":\"file-img\"}");
  assert_int_equal(rsp_input_same_part(stored, sent), 0);
  cJSON_Delete(stored);
  cJSON_Delete(sent);
}

/* ==== receiving ==================================================================================== */

static void test_container_citation_file_is_fetched_inline_and_steps_are_reported(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_CHART));
  ss_route *meta = ss_route_add(&f->srv, "GET", "/v1/containers/cntr_1/files/cfile_csv");
  ss_add_resp(meta, (ss_resp){.status = 200, .body = CFILE_META("cfile_csv", 12, "/mnt/data/summary.csv")});
  ss_route *content = ss_route_add(&f->srv, "GET", "/v1/containers/cntr_1/files/cfile_csv/content");
  ss_add_resp(content, (ss_resp){.status = 200, .body = "n,value\n1,5\n", .ctype = "text/csv"});
  bfx_start(f);
  be_turn_input in = input(&ASST_CI, TEXT, 1);
  in.include_steps = 1;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "summary.csv is ready");
  assert_string_equal(t.ann_type, "container_file_citation");
  assert_string_equal(t.ann_container, "cntr_1");
  assert_string_equal(t.ann_file, "cfile_csv");
  assert_int_equal(t.nfiles, 1);
  assert_string_equal(t.file_id[0], "cfile_csv");
  assert_string_equal(t.file_container[0], "cntr_1");
  assert_string_equal(t.file_name[0], "summary.csv");
  assert_string_equal(t.file_type[0], "text/csv");
  assert_int_equal(t.file_bytes[0], 12);
  assert_int_equal(t.file_inline[0], 1);
  assert_string_equal(t.file_data[0], "n,value\n1,5\n");
  /* steps in output order; a result without file id, an image that is no
   * container file and one at a path no message cites are left out; the
   * one at the cited file's path is that file */
  assert_int_equal(t.nsteps, 2);
  assert_string_equal(t.step_type[0], "file_search");
  assert_string_equal(t.step_id[0], "fs_1");
  assert_string_equal(t.step_detail[0], "completed|sales 2025;|file-doc:sales.pdf:0.75:Q1 up;|-|");
  assert_string_equal(t.step_type[1], "code_interpreter");
  assert_string_equal(t.step_id[1], "ci_1");
  assert_string_equal(t.step_detail[1], "completed|||print(1)|logs=5 values;image=cfile_png;image=cfile_csv;");
  char *b = body_json(f, post);
  assert_non_null(strstr(b, "\"include\":[\"file_search_call.results\",\"code_interpreter_call.outputs\"]"));
  free(b);
  assert_int_equal(ss_count(&f->srv, meta), 1);
  assert_int_equal(ss_count(&f->srv, content), 1);
  bfx_free(f);
}

static void test_file_over_the_inline_cap_is_listed_by_reference_and_steps_need_include(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_CHART));
  ss_route *meta = ss_route_add(&f->srv, "GET", "/v1/containers/cntr_1/files/cfile_csv");
  ss_add_resp(meta, (ss_resp){.status = 200, .body = CFILE_META("cfile_csv", 307200, "/mnt/data/summary.csv")});
  bfx_start(f);
  be_turn_input in = input(&ASST_CI, TEXT, 1); /* include_steps 0 */
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.nfiles, 1);
  assert_string_equal(t.file_id[0], "cfile_csv");
  assert_int_equal(t.file_bytes[0], 307200);
  assert_int_equal(t.file_inline[0], 0);
  assert_int_equal(t.nsteps, 0);
  char *b = body_json(f, post);
  assert_null(strstr(b, "\"include\""));
  free(b);
  bfx_free(f); /* no content request was made (it has no route) */
}

/* A turn of two rounds: the code ran in the first (before a function
 * call), the answer of the second cites the file.  The conversation's
 * items since the turn's user message hold both rounds; an older turn's
 * code_interpreter_call (before that message) is not this turn's. */
static const char *ITEMS_TWO_ROUNDS =
    "{\"object\":\"list\",\"has_more\":false,\"data\":["
    CITING_MSG("msg_2", "chart.png attached", "cfile_png", "chart.png", 9) ","
    "{\"id\":\"fco_1\",\"type\":\"function_call_output\",\"call_id\":\"call_a\",\"output\":\"21\"},"
    "{\"id\":\"fc_1\",\"type\":\"function_call\",\"call_id\":\"call_a\",\"name\":\"get_weather\",\"arguments\":\"{}\",\"status\":\"completed\"},"
    CI_ITEM("ci_1", "plot()", "[{\"type\":\"logs\",\"logs\":\"plotted\"}]") ","
    "{\"id\":\"msg_u\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"Chart it\"}]},"
    CI_ITEM("ci_old", "old()", "[]") "]}";

static const char *SSE_SECOND_ROUND =
    DATA_(J_CREATED("resp_2"))
    DATA_(J_COMPLETED("resp_2", CITING_MSG("msg_2", "chart.png attached", "cfile_png", "chart.png", 9), 1));

static void test_continuation_gathers_the_steps_and_files_of_earlier_rounds(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_SECOND_ROUND));
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = ITEMS_TWO_ROUNDS});
  ss_route *meta = ss_route_add(&f->srv, "GET", "/v1/containers/cntr_1/files/cfile_png");
  ss_add_resp(meta, (ss_resp){.status = 200, .body = CFILE_META("cfile_png", 4, "/mnt/data/chart.png")});
  ss_route *content = ss_route_add(&f->srv, "GET", "/v1/containers/cntr_1/files/cfile_png/content");
  ss_add_resp(content, (ss_resp){.status = 200, .body = "PNG!", .ctype = "image/png"});
  bfx_start(f);
  be_turn_input in = input(&ASST_CI, TEXT, 1);
  in.include_steps = 1;
  in.checkpoint = "r1 conv_1 resp_1 0";
  be_tool_output out = {"call_a", "21"};
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_continue(f->be, &in, 1, &out, 1, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.text, "chart.png attached");
  assert_int_equal(t.nsteps, 1);
  assert_string_equal(t.step_id[0], "ci_1");
  assert_string_equal(t.step_detail[0], "completed|||plot()|logs=plotted;");
  assert_int_equal(t.nfiles, 1);
  assert_string_equal(t.file_id[0], "cfile_png");
  assert_string_equal(t.file_type[0], "image/png");
  assert_string_equal(t.file_data[0], "PNG!");
  assert_int_equal(ss_count(&f->srv, items), 1);
  char *q = ss_last_query(&f->srv, items);
  assert_non_null(strstr(q, "order=desc"));
  assert_non_null(strstr(q, "code_interpreter_call.outputs"));
  free(q);
  bfx_free(f);
}

/* A turn whose tools are functions only makes no request for files or
 * steps, whatever the rounds. */
static void test_function_only_continuation_reads_no_items(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(DATA_(J_CREATED("resp_2")) DATA_(J_COMPLETED(
                        "resp_2", "{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"content\":["
                                  "{\"type\":\"output_text\",\"text\":\"Sunny\",\"annotations\":[]}]}", 1))));
  bfx_start(f);
  be_turn_input in = input(&ASST_FN, TEXT, 1);
  in.include_steps = 1;
  in.checkpoint = "r1 conv_1 resp_1 0";
  be_tool_output out = {"call_a", "21"};
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_continue(f->be, &in, 1, &out, 1, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.text, "Sunny");
  assert_int_equal(t.nsteps, 0);
  assert_int_equal(t.nfiles, 0);
  bfx_free(f); /* an items request would be unmatched */
}

/* ==== errors ========================================================================================== */

static void test_post_refused_for_a_missing_file_ends_file_not_found_reject(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No such File object: file-img\","
                                                     "\"type\":\"invalid_request_error\",\"param\":\"input\"}}"});
  ss_add_resp(post, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"File file-csv not found.\","
                                                     "\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Invalid image file-img: "
                                                     "unsupported format\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  contract_part parts[] = {{.type = CONTRACT_PART_TEXT, .text = "Look", .text_len = 4},
                           {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-img"}};
  contract_attachment att = {.file_id = "file-csv", .tools = CONTRACT_ATT_CODE_INTERPRETER};
  be_turn_input in = input(&ASST_FN, parts, 2);
  in.attachments = &att;
  in.nattachments = 1;
  for (int i = 0; i < 3; i++) {
    tres t = {0};
    be_op *op;
    assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
    ss_run_until(&f->loop, &t.done);
    assert_int_equal(t.end, BE_END_ERROR);
    if (i < 2) { /* 404 naming the image; 400 saying the attachment is not found */
      assert_int_equal(t.err, AW_ENOTFOUND);
      assert_string_equal(t.error_code, "file_not_found");
      assert_int_equal(aw_error_classify(t.err), AW_CLASS_REJECT);
      assert_int_equal(t.http_status, i == 0 ? 404 : 400);
    } else { /* a file that is there but refused: the API's own error */
      assert_int_equal(t.err, AW_EHTTP4XX);
      assert_string_equal(t.error_code, "invalid_request_error");
    }
  }
  assert_int_equal(ss_count(&f->srv, post), 3);
  bfx_free(f);
}

/* ==== the hosted collector ============================================================================== */

static void test_steps_are_kept_once_and_a_step_past_the_budget_is_dropped_not_fatal(void **state) {
  (void)state;
  rsp_hosted h;
  rsp_hosted_init(&h, 1);
  cJSON *fs = cJSON_Parse(FS_ITEM("fs_1"));
  assert_int_equal(rsp_hosted_add_item(&h, fs), AW_OK);
  assert_int_equal(rsp_hosted_add_item(&h, fs), AW_OK); /* output_item.done, then the final output */
  assert_int_equal(rsp_hosted_nsteps(&h), 1);
  /* a step whose logs exceed the budget: left out, counted */
  size_t big = 300 * 1024;
  char *logs = malloc(big + 1);
  memset(logs, 'x', big);
  logs[big] = '\0';
  cJSON *ci = cJSON_Parse(CI_ITEM("ci_big", "x", "[]"));
  cJSON *outs = cJSON_GetObjectItem(ci, "outputs"), *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "logs");
  cJSON_AddStringToObject(o, "logs", logs);
  cJSON_AddItemToArray(outs, o);
  assert_int_equal(rsp_hosted_add_item(&h, ci), AW_OK);
  assert_int_equal(rsp_hosted_nsteps(&h), 1);
  assert_int_equal(h.dropped, 1);
  /* merge: src's new step and file after dst's, duplicates skipped */
  rsp_hosted src;
  rsp_hosted_init(&src, 1);
  cJSON *ci2 = cJSON_Parse(CI_ITEM("ci_2", "y", CI_OUTPUTS));
  cJSON *msg = cJSON_Parse(CITING_MSG("m", "t", "cfile_1", "a.csv", 1));
  assert_int_equal(rsp_hosted_add_item(&src, fs), AW_OK);
  assert_int_equal(rsp_hosted_add_item(&src, ci2), AW_OK);
  assert_int_equal(rsp_hosted_add_item(&src, msg), AW_OK);
  assert_int_equal(rsp_hosted_merge(&h, &src), AW_OK);
  const contract_step *st;
  const gf_ref *refs;
  size_t ns, nr;
  assert_int_equal(rsp_hosted_build(&h, &st, &ns, &refs, &nr), AW_OK);
  assert_int_equal(ns, 2);
  assert_string_equal(st[0].id, "fs_1");
  assert_string_equal(st[1].id, "ci_2");
  assert_int_equal(st[1].noutputs, 2);
  assert_string_equal(st[1].outputs[1].type, "image");
  assert_string_equal(st[1].outputs[1].file_id, "cfile_png");
  assert_int_equal(nr, 1);
  assert_string_equal(refs[0].file_id, "cfile_1");
  assert_string_equal(refs[0].container_id, "cntr_1");
  assert_string_equal(refs[0].filename, "a.csv");
  /* without want_steps: files only */
  rsp_hosted none;
  rsp_hosted_init(&none, 0);
  assert_int_equal(rsp_hosted_add_item(&none, fs), AW_OK);
  assert_int_equal(rsp_hosted_add_item(&none, msg), AW_OK);
  assert_int_equal(rsp_hosted_nsteps(&none), 0);
  assert_int_equal(rsp_hosted_nfiles(&none), 1);
  rsp_hosted_free(&none);
  cJSON_Delete(fs);
  cJSON_Delete(ci);
  cJSON_Delete(ci2);
  cJSON_Delete(msg);
  free(logs);
  rsp_hosted_free(&src);
  rsp_hosted_free(&h);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_images_and_attachments_go_as_input_parts_and_the_container_with_include),
      cmocka_unit_test(test_code_files_merge_into_an_auto_container_and_not_into_a_named_one),
      cmocka_unit_test(test_recovery_recognises_an_input_with_images_and_files_and_posts_nothing),
      cmocka_unit_test(test_container_citation_file_is_fetched_inline_and_steps_are_reported),
      cmocka_unit_test(test_file_over_the_inline_cap_is_listed_by_reference_and_steps_need_include),
      cmocka_unit_test(test_continuation_gathers_the_steps_and_files_of_earlier_rounds),
      cmocka_unit_test(test_function_only_continuation_reads_no_items),
      cmocka_unit_test(test_post_refused_for_a_missing_file_ends_file_not_found_reject),
      cmocka_unit_test(test_steps_are_kept_once_and_a_step_past_the_budget_is_dropped_not_fatal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
