/* test_backend_assistants_files.c -- the Assistants backend's files: what a
 * turn sends (image_url / image_file content parts, attachments, the run's
 * tools override when an attachment needs a tool the assistant lacks, also
 * for an assistant named by id and on recovery), what it brings back
 * (image_file parts and file_path annotations -> the result's files, inline
 * or by reference; the run's steps with include[]), and a message naming a
 * file the API does not know (file_not_found, reject).  Scripted server
 * (backend_fixture.h); loopback networking only.  Each test frees the
 * backend and checks the loop closes; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_json.h"
#include "api_steps.h"
#include "backend.h"
#include "backend_fixture.h"

/* ---- the result, copied ---------------------------------------------------------- */

typedef struct fres {
  int done, end, err;
  char status[32], error_code[64], errmsg[512];
  size_t nmessages, nparts;
  char part_type[2][32], part_text[2][64];
  size_t nann;
  char ann_type[32], ann_file[32];
  size_t nfiles;
  struct {
    char id[32], name[64], media[64], data[64];
    int64_t bytes;
    int inline_;
  } files[4];
  size_t nsteps;
  struct {
    char type[32], id[32], status[32], code[64];
    size_t nresults, noutputs;
    char r_file[32], r_name[32], r_text[64];
    double r_score;
    char o_type[2][16], o_val[2][32];
  } steps[4];
  be_op *op;
} fres;

