"""Sharded ingest: N = 3 shards give exactly the rows of an unsharded ingest, published all at once; a
killed shard leaves nothing visible and its rerun completes the partition."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
from helpers import run_cli

from featstore.activations import ingest as ingest_module
from featstore.activations.ingest import ingest
from featstore.activations.shards import parse_shard
from featstore.errors import FeatstoreError
from featstore.warehouse import storage


def rows(wh):
    table = pq.read_table(wh.partition_files("m-sae", "c"))
    return sorted(zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))))


def partitions(wh):
    return wh.query("SELECT sae, corpus, path, n_rows, n_tokens FROM activation_partitions").to_pylist()


def test_three_shards_equal_the_unsharded_ingest(setup):
    wh, _ = setup
    whole = ingest(wh, "m", batch_size=1, device="cpu", progress=False)
    expected, before, view = rows(wh), partitions(wh), wh.query("SELECT * FROM activations ORDER BY ALL")
    done = [ingest(wh, "m", batch_size=1, device="cpu", progress=False, shard=(i, 3)) for i in (2, 0)]
    assert [d["published"] for d in done] == [False, False] and done[1]["waiting_for"] == [1]
    assert partitions(wh) == before  # the old partition stays until the set is complete
    last = ingest(wh, "m", batch_size=1, device="cpu", progress=False, shard=(1, 3))
    assert last["published"] and sum(d["rows"] for d in (*done, last)) == len(expected)
    assert rows(wh) == expected  # exactly the same rows, activations bit for bit
    assert wh.query("SELECT * FROM activations ORDER BY ALL").equals(view)
    (row,) = partitions(wh)
    assert (row["n_rows"], row["n_tokens"]) == (whole["rows"], whole["tokens"])
    files = wh.partition_files("m-sae", "c")  # one file per shard, each sorted as an unsharded partition is
    assert len(files) == 3 and row["path"].endswith("-*-of-00003.parquet") and str(wh.root / row["path"]) == last["path"]
    for file in files:
        keys = pq.read_table(file, columns=["feature", "tok"]).to_pylist()
        assert keys == sorted(keys, key=lambda k: (k["feature"], k["tok"]))
    assert sorted(p.name for p in files[0].parent.iterdir()) == [f.name for f in files]  # the old file is gone
    assert not list((wh.root / "staging" / "shards").iterdir())


def test_a_failed_shard_leaves_nothing_and_its_rerun_completes(setup, monkeypatch):
    wh, _ = setup
    ingest(wh, "m", batch_size=1, device="cpu", progress=False)
    expected = rows(wh)
    wh_rows = wh.scalar("SELECT count(*) FROM activations")
    ingest(wh, "m", batch_size=1, device="cpu", progress=False, shard=(0, 2))
    real = ingest_module.encode_windows

    def dies_after_one_batch(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(ingest_module, "encode_windows", dies_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        ingest(wh, "m", batch_size=1, device="cpu", progress=False, shard=(1, 2))
    (folder,) = [p for p in (wh.root / "staging" / "shards").iterdir() if p.is_dir()]
    assert [p.name for p in folder.iterdir()] == ["part-00000-of-00002.parquet"]  # no trace of the dead shard
    assert wh.scalar("SELECT count(*) FROM activations") == wh_rows
    monkeypatch.setattr(ingest_module, "encode_windows", real)
    done = ingest(wh, "m", batch_size=1, device="cpu", progress=False, shard=(1, 2))
    assert done["published"] and rows(wh) == expected


def test_sigkilled_shard_then_rerun_via_cli(setup):
    """A shard killed with SIGKILL mid-run (in its own process) leaves no part; rerunning it publishes."""
    wh, _ = setup
    first = run_cli(wh, "ingest", "m", "--shard", "0/2", "--device", "cpu")
    assert first.exit_code == 0 and "waiting for shards [1]" in first.output, first.output
    script = textwrap.dedent(f"""
        import os, signal
        from featstore.activations import ingest as m
        real = m.encode_windows
        def killed(*a, **k):
            for i, batch in enumerate(real(*a, **k)):
                if i == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch
        m.encode_windows = killed
        from featstore.warehouse import Warehouse
        m.ingest(Warehouse({str(wh.root)!r}), "m", batch_size=1, device="cpu", progress=False, shard=(1, 2))
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-500:]
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0
    rerun = run_cli(wh, "ingest", "m", "--shard", "1/2", "--device", "cpu")
    assert rerun.exit_code == 0 and "published ->" in rerun.output, rerun.output
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 1


