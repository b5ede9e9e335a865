#!/usr/bin/env python3
"""Validate an aw-simulator --record file against the OpenAI OpenAPI spec.

Every response body is checked against the schema its endpoint declares
(errors against ErrorResponse) and every stream event against
AssistantStreamEvent.  `nullable: true` next to `type` is read the way Ajv
reads it (type or null); the spec is OpenAPI 3.1, where that keyword is not
standard, but the real API sends null for those fields.

Needs: pyyaml, openapi-schema-validator (pip, in a throwaway venv).
Usage: validate_record.py SPEC.yaml RECORD.jsonl   -> exit 1 on any error
"""
import json
import re
import sys

import yaml
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROUTES = [  # (method, path regex, schema of a 200 body)
    ("POST", r"/v1/assistants", "AssistantObject"),
    ("GET", r"/v1/assistants", "ListAssistantsResponse"),
    ("GET", r"/v1/assistants/[^/]+", "AssistantObject"),
    ("POST", r"/v1/assistants/[^/]+", "AssistantObject"),
    ("DELETE", r"/v1/assistants/[^/]+", "DeleteAssistantResponse"),
    ("POST", r"/v1/threads", "ThreadObject"),
    ("POST", r"/v1/threads/runs", "RunObject"),
    ("GET", r"/v1/threads/[^/]+", "ThreadObject"),
    ("POST", r"/v1/threads/[^/]+", "ThreadObject"),
    ("DELETE", r"/v1/threads/[^/]+", "DeleteThreadResponse"),
    ("POST", r"/v1/threads/[^/]+/messages", "MessageObject"),
    ("GET", r"/v1/threads/[^/]+/messages", "ListMessagesResponse"),
    ("GET", r"/v1/threads/[^/]+/messages/[^/]+", "MessageObject"),
    ("POST", r"/v1/threads/[^/]+/runs", "RunObject"),
    ("GET", r"/v1/threads/[^/]+/runs", "ListRunsResponse"),
    ("GET", r"/v1/threads/[^/]+/runs/[^/]+", "RunObject"),
    ("POST", r"/v1/threads/[^/]+/runs/[^/]+/cancel", "RunObject"),
    ("POST", r"/v1/threads/[^/]+/runs/[^/]+/submit_tool_outputs", "RunObject"),
    ("GET", r"/v1/threads/[^/]+/runs/[^/]+/steps", "ListRunStepsResponse"),
    ("GET", r"/v1/threads/[^/]+/runs/[^/]+/steps/[^/]+", "RunStepObject"),
]


def ajv_nullable(o):
    if isinstance(o, dict):
        if o.get("nullable") is True and isinstance(o.get("type"), str):
            o["type"] = [o["type"], "null"]
            if "enum" in o and None not in o["enum"]:
                o["enum"] = o["enum"] + [None]
        for v in o.values():
            ajv_nullable(v)
    elif isinstance(o, list):
        for v in o:
            ajv_nullable(v)


def main():
    spec = yaml.load(open(sys.argv[1]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    ajv_nullable(spec)
    reg = Registry().with_resource("urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012))
    cache = {}

    def errors(name, inst):
        if name not in cache:
            cache[name] = OAS31Validator({"$ref": "urn:spec#/components/schemas/" + name}, registry=reg)
        return list(cache[name].iter_errors(inst))

    bad = checked = events = 0
    for n, line in enumerate(open(sys.argv[2]), 1):
        rec = json.loads(line)
        if not rec["path"].startswith("/v1/"):
            continue
        if rec["status"] >= 400:
            schema = "ErrorResponse"
        else:
            schema = next((s for m, p, s in ROUTES if m == rec["method"] and re.fullmatch(p, rec["path"])), None)
        todo = []
        if rec.get("response_body") is not None and schema:
            todo.append((schema, rec["response_body"], ""))
        for i, ev in enumerate(rec.get("stream_events") or []):
            todo.append(("AssistantStreamEvent", ev, " event %d (%s)" % (i, ev.get("event"))))
            events += 1
        for schema, inst, where in todo:
            checked += 1
            errs = errors(schema, inst)
            if errs:
                bad += 1
                print("line %d %s %s%s: not a valid %s" % (n, rec["method"], rec["path"], where, schema))
                for e in errs[:3]:
                    print("   ", e.message[:300], "at", list(e.absolute_path))
    print("checked %d objects (%d stream events), %d invalid" % (checked, events, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