static void t_done(void *o, const be_turn_result *r) {
  fres *t = o;
  uv_stop(bfx_loop);
  t->done++;
  t->end = (int)r->end;
  t->err = r->err;
  snprintf(t->status, sizeof t->status, "%s", r->status ? r->status : "");
  snprintf(t->error_code, sizeof t->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(t->errmsg, sizeof t->errmsg, "%s", r->errmsg ? r->errmsg : "");
  t->nmessages = r->nmessages;
  for (size_t i = 0; i < r->nmessages; i++)
    for (size_t j = 0; j < r->messages[i].nparts; j++) {
      const contract_out_part *p = &r->messages[i].parts[j];
      if (t->nparts < 2) {
        snprintf(t->part_type[t->nparts], sizeof t->part_type[0], "%s", p->type);
        snprintf(t->part_text[t->nparts], sizeof t->part_text[0], "%.*s", (int)p->text_len, p->text);
      }
      t->nparts++;
      for (size_t k = 0; k < p->nannotations; k++, t->nann++) {
        snprintf(t->ann_type, sizeof t->ann_type, "%s", p->annotations[k].type);
        snprintf(t->ann_file, sizeof t->ann_file, "%s", p->annotations[k].file_id);
      }
    }
  t->nfiles = r->nfiles;
  for (size_t i = 0; i < r->nfiles && i < 4; i++) {
    const contract_file *f = &r->files[i];
    snprintf(t->files[i].id, sizeof t->files[i].id, "%s", f->file_id);
    snprintf(t->files[i].name, sizeof t->files[i].name, "%s", f->filename ? f->filename : "");
    snprintf(t->files[i].media, sizeof t->files[i].media, "%s", f->media_type ? f->media_type : "");
    t->files[i].bytes = f->bytes;
    t->files[i].inline_ = f->data != NULL;
    if (f->data) snprintf(t->files[i].data, sizeof t->files[i].data, "%.*s", (int)f->data_len, (const char *)f->data);
  }
  t->nsteps = r->nsteps;
  for (size_t i = 0; i < r->nsteps && i < 4; i++) {
    const contract_step *s = &r->steps[i];
    snprintf(t->steps[i].type, sizeof t->steps[i].type, "%s", s->type);
    snprintf(t->steps[i].id, sizeof t->steps[i].id, "%s", s->id);
    snprintf(t->steps[i].status, sizeof t->steps[i].status, "%s", s->status ? s->status : "");
    snprintf(t->steps[i].code, sizeof t->steps[i].code, "%s", s->code ? s->code : "");
    t->steps[i].nresults = s->nresults;
    t->steps[i].noutputs = s->noutputs;
    if (s->nresults) {
      snprintf(t->steps[i].r_file, sizeof t->steps[i].r_file, "%s", s->results[0].file_id);
      snprintf(t->steps[i].r_name, sizeof t->steps[i].r_name, "%s", s->results[0].filename);
      snprintf(t->steps[i].r_text, sizeof t->steps[i].r_text, "%s", s->results[0].text ? s->results[0].text : "(none)");
      t->steps[i].r_score = s->results[0].score;
    }
    for (size_t k = 0; k < s->noutputs && k < 2; k++) {
      snprintf(t->steps[i].o_type[k], sizeof t->steps[i].o_type[k], "%s", s->outputs[k].type);
      snprintf(t->steps[i].o_val[k], sizeof t->steps[i].o_val[k], "%s",
               s->outputs[k].logs ? s->outputs[k].logs : s->outputs[k].file_id);
    }
  }
}

static const be_turn_events EVENTS = {.on_done = t_done};

/* ---- fixtures ------------------------------------------------------------------- */

#define RUN(id, st) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"thread_id\":\"thread_1\",\"assistant_id\":\"asst_1\",\"status\":\"" st "\"}"
#define LIST(items) "{\"object\":\"list\",\"data\":[" items "],\"has_more\":false}"
#define STREAM_WITH(msg)                                                        \
  "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"             \
  "event: thread.message.completed\ndata: " msg "\n\n"                         \
  "event: thread.run.completed\ndata: " RUN("run_1", "completed") "\n\n"        \
  "event: done\ndata: [DONE]\n\n"
#define MSG_TEXT "{\"id\":\"msg_a1\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"ok\",\"annotations\":[]}}]}"
#define MSG_FILES                                                                                        \
  "{\"id\":\"msg_a1\",\"role\":\"assistant\",\"content\":["                                              \
  "{\"type\":\"image_file\",\"image_file\":{\"file_id\":\"file_img\"}},"                                 \
  "{\"type\":\"text\",\"text\":{\"value\":\"Saved sandbox:/mnt/data/summary.csv\",\"annotations\":["     \
  "{\"type\":\"file_path\",\"text\":\"sandbox:/mnt/data/summary.csv\",\"file_path\":{\"file_id\":\"file_csv\"}," \
  "\"start_index\":6,\"end_index\":35}]}}]}"

static const contract_part PARTS[] = {
    {.type = CONTRACT_PART_TEXT, .text = "What is in these?", .text_len = 17},
    {.type = CONTRACT_PART_IMAGE_URL, .text = "https://example.com/cat.png", .detail = "low"},
    {.type = CONTRACT_PART_IMAGE_FILE, .text = "file_pic"},
};
static const contract_attachment ATTS[] = {
    {.file_id = "file_doc", .tools = CONTRACT_ATT_FILE_SEARCH},
    {.file_id = "file_data", .tools = CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER},
};
#define FN_TOOL "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}"
static const be_assistant CONFIGURED = {.id = "asst_1", .name = "bot", .model = "m", .hash = "h",
                                        .tools_json = "[" FN_TOOL "]"};
static const be_assistant BY_ID = {.id = "asst_1"};
static const contract_part TEXT = {.type = CONTRACT_PART_TEXT, .text = "Hi", .text_len = 2};

static be_turn_input input(const be_assistant *a) {
  be_turn_input in = {.conversation_id = "c-42", .event_id = "ev-1", .handle = "thread_1", .assistant = a,
                      .parts = &TEXT, .nparts = 1, .tools_routed = 1};
  return in;
}

static ss_route *runs_route(bfx *f, const char *stream) {
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(r, (ss_resp){.status = 200, .body = stream, .ctype = "text/event-stream"});
  return r;
}

static void run_turn(bfx *f, const be_turn_input *in, fres *t) {
  assert_int_equal(be_turn_start(f->be, in, &EVENTS, t, &t->op), AW_OK);
  ss_run_until(&f->loop, &t->done);
  assert_int_equal(t->done, 1);
}

/* ---- sending ---------------------------------------------------------------------- */

static void test_turn_sends_image_parts_attachments_and_the_assistants_tools_plus_the_missing_ones(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *runs = runs_route(f, STREAM_WITH(MSG_TEXT));
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.parts = PARTS;
  in.nparts = 3;
  in.attachments = ATTS;
  in.nattachments = 2;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  bfx_expect_body(f, runs,
                  "{\"assistant_id\":\"asst_1\",\"stream\":true,"
                  "\"tools\":[" FN_TOOL ",{\"type\":\"file_search\"},{\"type\":\"code_interpreter\"}],"
                  "\"metadata\":{\"aw_tag\":\"ev-1\"},"
                  "\"additional_messages\":[{\"role\":\"user\",\"content\":["
                  "{\"type\":\"text\",\"text\":\"What is in these?\"},"
                  "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/cat.png\",\"detail\":\"low\"}},"
                  "{\"type\":\"image_file\",\"image_file\":{\"file_id\":\"file_pic\"}}],"
                  "\"attachments\":[{\"file_id\":\"file_doc\",\"tools\":[{\"type\":\"file_search\"}]},"
                  "{\"file_id\":\"file_data\",\"tools\":[{\"type\":\"file_search\"},{\"type\":\"code_interpreter\"}]}],"
                  "\"metadata\":{\"event_id\":\"ev-1\",\"conversation_id\":\"c-42\"}}]}");
  bfx_free(f);
}

static void test_run_keeps_the_assistants_tools_when_they_cover_the_attachments(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *runs = runs_route(f, STREAM_WITH(MSG_TEXT));
  bfx_start(f);
  /* code_interpreter configured, file_search from the synced vector store */
  static const char *const vs[] = {"vs_1"};
  be_assistant a = CONFIGURED;
  a.tools_json = "[{\"type\":\"code_interpreter\"}]";
  a.vector_store_ids = vs;
  a.nvector_store_ids = 1;
  fres t = {0};
  be_turn_input in = input(&a);
  in.attachments = ATTS;
  in.nattachments = 2;
  run_turn(f, &in, &t);
  /* no run-level tools (they would come right after "stream"); the attachments go */
  char *b = ss_last_body(&f->srv, runs);
  int plain = !strncmp(b, "{\"assistant_id\":\"asst_1\",\"stream\":true,\"metadata\":", 50);
  int attached = strstr(b, "\"attachments\":[{\"file_id\":\"file_doc\"") != NULL;
  free(b);
  assert_true(plain);
  assert_true(attached);
  bfx_free(f);
}

static void test_run_tools_override_keeps_the_vector_store_file_search(void **state) {
  (void)state;
  char *out = NULL;
  assert_int_equal(api_json_run_tools("[" FN_TOOL "]", 1, CONTRACT_ATT_CODE_INTERPRETER, &out), AW_OK);
  assert_string_equal(out, "[" FN_TOOL ",{\"type\":\"file_search\"},{\"type\":\"code_interpreter\"}]");
  cJSON_free(out);
  assert_int_equal(api_json_run_tools(NULL, 0, 0, &out), AW_OK);
  assert_null(out);
  assert_int_equal(api_json_run_tools("{}", 0, CONTRACT_ATT_FILE_SEARCH, &out), AW_EINVAL);
}

static void test_assistant_named_by_id_is_read_for_its_tools_before_an_attachment_run(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *runs = runs_route(f, STREAM_WITH(MSG_TEXT));
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\",\"tools\":[" FN_TOOL "]}"});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&BY_ID);
  in.attachments = &ATTS[0];
  in.nattachments = 1;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(ss_count(&f->srv, get), 1);
  char *b = ss_last_body(&f->srv, runs);
  int found = strstr(b, "\"stream\":true,\"tools\":[" FN_TOOL ",{\"type\":\"file_search\"}]") != NULL;
  free(b);
  assert_true(found);
  /* without attachments nothing is read */
  fres t2 = {0};
  be_turn_input in2 = input(&BY_ID);
  run_turn(f, &in2, &t2);
  assert_int_equal(ss_count(&f->srv, get), 1);
  b = ss_last_body(&f->srv, runs);
  found = strstr(b, "\"tools\"") != NULL;
  free(b);
  assert_false(found);
  bfx_free(f);
}