def test_shard_spec_and_torchrun_environment(monkeypatch):
    assert parse_shard("2/3") == (2, 3)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parse_shard(None) is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert parse_shard(None) == (3, 4)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(FeatstoreError, match="--shard"):
            parse_shard(bad)


def test_several_devices_ingest_as_one_shard_each(setup):
    """`--device cpu,cpu`: two shards side by side in one process give exactly the unsharded rows, in two files."""
    wh, _ = setup
    ingest(wh, "m", batch_size=1, device="cpu", progress=False)
    expected = rows(wh)
    done = run_cli(wh, "ingest", "m", "--all-corpora", "--device", "cpu,cpu", "--batch-size", "1")
    assert done.exit_code == 0, done.output
    assert f"m-sae on c: {len(expected):,} rows" in done.output and "-*-of-00002.parquet" in done.output
    assert rows(wh) == expected and len(wh.partition_files("m-sae", "c")) == 2
    assert not [p for p in (wh.root / "staging" / "shards").iterdir() if p.is_dir()]


def test_devices_ingest_keeps_the_declared_act_dtype(setup):
    """The shards of `ingest_on_devices` store the act dtype asked for, and its summary reports the stored one."""
    wh, _ = setup
    summary = ingest_module.ingest_on_devices(wh, "m", ["cpu", "cpu"], batch_size=1, act_dtype="bfloat16", progress=False)
    assert summary["act_dtype"] == "bfloat16"
    assert {storage.act_dtype(path) for path in wh.partition_files("m-sae", "c")} == {"bfloat16"}


def test_which_devices_an_ingest_is_sharded_over(monkeypatch):
    from featstore.activations.ingest import ingest_devices

    assert ingest_devices("cpu, cpu", None) == ["cpu", "cpu"]
    assert ingest_devices(None, None) is None and ingest_devices("cpu", None) is None  # no GPU here
    monkeypatch.setattr(ingest_module.torch.cuda, "device_count", lambda: 4)
    for device in (None, "auto", "cuda"):
        assert ingest_devices(device, None) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert ingest_devices("cuda:1", None) is None and ingest_devices(None, (0, 2)) is None
    with pytest.raises(FeatstoreError, match="--shard runs one share on one device"):
        ingest_devices("cpu,cpu", (0, 2))


def test_an_absent_device_in_the_list_is_refused_before_any_work(setup):
    wh, _ = setup
    done = run_cli(wh, "ingest", "m", "--device", "cpu,tpu")
    assert done.exit_code == 1 and "unknown device 'tpu'" in done.output, done.output
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0
    assert not (wh.root / "staging" / "shards").exists()


def test_a_failing_device_stops_the_other_shards_and_nothing_is_published(setup, monkeypatch):
    """One of two shards fails at its first batch: the error is that one's, the other stops, no partition."""
    wh, _ = setup
    real, calls = ingest_module.batch_activations, itertools.count()

    def first_call_fails(model, blocks, *args):
        if next(calls) == 0:  # atomic: exactly one call is the first
            raise RuntimeError("CUDA out of memory (simulated)")
        ingest_module.time.sleep(0.05)  # the other shard is still running when the first fails
        return real(model, blocks, *args)

    monkeypatch.setattr(ingest_module, "batch_activations", first_call_fails)
    with pytest.raises(RuntimeError, match="simulated"):
        ingest_module.ingest_on_devices(wh, "m", ["cpu", "cpu"], batch_size=1, progress=False)
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0
    assert not [p for folder in (wh.root / "staging" / "shards").iterdir() if folder.is_dir() for p in folder.iterdir()]
