/* sim_ci_run.c -- the code interpreter in an Assistants run: its step, its file, its message parts. */
#include "sim_ci_run.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_amsg.h"
#include "sim_codeint.h"
#include "sim_files.h"
#include "sim_fsearch.h"
#include "sim_model.h"

#define SANDBOX "sandbox:/mnt/data/"

typedef struct srci {
  sci_output *out;
  int step_done;
  char file_id[40]; /* the stored output, once the step ran */
  size_t link_start, link_end; /* bytes of the answer the file_path annotation covers (CSV) */
} srci;

static void srci_free(void *p) {
  srci *c = p;
  if (!c) return;
  sci_output_free(c->out);
  free(c);
}

static srci *state(const sobj *run) { return run->ext_free == srci_free ? run->ext : NULL; }

static int has_tool(const cJSON *tools, const char *type) {
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, type)) return 1;
  }
  return 0;
}

/* The bytes of file id (at most SRCI_MAX_INPUT), malloc'd; NULL when gone. */
static char *read_file(const char *id, char *fn, size_t fn_size, size_t *len) {
  char path[PATH_MAX];
  if (sfiles_lookup(id, fn, fn_size, path, sizeof path) != AW_OK) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  char *data = malloc(SRCI_MAX_INPUT);
  ssize_t n = 0, got = 0;
  while (data && (size_t)got < SRCI_MAX_INPUT && (n = read(fd, data + got, SRCI_MAX_INPUT - (size_t)got)) > 0) got += n;
  close(fd);
  if (n < 0) {
    free(data);
    return NULL;
  }
  *len = (size_t)got;
  return data;
}

int srci_plan(sobj *run, sobj *thread, const char *question, const char *prefix, int *used) {
  *used = 0;
  const cJSON *choice = cJSON_GetObjectItemCaseSensitive(run->json, "tool_choice");
  if (!has_tool(cJSON_GetObjectItemCaseSensitive(run->json, "tools"), "code_interpreter") ||
      (cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")) || !sci_wants_tool(question))
    return AW_OK;
  cJSON *ids = cJSON_CreateArray();
  if (!ids || samsg_attached(thread, "code_interpreter", ids) != AW_OK) {
    cJSON_Delete(ids);
    return AW_ENOMEM;
  }
  sci_input_file files[SRCI_MAX_FILES];
  char names[SRCI_MAX_FILES][600];
  size_t nf = 0;
  const cJSON *id;
  cJSON_ArrayForEach(id, ids) {
    if (nf == SRCI_MAX_FILES) break;
    size_t len = 0;
    char *data = read_file(id->valuestring, names[nf], sizeof names[nf], &len);
    if (!data) continue; /* deleted since it was attached: not an input any more */
    files[nf].filename = names[nf];
    files[nf].data = data;
    files[nf++].len = len;
  }
  cJSON_Delete(ids);
  sci_output *out = NULL;
  int rc = sci_run(question, files, nf, &out);
  for (size_t i = 0; i < nf; i++) free((char *)files[i].data);
  if (rc != AW_OK || !out) return rc;

  /* A generated data file is linked in the text, as the real service
   * writes it: the annotation covers the sandbox path. */
  srci *c = calloc(1, sizeof *c);
  size_t pl = strlen(prefix), tl = strlen(out->text), fl = strlen(out->filename);
  char *answer = malloc(pl + tl + sizeof " Download: " SANDBOX + fl);
  if (!c || !answer) {
    free(c);
    free(answer);
    sci_output_free(out);
    return AW_ENOMEM;
  }
  memcpy(answer, prefix, pl);
  memcpy(answer + pl, out->text, tl + 1);
  if (!out->is_image) {
    strcat(answer, " Download: ");
    c->link_start = strlen(answer);
    strcat(answer, SANDBOX);
    strcat(answer, out->filename);
    c->link_end = strlen(answer);
  }
  c->out = out;
  if (run->ext_free) run->ext_free(run->ext);
  run->ext = c;
  run->ext_free = srci_free;
  free(run->run->answer);
  run->run->answer = answer;
  run->run->tokens_total = smodel_count_tokens(answer);
  *used = 1;
  return AW_OK;
}

int srci_used(const sobj *run) { return state(run) != NULL; }

int srci_pending(const sobj *run) {
  const srci *c = state(run);
  return c && !c->step_done;
}

/* The code_interpreter call as the step holds it (outputs: with_outputs). */
static cJSON *call_json(const srci *c, const char *call_id, int with_outputs) {
  cJSON *call = cJSON_CreateObject();
  cJSON_AddStringToObject(call, "id", call_id);
  cJSON_AddStringToObject(call, "type", "code_interpreter");
  cJSON *ci = cJSON_AddObjectToObject(call, "code_interpreter");
  cJSON_AddStringToObject(ci, "input", c->out->code);
  cJSON *outs = cJSON_AddArrayToObject(ci, "outputs");
  if (!with_outputs) return call;
  cJSON *logs = cJSON_CreateObject();
  cJSON_AddStringToObject(logs, "type", "logs");
  cJSON_AddStringToObject(logs, "logs", c->out->logs);
  cJSON_AddItemToArray(outs, logs);
  if (c->out->is_image) {
    cJSON *img = cJSON_CreateObject();
    cJSON_AddStringToObject(img, "type", "image");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(img, "image"), "file_id", c->file_id);
    cJSON_AddItemToArray(outs, img);
  }
  return call;
}

static void emit_delta(sevents *ev, const sobj *step, cJSON *call) {
  cJSON *d = cJSON_CreateObject();
  cJSON_AddStringToObject(d, "id", step->id);
  cJSON_AddStringToObject(d, "object", "thread.run.step.delta");
  cJSON *sd = cJSON_AddObjectToObject(cJSON_AddObjectToObject(d, "delta"), "step_details");
  cJSON_AddStringToObject(sd, "type", "tool_calls");
  cJSON_AddNumberToObject(call, "index", 0);
  cJSON_AddItemToArray(cJSON_AddArrayToObject(sd, "tool_calls"), call);
  sev_emit(ev, "thread.run.step.delta", d);
  cJSON_Delete(d);
}

int srci_step(sobj *run, sevents *ev) {
  srci *c = state(run);
  if (!c || c->step_done) return 1;
  c->step_done = 1;
  int rc = sfiles_add_bytes(c->out->filename, "assistants_output", c->out->data, c->out->len, c->file_id,
                            sizeof c->file_id);
  sobj *step = rc == AW_OK ? srun_tool_calls_step(run, ev) : NULL;
  if (!step) {
    srun_fail(run, "server_error", "The simulator could not run the code interpreter.", ev);
    return 0;
  }
  cJSON *det = cJSON_GetObjectItemCaseSensitive(step->json, "step_details");
  char call_id[40];
  sstore_call_id(call_id, sizeof call_id);
  if (ev) {
    /* The call with its code first, then what it printed and made. */
    emit_delta(ev, step, call_json(c, call_id, 0));
    cJSON *outs = call_json(c, call_id, 1);
    cJSON *ci = cJSON_GetObjectItemCaseSensitive(outs, "code_interpreter");
    cJSON_DeleteItemFromObjectCaseSensitive(outs, "id");
    cJSON_DeleteItemFromObjectCaseSensitive(ci, "input");
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(ci, "outputs")) cJSON_AddNumberToObject((cJSON *)o, "index", i++);
    emit_delta(ev, step, outs);
  }
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(det, "tool_calls"), call_json(c, call_id, 1));
  jset(step->json, "status", cJSON_CreateString("completed"));
  jset(step->json, "completed_at", cJSON_CreateNumber((double)sstore_unix_now()));
  jset(step->json, "usage", srun_usage_json(run->run));
  sev_emit(ev, "thread.run.step.completed", step->json);
  return 1;
}

