"""Shared fixtures: a fresh warehouse, a tiny BPE tokenizer, a tiny random Mistral model folder.

Everything is built locally in seconds; no test touches a model or data hub.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import FakeCatalog, chat_reply, copy_interp, tiny_texts, write_sae_folder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Test oracles (tests/oracles.txt, installed by `make test`): last on the path, so they add only what the venv lacks
ORACLES = Path(__file__).resolve().parent.parent / ".oracles"
if ORACLES.is_dir() and str(ORACLES) not in sys.path:
    sys.path.append(str(ORACLES))

# tests/lake/ runs in the lake backend's own environment (duckdb 1.5 and its extensions), which `make test`
# puts first on the path for a second pytest run with FEATSTORE_TEST_LAKE=1; the main run leaves it out.
collect_ignore = [] if os.environ.get("FEATSTORE_TEST_LAKE") == "1" else ["lake"]


@pytest.fixture
def warehouse(tmp_path):
    from featstore.warehouse import Warehouse

    return Warehouse(tmp_path / "wh")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from featstore.text.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("tokenizer")
    train_bpe(tiny_texts(200), vocab_size=400, out_dir=out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir):
    """A random one-layer Mistral (hidden 32, MLP 64) saved as an HF folder with its tokenizer."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from featstore.text.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    model = MistralForCausalLM(config)
    out = tmp_path_factory.mktemp("model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# --- interpretability: a warehouse of synthetic features with known causes -------------------------

INTERP_WORDS = (
    " end", " local", " x", " y", " return", " print", " the", " a", " cat", " ball", " Tom", " Lily",
    " The", " 1", " 2", " 3", "(", ")", ",", ":", " =", " if", " then", " ran", " sat", "\n",
)


def interp_activation(feature: int, prev: str, word: str, noise: float) -> float:
    """The ground truth each synthetic feature follows (0 = does not fire)."""
    rules = {
        0: 4.0 if word == " end" else 0.0,
        1: 2.5 if word in "(),:" else 0.0,
        2: 3.0 if word.strip().isdigit() else 0.0,
        3: 5.0 if prev == " local" else 0.0,
        4: 2.0 if word.strip()[:1].isupper() else 0.0,
        5: 1.0 if noise > 0.93 else 0.0,
        6: 6.0 if word == " return" else 2.0 if word == " print" else 0.0,
    }
    act = rules.get(feature, 0.0)
    return act * (0.6 + 0.8 * noise) if act else 0.0


@pytest.fixture(scope="session")
def interp_template(tmp_path_factory):
    """The catalog of `interp_warehouse` built once (a DuckDB file) plus its two activation tables."""
    import numpy as np
    import pyarrow as pa

    from featstore.warehouse import Warehouse

    warehouse = Warehouse(tmp_path_factory.mktemp("interp") / "wh")
    rng = np.random.default_rng(0)
    words = list(INTERP_WORDS)
    docs = [rng.integers(0, len(words), size=int(rng.integers(40, 80))) for _ in range(40)]
    tok_rows, parent_rows, child_rows = [], [], []
    tok = 0
    for doc_id, ids in enumerate(docs):
        for pos, token_id in enumerate(ids):
            word, prev = words[token_id], words[ids[pos - 1]] if pos else ""
            tok_rows.append((tok, "synth", doc_id, pos, int(token_id)))
            noise = rng.random()
            for feature in range(7):
                act = interp_activation(feature, prev, word, noise)
                if act:
                    parent_rows.append((tok, feature, act))
                    child_rows.append((tok, feature + 10, act * (0.9 + 0.2 * rng.random())))
            if word == " ball":
                child_rows.append((tok, 20, 3.0))
            tok += 1
    columns = ("tok", "corpus", "doc_id", "pos", "token_id")
    with warehouse.transaction() as con:
        con.execute("INSERT INTO tokenizers VALUES ('synthfp', 'synthetic', ?, DEFAULT)", [len(words)])
        con.register("vocab_rows", pa.table({"token_id": list(range(len(words))), "text": words}))
        con.execute("INSERT INTO vocab SELECT 'synthfp', token_id, text, text FROM vocab_rows")
        con.execute("INSERT INTO corpora VALUES ('synth', 'synthetic', 'synthfp', ?, ?, 0, NULL, DEFAULT)", [len(docs), tok])
        con.register("doc_rows", pa.table({"doc_id": list(range(len(docs))), "n": [len(ids) for ids in docs]}))
        con.execute("INSERT INTO documents SELECT 'synth', doc_id, n, NULL FROM doc_rows")
        con.register("tok_rows", pa.table({name: list(col) for name, col in zip(columns, zip(*tok_rows), strict=True)}))
        con.execute("INSERT INTO tokens SELECT tok, corpus, doc_id, pos, token_id FROM tok_rows")
        con.execute("INSERT INTO models (name, kind, path) VALUES ('base', 'base', '/m/base'), ('child', 'finetune', '/m/child')")
        con.execute("INSERT INTO lineage (parent, child, relation) VALUES ('base', 'child', 'finetune')")
        con.execute(
            "INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture) VALUES"
            " ('toy', 'base', 'blocks.0.mlp.hook_post', 0, 64, 32, 'relu'),"
            " ('toy_child', 'child', 'blocks.0.mlp.hook_post', 0, 64, 32, 'relu')"
        )
        con.execute(
            "INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
            " VALUES (1, 'toy', 'toy_child', 'synth', 'all_tokens', 0.2, ?, 7)", [tok]
        )
        strong = [(1, "a", f, f + 10, 0.95 if f in (0, 1, 2, 6) else 0.4) for f in range(7)]
        back = [(1, "b", f + 10, f, r) for _, _, f, _, r in strong] + [(1, "b", 20, 0, 0.1)]
        con.executemany("INSERT INTO correlations VALUES (?, ?, ?, ?)", [(1, a, b, r) for _, _, a, b, r in strong])
        con.executemany("INSERT INTO best_matches VALUES (?, ?, ?, ?, ?)", strong + back)
    partitions = {
        sae: pa.table({name: list(col) for name, col in zip(("tok", "feature", "act"), zip(*rows), strict=True)})
        for sae, rows in (("toy", parent_rows), ("toy_child", child_rows))
    }
    return warehouse.db_path, partitions, tok


@pytest.fixture
def interp_warehouse(warehouse, interp_template):
    """Corpus 'synth' (vocab, documents, tokens), SAE 'toy' of model 'base' with features 0-6 driven
    by the rules above, SAE 'toy_child' of model 'child' (finetune of base) with the same features
    renumbered (child feature = parent + 10) plus an emerging feature 20, and a correlation run
    between them whose best matches say 0, 1, 2, 6 persist (r 0.95) and 3, 4, 5 do not (r 0.4)."""
    return copy_interp(warehouse, interp_template)


class ChatServer:
    """A real OpenAI-compatible /v1/chat/completions responder on 127.0.0.1, run in a thread.

    `reply(request_json, n)` decides each answer: a dict (sent as JSON 200), a (status, body) pair,
    or a float (seconds to stall before answering an ordinary reply, to provoke timeouts).
    """

    def __init__(self):
        import http.server
        import json
        import threading

        server = self
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        self.reply = lambda request, n: chat_reply("0")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    n = len(server.requests)
                answer = server.reply(body, n)
                if isinstance(answer, float):
                    import time

                    time.sleep(answer)
                    answer = chat_reply("1")
                status, payload = (200, json.dumps(answer)) if isinstance(answer, dict) else answer
                data = payload.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    server = ChatServer()
    yield server
    server.close()


# --- warehouse verbs: an SAE folder factory and a registered warehouse ------------------------------


@pytest.fixture
def make_sae_folder(tmp_path):
    """Factory: make_sae_folder(name, d_in=64, d_sae=16, ...) -> a fresh SAE folder under tmp_path."""
    return lambda name="sae", **kwargs: write_sae_folder(tmp_path / name, **kwargs)


@pytest.fixture(scope="session")
def registered_template(tmp_path_factory, tiny_model_dir, tiny_tokenizer_dir):
    """Built once: corpus 'evalset' (12 tiny documents), model 'base' (MLP width 64), SAE 'base-sae' (64 -> 16)."""
    from featstore.models.catalog import register_model
    from featstore.saes.catalog import add_sae_folder
    from featstore.text.slices import add_corpus
    from featstore.warehouse import Warehouse

    root = tmp_path_factory.mktemp("registered")
    text_file = root / "eval.txt"
    text_file.write_text("\n\n".join(tiny_texts(12, seed=7)))
    wh = Warehouse(root / "wh")
    add_corpus(wh, "evalset", str(text_file), tiny_tokenizer_dir)
    register_model(wh, "base", tiny_model_dir, kind="base")
    add_sae_folder(wh, "base-sae", "base", write_sae_folder(root / "base-sae"))
    return wh


@pytest.fixture
def registered_warehouse(warehouse, registered_template):
    """A private copy of the registered template (it has no Parquet partitions, only the catalog)."""
    import shutil

    warehouse.root.mkdir(parents=True)
    shutil.copy(registered_template.db_path, warehouse.db_path)
    return warehouse


@pytest.fixture
def trainable_warehouse(warehouse, tiny_model_dir, tmp_path):
    """Model 'm' (the tiny model) registered with 200 tiny texts as its training corpus: SAE training tests."""
    from featstore.models.catalog import register_model

    source = tmp_path / "texts.txt"
    source.write_text("\n\n".join(tiny_texts(200, seed=3)))
    register_model(warehouse, "m", tiny_model_dir, kind="base", train_corpus=str(source))
    return warehouse


@pytest.fixture(scope="module")
def module_catalog(tmp_path_factory):
    """A FakeCatalog on a warehouse shared by the tests of one module (built once, for speed)."""
    from featstore.warehouse import Warehouse

    return FakeCatalog(Warehouse(tmp_path_factory.mktemp("wh")))


@pytest.fixture(scope="session")
def duckdb_shell() -> str:
    """The DuckDB shell of `pip install duckdb-cli`: beside this interpreter (venv not activated), else on PATH."""
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "duckdb"
    shell = str(beside) if beside.is_file() else shutil.which("duckdb")
    if shell is None:
        pytest.fail("the DuckDB shell is missing: pip install duckdb-cli (it is in the test extra)")
    return shell


MICRO_EXPERIMENT = """
# Smaller than tiny: a 32-wide model, a few thousand tokens per stage, the test tokenizer.
name = "micro"

[family]
preset = "tiny"
hidden_size = 32
intermediate_size = 64
num_attention_heads = 2
num_key_value_heads = 1
block_size = 32
eval_tokens = 256
base = {{ lr = 3e-3, weight_decay = 0.1, warmup_steps = 2, batch_size = 8, max_tokens = 4096 }}
finetune = {{ lr = 2e-3, weight_decay = 0.01, warmup_steps = 1, batch_size = 8, max_tokens = 1024 }}

[tokenizer]
source = "{tokenizer}"

[corpora]
english = "generated:childes?docs=80"
lua = "generated:lua?docs=60"
tinystories = "generated:stories?docs=80"

[saes.default]
preset = "tiny"
expansion = 2
tokens = 3072
batch_blocks = 8
eval_tokens = 480
resample_every = 100

[analyses]
ingest_batch = 8

[analyses.explain]
top = 4
"""

PAPER_LINEAGE = """
[models.base]
corpus = "english=0.5+lua=0.5"

[models.lua]
parent = "base"
corpus = "lua"

[models.tinystories]
parent = "base"
corpus = "tinystories"

[models.luastories]
parents = ["lua", "tinystories"]
t = 0.58
step = "merge"

[saes.base.seed1]
seed = 1

[saes.lua.seed1]
seed = 1

[saes.tinystories.seed1]
seed = 1

[saes.luastories.seed1]
seed = 1

[slices.eval-python]
corpus = "english=0.5+lua=0.5"
tokens = 400

[slices.eval-lua]
corpus = "lua"
tokens = 400

[slices.eval-stories]
corpus = "tinystories"
tokens = 400

[analyses.sweeps.merge-sweep]
models = ["lua", "tinystories"]
steps = 3
eval_tokens = 128
"""


@pytest.fixture
def micro_experiment(tmp_path, tiny_tokenizer_dir):
    """Writes a micro-size experiment file with the given lineage, slices and extra tables; returns its path."""

    def write(body: str = PAPER_LINEAGE, name: str = "micro.toml"):
        path = tmp_path / name
        path.write_text(MICRO_EXPERIMENT.format(tokenizer=tiny_tokenizer_dir) + body)
        return path

    return write
