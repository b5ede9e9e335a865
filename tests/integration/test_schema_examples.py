"""Every example in schemas/examples conforms to the JSON Schema of its message (the file name
says which: request-*.json, response-*.json, delta.json, ...), so the examples the contract's
README points producers and consumers at cannot drift from the schemas.  No broker needed."""
from pathlib import Path

import json

import pytest

from awtest import schema_errors

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
# Files that are not one message of a schema (test vectors of the tool-request signature).
NOT_A_MESSAGE = {"tool-request-signature.json"}
KINDS = ("tool-request", "tool-reply", "request", "response", "delta", "dlq", "usage")


def kind_of(name: str) -> str:
    for kind in KINDS:
        if name == f"{kind}.json" or name.startswith(f"{kind}-"):
            return kind
    raise AssertionError(f"schemas/examples/{name}: no schema named by its file name")


EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.json") if p.name not in NOT_A_MESSAGE)


def test_every_message_kind_has_an_example():
    assert {kind_of(n) for n in EXAMPLE_FILES} == set(KINDS)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_conforms_to_its_schema(name):
    view = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    errs = schema_errors(kind_of(name), view)
    assert not errs, f"schemas/examples/{name} does not match its schema: {errs[:5]}"