void srci_message(sobj *run, sobj *msg, sevents *ev) {
  const srci *c = state(run);
  if (!c || !c->out->is_image || !c->file_id[0]) return;
  cJSON *part = cJSON_CreateObject();
  cJSON_AddStringToObject(part, "type", "image_file");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "image_file"), "file_id", c->file_id);
  if (ev) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "id", msg->id);
    cJSON_AddStringToObject(d, "object", "thread.message.delta");
    cJSON *dp = cJSON_Duplicate(part, 1);
    cJSON_AddNumberToObject(dp, "index", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(d, "delta"), "content"), dp);
    sev_emit(ev, "thread.message.delta", d);
    cJSON_Delete(d);
  }
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(msg->json, "content"), part);
}

int srci_text_part(const sobj *run) {
  const srci *c = state(run);
  return c && c->out->is_image && c->file_id[0] ? 1 : 0;
}

cJSON *srci_annotation(const sobj *run, int delta, size_t *end_bytes) {
  const srci *c = state(run);
  if (!c || c->out->is_image || !c->file_id[0]) return NULL;
  const char *a = run->run->answer;
  cJSON *o = cJSON_CreateObject();
  if (delta) cJSON_AddNumberToObject(o, "index", 0);
  cJSON_AddStringToObject(o, "type", "file_path");
  char *t = strndup(a + c->link_start, c->link_end - c->link_start);
  cJSON_AddStringToObject(o, "text", t ? t : "");
  free(t);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "file_path"), "file_id", c->file_id);
  cJSON_AddNumberToObject(o, "start_index", (double)sfs_chars(a, c->link_start));
  cJSON_AddNumberToObject(o, "end_index", (double)sfs_chars(a, c->link_end));
  *end_bytes = c->link_end;
  return o;
}
