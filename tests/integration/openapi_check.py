"""Check recorded API traffic against the OpenAI OpenAPI spec (openapi.validatable.yaml).

The simulator's --record file has one JSON line per request:
  {"method", "path", "query": {k: v}, "status", "request_body", "response_body",
   "stream_events": [{"event", "data"}]}
(bodies parsed JSON or null; stream data JSON or "[DONE]").  For every line under /v1 this
validates the request body against the operation's requestBody schema (unless the request was
refused with a 4xx other than 429: see refused_request), a JSON response against
the schema of its status (components/responses are followed; an error status the operation
does not list is checked against ErrorResponse), and each stream event against the
AssistantStreamEvent member whose `event` enum names it -- or, for the Responses API
(/responses...), against the ResponseStreamEvent member whose `type` enum names it (its data
carries `type` and `sequence_number`).

Schemas are validated with openapi-schema-validator's OAS31Validator (JSON Schema 2020-12 plus
the OpenAPI 3.1 vocabulary), every $ref resolved inside the spec through a `referencing`
registry.  `nullable: true` beside a `type` (an OpenAPI 3.0 keyword the 3.1 spec still uses in
hundreds of places) is read the way Ajv reads it: that type or null (and null joins an enum);
the real API sends null for those fields.  openapi.validatable.yaml already rewrote the
nullable schemas that have no type.  Usable on its own:  python openapi_check.py SPEC RECORD.jsonl
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:openai-openapi"
METHODS = ("get", "post", "put", "patch", "delete")


def ajv_nullable(node: Any) -> None:
    """In place: {type: T, nullable: true} -> {type: [T, "null"]}, null added to an enum."""
    if isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("type"), (str, list)):
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            if "null" not in types:
                node["type"] = types + ["null"]
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"] = node["enum"] + [None]
        for v in node.values():
            ajv_nullable(v)
    elif isinstance(node, list):
        for v in node:
            ajv_nullable(v)


def drop_discriminators(node: Any) -> None:
    """In place: remove `discriminator`.  The validator resolves a discriminator value as a schema
    name (`#/components/schemas/<value>`), which fails for the Responses schemas (the value
    "message" names the schema Message, "function_call" FunctionToolCall...); without it the
    oneOf/anyOf beside it is checked as plain JSON Schema, which is what the discriminator
    shortcuts anyway."""
    if isinstance(node, dict):
        node.pop("discriminator", None)
        for v in node.values():
            drop_discriminators(v)
    elif isinstance(node, list):
        for v in node:
            drop_discriminators(v)


def overlapping_input_item(spec: dict) -> None:
    """In place: InputItem's oneOf read as anyOf.  A user message whose content is a list of parts
    ({role, content: [{type: input_text...}, {type: input_image...}]}, with or without type
    "message") is both an EasyInputMessage and an Item (InputMessage): the two overlap, so a strict
    oneOf refuses every such message, which the real API takes (and an image or a file can only be
    sent as a part)."""
    item = spec["components"]["schemas"].get("InputItem") or {}
    if "oneOf" in item:
        item["anyOf"] = item.pop("oneOf")


def refused_request(status: Any) -> bool:
    """Was the request refused as the client's fault (4xx other than 429)?  Such a request may be
    invalid on purpose (tests send unknown fields, wrong types, conversation together with
    previous_response_id... to get the 400), so its body is not checked against the spec; its
    answer, the error body, still is.  A request that was accepted (2xx), rate limited (429) or
    met a server error (5xx, e.g. an apply_then_fail fault after it was applied) must conform."""
    return isinstance(status, int) and 400 <= status < 500 and status != 429


def multipart_form(body: Any) -> tuple[Any, list[str]]:
    """A recorded multipart body as the instance its schema validates, and what is wrong with it.
    The simulator records the form fields as they are (expires_after[anchor] nested as
    {"expires_after": {"anchor": ...}}) and a file part as {"filename", "bytes", "sha256"}, never
    its bytes; the schema types a file part as a binary string, so the part stands in as one."""
    if not isinstance(body, dict):
        return body, ["multipart body not recorded as an object"]
    form, bad = {}, []
    for k, v in body.items():
        if isinstance(v, dict) and "sha256" in v:
            if not (isinstance(v.get("filename"), str) and isinstance(v.get("bytes"), int)
                    and isinstance(v.get("sha256"), str)):
                bad.append(f"file part {k!r} recorded without filename, bytes and sha256: {v}")
            form[k] = f"<{v.get('bytes')} bytes, sha256 {v.get('sha256')}>"
        else:
            form[k] = v
    return form, bad


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


_WORD = re.compile(r"[a-z][a-z0-9_.]*\Z")


def shape_key(v: Any) -> Any:
    """What of a JSON value a schema of this spec can tell apart: object keys, types, the
    values of lower-case words (enums and discriminators: "completed", "output_text",
    "response.output_text.delta") and of booleans, and the length class of other strings (a
    power of two: maxLength bounds) -- not the ids, texts and numbers that make every exchange
    different.  Arrays: the distinct shapes of their items and their length class; numbers:
    their sign and magnitude class (minimum / maximum bounds).  Two values with one shape
    validate alike against this spec's schemas, bar a pattern or a bound inside one class."""
    if isinstance(v, dict):
        return ("o", tuple(sorted((k, shape_key(x)) for k, x in v.items())))
    if isinstance(v, list):
        return ("a", len(v).bit_length(), frozenset(shape_key(x) for x in v))
    if isinstance(v, str):
        return v if len(v) <= 64 and _WORD.match(v) else ("s", len(v).bit_length())
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return ("i", v < 0, abs(v).bit_length())
    if isinstance(v, float):
        return ("f", v.is_integer(), max(-3, min(3, int(v))), v == 0)
    return ("?", type(v).__name__)