/* Recovery finds the message the event added (metadata.event_id) as
 * before, and the run started for it still gets the tools override. */
static void test_recovery_runs_the_tagged_message_with_the_tools_override(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *runs = runs_route(f, STREAM_WITH(MSG_TEXT));
  ss_route *lruns = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  ss_add_resp(lruns, (ss_resp){.status = 200, .body = LIST("")});
  ss_route *lmsgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(lmsgs, (ss_resp){.status = 200,
                               .body = LIST("{\"id\":\"msg_u1\",\"role\":\"user\",\"metadata\":{\"event_id\":\"ev-1\"}}")});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.recover = 1;
  in.attachments = &ATTS[1];
  in.nattachments = 1;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(ss_count(&f->srv, runs), 1);
  bfx_expect_body(f, runs,
                  "{\"assistant_id\":\"asst_1\",\"stream\":true,"
                  "\"tools\":[" FN_TOOL ",{\"type\":\"file_search\"},{\"type\":\"code_interpreter\"}],"
                  "\"metadata\":{\"aw_tag\":\"ev-1\",\"aw_message_id\":\"msg_u1\"}}");
  bfx_free(f);
}

static void test_unsendable_parts_and_attachments_are_refused_before_any_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  bfx_start(f);
  fres t = {0};
  contract_part inline_only = {.type = CONTRACT_PART_IMAGE_FILE, .data = "x", .data_len = 1,
                               .media_type = "image/png"}; /* not uploaded: no file id */
  be_turn_input in = input(&CONFIGURED);
  in.parts = &inline_only;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_EINVAL);
  contract_attachment no_id = {.data = "x", .data_len = 1, .filename = "a.csv", .tools = CONTRACT_ATT_CODE_INTERPRETER};
  in = input(&CONFIGURED);
  in.attachments = &no_id;
  in.nattachments = 1;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_EINVAL);
  contract_part file = {.type = CONTRACT_PART_FILE, .text = "file_1"};
  in = input(&CONFIGURED);
  in.parts = &file;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_EINVAL);
  assert_int_equal(t.done, 0);
  bfx_free(f);
}

