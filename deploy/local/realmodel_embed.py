"""deploy/local/realmodel_embed.py -- an OpenAI-compatible /v1/embeddings server for a GGUF.

Why this file exists: OGX's vector stores need an embedding model served at an OpenAI-compatible
/v1/embeddings, and the stock `python -m llama_cpp.server` cannot serve one for SmolLM2 (a causal
LM, no pooling in its GGUF): its CLI exposes neither the pooling type nor the context's sequence
count, so it returns one vector per *token* (pooling "none") and fails on a batched input (more
than one sequence in a context built for one).  This launcher runs llama-cpp-python's own server
app (routes, request validation, OpenAI-shaped errors: nothing of HTTP is ours) with a model
built by Llama() with
  - embedding=True and pooling_type MEAN: one vector of n_embd floats per input;
  - a context of n_seq_max sequences sharing one KV buffer (kv_unified), and inputs embedded in
    groups of at most n_seq_max (Llama.embed() puts every input of a group in one batch, one
    sequence each), so a list of inputs works whatever its length.
Llama() has no n_seq_max / kv_unified parameter: they are set on the context parameters it starts
from (llama_context_default_params, looked up at construction time), in this process only.

Used by aw_embed_start in deploy/local/lib_realmodel.sh; run with the model venv's python:
  python realmodel_embed.py --model M.gguf --alias smollm2-embed --port P [--n_ctx 2048]
      [--n_seq_max 8] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys

import llama_cpp
import llama_cpp.llama_cpp as llama_lib
import llama_cpp.server.app as server_app
import uvicorn
from llama_cpp.server.model import LlamaProxy
from llama_cpp.server.settings import ModelSettings, ServerSettings


def context_params_with(n_seq_max: int):
    """A llama_context_default_params() that starts every context with N sequences, one KV buffer."""
    base = llama_lib.llama_context_default_params

    def params():
        p = base()
        p.n_seq_max = n_seq_max
        p.kv_unified = True
        return p
    return params


class GroupedEmbeddingLlama(llama_cpp.Llama):
    """Llama whose embed() never puts more inputs in one batch than the context has sequences."""

    def __init__(self, *args, n_seq_max: int, **kwargs):
        self.aw_n_seq_max = n_seq_max
        super().__init__(*args, **kwargs)

    def embed(self, input, normalize=False, truncate=True, return_count=False):
        inputs = [input] if isinstance(input, str) else list(input)
        data, tokens = [], 0
        for i in range(0, max(len(inputs), 1), self.aw_n_seq_max):
            got, n = super().embed(inputs[i:i + self.aw_n_seq_max], normalize=normalize,
                                   truncate=truncate, return_count=True)
            data.extend(got)
            tokens += n
        if isinstance(input, str):
            data = data[0]
        return (data, tokens) if return_count else data


def build_llama(settings: ModelSettings, n_seq_max: int) -> llama_cpp.Llama:
    llama_lib.llama_context_default_params = context_params_with(n_seq_max)
    return GroupedEmbeddingLlama(
        model_path=settings.model, n_seq_max=n_seq_max, embedding=True,
        pooling_type=llama_lib.LLAMA_POOLING_TYPE_MEAN,
        # One batch holds a whole group; an input longer than n_batch tokens is truncated.
        n_ctx=settings.n_ctx, n_batch=settings.n_ctx, n_ubatch=settings.n_ctx,
        n_threads=settings.n_threads, n_threads_batch=settings.n_threads_batch,
        verbose=settings.verbose)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", default="embed")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--n_ctx", type=int, default=2048)
    ap.add_argument("--n_seq_max", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if not 1 < a.n_seq_max <= 64:  # llama.cpp's LLAMA_MAX_SEQ is 64 (>1: batched inputs)
        ap.error("--n_seq_max must be in 2..64")

    model = ModelSettings(model=a.model, model_alias=a.alias, n_ctx=a.n_ctx, embedding=True,
                          n_threads=a.threads, n_threads_batch=a.threads, verbose=False)

    class Proxy(LlamaProxy):
        @staticmethod
        def load_llama_from_model_settings(settings: ModelSettings) -> llama_cpp.Llama:
            return build_llama(settings, a.n_seq_max)

    # create_app() builds its proxy through the module's LlamaProxy name: ours loads the model.
    server_app.LlamaProxy = Proxy
    app = server_app.create_app(server_settings=ServerSettings(host=a.host, port=a.port),
                                model_settings=[model])
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