class SpecChecker:
    def __init__(self, spec_path: Path):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(spec_path, "rb") as f:
            self.spec = yaml.load(f, Loader=loader)
        ajv_nullable(self.spec)
        drop_discriminators(self.spec)
        overlapping_input_item(self.spec)
        self.registry = Registry().with_resource(
            SPEC_URI, Resource.from_contents(self.spec, default_specification=DRAFT202012))
        self._validators: dict[str, OAS31Validator] = {}
        self._passed: set[tuple[str, Any]] = set()
        # Path templates, the most literal first, so /threads/runs wins over /threads/{thread_id}.
        self._paths = []
        for tmpl in self.spec["paths"]:
            rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tmpl)) + "$")
            self._paths.append((tmpl.count("{"), tmpl, rx))
        self._paths.sort(key=lambda t: (t[0], t[1]))
        self.stream_events = self._stream_event_members()
        self.response_events = self._response_event_members()

    # -- schemas --
    def validator(self, pointer: str) -> OAS31Validator:
        v = self._validators.get(pointer)
        if v is None:
            v = OAS31Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)
            self._validators[pointer] = v
        return v

    def errors(self, pointer: str, instance: Any, limit: int = 3) -> list[str]:
        # A session's record holds thousands of exchanges of a few dozen shapes (the same
        # request with other text, the same stream event with other ids): an instance whose
        # shape (shape_key) passed against this schema already passes again, so only new shapes
        # are validated.  Only passes are remembered: a failing shape is validated every time,
        # so that each mismatch is reported with its own values.
        key = (pointer, shape_key(instance))
        if key in self._passed:
            return []
        out = []
        for e in self.validator(pointer).iter_errors(instance):
            where = "/".join(map(str, e.absolute_path)) or "<root>"
            out.append(f"{where}: {e.message[:300]}")
            if len(out) >= limit:
                break
        if not out:
            self._passed.add(key)
        return out

    def _resolve(self, node: Any) -> tuple[Any, str | None]:
        """Follow a local $ref once; returns (node, its pointer or None)."""
        if isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
            ptr = node["$ref"][1:]
            cur: Any = self.spec
            for part in ptr.strip("/").split("/"):
                cur = cur[part.replace("~1", "/").replace("~0", "~")]
            return cur, ptr
        return node, None

    def _stream_event_members(self) -> dict[str, str]:
        """event name -> pointer of the AssistantStreamEvent member schema that describes it."""
        out: dict[str, str] = {}

        def walk(node: Any, ptr: str, depth: int):
            if depth > 6:
                return
            target, tptr = self._resolve(node)
            if tptr:
                node, ptr = target, tptr
            if not isinstance(node, dict):
                return
            ev = (node.get("properties") or {}).get("event")
            if isinstance(ev, dict) and isinstance(ev.get("enum"), list):
                for name in ev["enum"]:
                    out.setdefault(name, ptr)
                return
            for key in ("oneOf", "anyOf"):
                for i, sub in enumerate(node.get(key) or []):
                    walk(sub, f"{ptr}/{key}/{i}", depth + 1)

        walk({"$ref": "#/components/schemas/AssistantStreamEvent"}, "", 0)
        return out

    def _response_event_members(self) -> dict[str, str]:
        """type -> pointer of the ResponseStreamEvent member whose `type` enum names it (the
        Responses API's events are told apart by their data's `type`, not by `event:`)."""
        out: dict[str, str] = {}
        for sub in self.spec["components"]["schemas"]["ResponseStreamEvent"].get("anyOf") or []:
            node, ptr = self._resolve(sub)
            ty = (node.get("properties") or {}).get("type") if isinstance(node, dict) else None
            for name in (ty or {}).get("enum") or []:
                out.setdefault(name, ptr)
        return out

    def _check_event(self, label: str, i: int, path: str, ev: dict) -> list[str]:
        name, data = ev.get("event"), ev.get("data")
        if path.startswith("/chat/completions"):
            # Chat Completions: `data:` lines with no event name (recorded "event": null), the
            # chunks then "[DONE]".
            if data == "[DONE]":
                return []
            return [f"{label}: stream chunk #{i}: {e}"
                    for e in self.errors("/components/schemas/CreateChatCompletionStreamResponse", data)]
        if path.startswith("/responses"):
            member = self.response_events.get(name)
            if member is None:
                return [f"{label}: stream event #{i} {name!r} is not a ResponseStreamEvent"]
            problems = [] if isinstance(data, dict) and data.get("type") == name else [
                f"{label}: stream event #{i} {name!r}: data.type is not the event name"]
            return problems + [f"{label}: stream event #{i} {name}: {e}" for e in self.errors(member, data)]
        member = self.stream_events.get(name)
        if member is None:
            return [f"{label}: stream event #{i} {name!r} is not an AssistantStreamEvent"]
        return [f"{label}: stream event #{i} {name}: {e}"
                for e in self.errors(member, {"event": name, "data": data})]

    # -- operations --
    def operation(self, method: str, path: str) -> tuple[str, dict] | None:
        for _, tmpl, rx in self._paths:
            if rx.match(path):
                op = self.spec["paths"][tmpl].get(method.lower())
                if op is not None:
                    return tmpl, op
        return None

    def check_record(self, rec: dict) -> list[str]:
        """Every mismatch of one recorded exchange (empty when it conforms)."""
        method, full_path = rec.get("method", "").upper(), rec.get("path", "")
        if not full_path.startswith("/v1/"):
            return []  # admin and health endpoints are the simulator's own
        path = full_path[3:].split("?", 1)[0]
        status = rec.get("status")
        label = f"{method} {full_path} -> {status}"
        found = self.operation(method, path)
        if found is None:
            if refused_request(status):  # e.g. 404 Invalid URL: only the error body has to conform
                return [f"{label}: error body {e}" for e in
                        self.errors("/components/schemas/ErrorResponse", rec.get("response_body"))]
            return [f"{label}: no such operation in the spec"]
        tmpl, op = found
        base = _pointer("paths", tmpl, method.lower())
        problems: list[str] = []

        body = rec.get("request_body")
        rb, rb_ptr = self._resolve(op.get("requestBody"))
        if refused_request(status):
            pass  # invalid on purpose, maybe: only the error answer has to conform
        elif rb is None:
            if body not in (None, {}, ""):
                problems.append(f"{label}: request has a body but the operation takes none")
        else:
            rb_ptr = rb_ptr or base + "/requestBody"
            if body is None:
                if rb.get("required"):
                    problems.append(f"{label}: required request body missing")
            elif "application/json" in (rb.get("content") or {}):
                ptr = rb_ptr + _pointer("content", "application/json", "schema")
                problems += [f"{label}: request body {e}" for e in self.errors(ptr, body)]
            elif "multipart/form-data" in (rb.get("content") or {}):
                ptr = rb_ptr + _pointer("content", "multipart/form-data", "schema")
                form, bad = multipart_form(body)
                problems += [f"{label}: {b}" for b in bad]
                problems += [f"{label}: form field {e}" for e in self.errors(ptr, form)]
            else:
                problems.append(f"{label}: operation does not take a JSON body")

        events = rec.get("stream_events")
        if events:
            # A stream is mostly one event type over and over (text deltas, chunks): every event
            # type of a stream is checked, and of each type the first and last three; the rest
            # repeats a shape already checked (and is what made this check take a minute).
            seen: dict[Any, int] = {}
            last: dict[Any, int] = {}
            for i, ev in enumerate(events):
                last[ev.get("event")] = i
            for i, ev in enumerate(events):
                name = ev.get("event")
                n = seen[name] = seen.get(name, 0) + 1
                if n <= 3 or i > last[name] - 3:
                    problems += self._check_event(label, i, path, ev)
            return problems

        resp_body = rec.get("response_body")
        responses = op.get("responses") or {}
        key = str(status) if str(status) in responses else ("default" if "default" in responses else None)
        if key is None:
            if isinstance(status, int) and status >= 400:
                if resp_body is not None:
                    problems += [f"{label}: error body {e}"
                                 for e in self.errors("/components/schemas/ErrorResponse", resp_body)]
                return problems
            return problems + [f"{label}: status {status} is not a documented response"]
        resp, resp_ptr = self._resolve(responses[key])
        resp_ptr = resp_ptr or base + _pointer("responses", key)
        content = (resp or {}).get("content") or {}
        if "application/json" in content and resp_body is not None:
            ptr = resp_ptr + _pointer("content", "application/json", "schema")
            # Some Responses operations document their 404 as the bare `Error` object; the API
            # (and the simulator) wrap it as {"error": {...}}, which is what is checked then.
            if (isinstance(status, int) and status >= 400 and isinstance(resp_body, dict)
                    and set(resp_body) == {"error"}
                    and ((content["application/json"].get("schema") or {}).get("$ref", "")
                         .endswith("/Error"))):
                resp_body = resp_body["error"]
            problems += [f"{label}: response body {e}" for e in self.errors(ptr, resp_body)]
        elif content and resp_body is None and isinstance(status, int) and status < 300:
            problems.append(f"{label}: response body missing")
        return problems

    def check_lines(self, lines: Iterable[str]) -> tuple[int, list[str]]:
        """(number of /v1 exchanges checked, every mismatch)."""
        n, problems = 0, []
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith('{"method":') and '"path":"/v1/' not in line[:100]:
                # The simulator writes "method" then "path" first: a line whose path is not
                # under /v1 is one of its own admin or health exchanges (most of a session's
                # record: /admin/stats, polled by the tests), which check_record skips anyway;
                # parsing it is all it would cost.
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                problems.append(f"record line {lineno} is not JSON: {e}")
                continue
            if str(rec.get("path", "")).startswith("/v1/"):
                n += 1
            problems += self.check_record(rec)
        return n, problems


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    checker = SpecChecker(Path(argv[1]))
    with open(argv[2], encoding="utf-8") as f:
        n, problems = checker.check_lines(f)
    for p in problems:
        print(p)
    print(f"{n} exchanges checked, {len(problems)} mismatches", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