/* ---- errors ----------------------------------------------------------------------- */

static void test_message_naming_an_unknown_file_is_file_not_found_and_rejected(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *runs = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(runs, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No file with id 'file_gone' found.\","
                                                     "\"type\":\"invalid_request_error\"}}"});
  /* the simulator's wording, 400 */
  ss_route *runs2 = ss_route_add(&f->srv, "POST", "/v1/threads/thread_2/runs");
  ss_add_resp(runs2, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"No file found with id 'file_x'.\","
                                                      "\"code\":\"invalid_value\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.attachments = &ATTS[0];
  in.nattachments = 1;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_ENOTFOUND);
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_REJECT);
  assert_string_equal(t.error_code, "file_not_found");
  assert_non_null(strstr(t.errmsg, "file_gone"));
  assert_int_equal(ss_count(&f->srv, runs), 1);
  fres t2 = {0};
  in.handle = "thread_2";
  run_turn(f, &in, &t2);
  assert_int_equal(t2.err, AW_ENOTFOUND);
  assert_string_equal(t2.error_code, "file_not_found");
  assert_int_equal(ss_count(&f->srv, runs2), 1);
  bfx_free(f);
}

static void test_other_400_on_run_creation_keeps_its_own_code(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *runs = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(runs, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Invalid value\",\"code\":\"invalid_value\","
                                                     "\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_string_equal(t.error_code, "invalid_value");
  bfx_free(f);
}

/* ---- receiving: generated files ------------------------------------------------------ */

static void test_image_file_part_and_file_path_annotation_come_back_as_files_inline_and_by_reference(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  runs_route(f, STREAM_WITH(MSG_FILES));
  ss_route *img = ss_route_add(&f->srv, "GET", "/v1/files/file_img");
  ss_add_resp(img, (ss_resp){.status = 200, .body = "{\"id\":\"file_img\",\"object\":\"file\",\"bytes\":4,"
                                                    "\"created_at\":1,\"filename\":\"chart.png\",\"purpose\":\"assistants_output\"}"});
  ss_route *img_c = ss_route_add(&f->srv, "GET", "/v1/files/file_img/content");
  ss_add_resp(img_c, (ss_resp){.status = 200, .body = "PNG!", .ctype = "application/octet-stream"});
  ss_route *csv = ss_route_add(&f->srv, "GET", "/v1/files/file_csv");
  ss_add_resp(csv, (ss_resp){.status = 200, .body = "{\"id\":\"file_csv\",\"object\":\"file\",\"bytes\":5000,"
                                                    "\"created_at\":1,\"filename\":\"/mnt/data/summary.csv\",\"purpose\":\"assistants_output\"}"});
  ss_route *csv_c = ss_route_add(&f->srv, "GET", "/v1/files/file_csv/content");
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.inline_file_max = 1000;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.part_type[0], "image_file");
  assert_string_equal(t.part_text[0], "file_img");
  assert_string_equal(t.ann_type, "file_path");
  assert_string_equal(t.ann_file, "file_csv");
  assert_int_equal(t.nfiles, 2);
  assert_string_equal(t.files[0].id, "file_img");
  assert_string_equal(t.files[0].name, "chart.png");
  assert_string_equal(t.files[0].media, "image/png");
  assert_true(t.files[0].inline_);
  assert_string_equal(t.files[0].data, "PNG!");
  assert_string_equal(t.files[1].id, "file_csv");
  assert_string_equal(t.files[1].name, "summary.csv"); /* the annotation's name */
  assert_int_equal(t.files[1].bytes, 5000);
  assert_false(t.files[1].inline_); /* over inline_file_max: by reference */
  assert_int_equal(ss_count(&f->srv, csv_c), 0);
  bfx_free(f);
}

typedef struct waiter {
  uv_timer_t t;
  ss_server *srv;
  const ss_route *r;
  int seen;
} waiter;

static void on_wait_tick(uv_timer_t *h) {
  waiter *w = (waiter *)h;
  if (ss_count(w->srv, w->r) > 0) {
    w->seen = 1;
    uv_timer_stop(h);
    uv_stop(h->loop);
  }
}

/* Cancelled while a generated file is being fetched: no callback, nothing
 * leaks (ASan), the loop closes. */
static void test_cancel_while_fetching_generated_files_calls_nothing_back(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  runs_route(f, STREAM_WITH(MSG_FILES));
  ss_route *img = ss_route_add(&f->srv, "GET", "/v1/files/file_img");
  ss_add_resp(img, (ss_resp){.status = 200, .body = "{\"id\":\"file_img\",", .mode = SS_HANG});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.inline_file_max = 1000;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  waiter w = {.srv = &f->srv, .r = img};
  uv_timer_init(&f->loop, &w.t);
  uv_timer_start(&w.t, on_wait_tick, 2, 2);
  ss_run_until(&f->loop, &w.seen);
  uv_close((uv_handle_t *)&w.t, NULL);
  be_op_cancel(t.op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(t.done, 0);
  bfx_free(f);
}

static void test_answer_without_generated_files_fetches_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  runs_route(f, STREAM_WITH(MSG_TEXT));
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.inline_file_max = 1000;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.nfiles, 0);
  assert_int_equal(t.nsteps, 0);
  bfx_free(f); /* no files route: a request would be unmatched */
}

/* ---- receiving: steps ---------------------------------------------------------------- */

#define STEP_FS                                                                                         \
  "{\"id\":\"step_1\",\"type\":\"tool_calls\",\"status\":\"completed\",\"step_details\":{\"type\":\"tool_calls\"," \
  "\"tool_calls\":[{\"id\":\"call_fs\",\"type\":\"file_search\",\"file_search\":{\"results\":["          \
  "{\"file_id\":\"file_doc\",\"file_name\":\"guide.md\",\"score\":0.75,"                                 \
  "\"content\":[{\"type\":\"text\",\"text\":\"Reset it here\"}]}]}},"                                    \
  "{\"id\":\"call_fn\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}"
#define STEP_MSG "{\"id\":\"step_2\",\"type\":\"message_creation\",\"status\":\"completed\",\"step_details\":{\"type\":\"message_creation\",\"message_creation\":{\"message_id\":\"msg_a1\"}}}"
#define STEP_CI                                                                                         \
  "{\"id\":\"step_3\",\"type\":\"tool_calls\",\"status\":\"completed\",\"step_details\":{\"type\":\"tool_calls\"," \
  "\"tool_calls\":[{\"id\":\"call_ci\",\"type\":\"code_interpreter\",\"code_interpreter\":{\"input\":\"print(1)\"," \
  "\"outputs\":[{\"type\":\"logs\",\"logs\":\"1\\n\"},{\"type\":\"image\",\"image\":{\"file_id\":\"file_img\"}}]}}]}}"
#define INCLUDE_Q "include[]=step_details.tool_calls[*].file_search.results[*].content"

static void test_include_steps_lists_the_runs_hosted_calls_with_include_across_pages(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  runs_route(f, STREAM_WITH(MSG_TEXT));
  ss_route *steps = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1/steps");
  ss_add_resp(steps, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" STEP_FS "," STEP_MSG "],\"has_more\":true}"});
  ss_add_resp(steps, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" STEP_CI "],\"has_more\":false}"});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.include_steps = 1;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(ss_count(&f->srv, steps), 2);
  bfx_expect_query(f, steps, "limit=100&order=asc&" INCLUDE_Q "&after=step_2");
  assert_int_equal(t.nsteps, 2); /* the function call is left out */
  assert_string_equal(t.steps[0].type, "file_search");
  assert_string_equal(t.steps[0].id, "call_fs");
  assert_string_equal(t.steps[0].status, "completed");
  assert_int_equal(t.steps[0].nresults, 1);
  assert_string_equal(t.steps[0].r_file, "file_doc");
  assert_string_equal(t.steps[0].r_name, "guide.md");
  assert_string_equal(t.steps[0].r_text, "Reset it here");
  assert_true(t.steps[0].r_score > 0.74 && t.steps[0].r_score < 0.76);
  assert_string_equal(t.steps[1].type, "code_interpreter");
  assert_string_equal(t.steps[1].code, "print(1)");
  assert_int_equal(t.steps[1].noutputs, 2);
  assert_string_equal(t.steps[1].o_type[0], "logs");
  assert_string_equal(t.steps[1].o_val[0], "1\n");
  assert_string_equal(t.steps[1].o_type[1], "image");
  assert_string_equal(t.steps[1].o_val[1], "file_img");
  bfx_free(f);
}

static void test_steps_include_refused_lists_them_again_without_it(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  runs_route(f, STREAM_WITH(MSG_TEXT));
  ss_route *steps = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1/steps");
  ss_add_resp(steps, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Unknown parameter include[]\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(steps, (ss_resp){.status = 200, .body = LIST(STEP_CI)});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.include_steps = 1;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(ss_count(&f->srv, steps), 2);
  bfx_expect_query(f, steps, "limit=100&order=asc");
  assert_int_equal(t.nsteps, 1);
  bfx_free(f);
}

static void test_steps_that_cannot_be_read_fail_the_turn_with_a_retry(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  runs_route(f, STREAM_WITH(MSG_TEXT));
  ss_route *steps = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1/steps");
  ss_add_resp(steps, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  bfx_start(f);
  fres t = {0};
  be_turn_input in = input(&CONFIGURED);
  in.include_steps = 1;
  run_turn(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_RETRY);
  assert_true(ss_count(&f->srv, steps) > 1); /* retried like any GET */
  bfx_free(f);
}

static void test_steps_collector_keeps_whole_calls_within_its_bound(void **state) {
  (void)state;
  api_steps s;
  api_steps_init(&s, 64); /* room for the first call's strings, not the second's */
  cJSON *page = cJSON_Parse("{\"data\":[" STEP_FS "," STEP_CI "]}");
  assert_non_null(page);
  char last[API_ID_MAX];
  assert_int_equal(api_steps_add_page(&s, page, last), AW_ETOOBIG);
  const contract_step *st;
  size_t n;
  assert_int_equal(api_steps_build(&s, &st, &n), AW_OK);
  assert_int_equal(n, 1);
  assert_string_equal(st[0].id, "call_fs");
  assert_string_equal(st[0].results[0].text, "Reset it here");
  cJSON_Delete(page);
  api_steps_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_turn_sends_image_parts_attachments_and_the_assistants_tools_plus_the_missing_ones),
      cmocka_unit_test(test_run_keeps_the_assistants_tools_when_they_cover_the_attachments),
      cmocka_unit_test(test_run_tools_override_keeps_the_vector_store_file_search),
      cmocka_unit_test(test_assistant_named_by_id_is_read_for_its_tools_before_an_attachment_run),
      cmocka_unit_test(test_recovery_runs_the_tagged_message_with_the_tools_override),
      cmocka_unit_test(test_unsendable_parts_and_attachments_are_refused_before_any_request),
      cmocka_unit_test(test_message_naming_an_unknown_file_is_file_not_found_and_rejected),
      cmocka_unit_test(test_other_400_on_run_creation_keeps_its_own_code),
      cmocka_unit_test(test_image_file_part_and_file_path_annotation_come_back_as_files_inline_and_by_reference),
      cmocka_unit_test(test_cancel_while_fetching_generated_files_calls_nothing_back),
      cmocka_unit_test(test_answer_without_generated_files_fetches_nothing),
      cmocka_unit_test(test_include_steps_lists_the_runs_hosted_calls_with_include_across_pages),
      cmocka_unit_test(test_steps_include_refused_lists_them_again_without_it),
      cmocka_unit_test(test_steps_that_cannot_be_read_fail_the_turn_with_a_retry),
      cmocka_unit_test(test_steps_collector_keeps_whole_calls_within_its_bound),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
