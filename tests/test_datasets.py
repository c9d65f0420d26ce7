"""The prepare command: conversion of the authors' pickles, checksums, atomic writes, failure
paths and RecBole's own downloader, all without the network."""
import errno
import io
import os
import pickle
import urllib.error

import pytest

from recbole_diffurec import datasets
from recbole_diffurec.datasets import Source, convert, prepare, sha256
from recbole_diffurec.errors import UsageError

# the authors' format: user index -> item indices (train, then one val and one test item), and the
# maps from raw ids to indices
TINY = {
    "train": {0: [1, 2], 1: [3, 1, 2]},
    "val": {0: [3], 1: [2]},
    "test": {0: [2], 1: [3]},
    "umap": {"u10": 0, "u7": 1},
    "smap": {"A": 1, "B": 2, "C": 3},
}
EXPECTED = (
    "user_id:token\titem_id:token\ttimestamp:float\n"
    "u10\tA\t0\nu10\tB\t1\nu10\tC\t2\nu10\tB\t3\n"
    "u7\tC\t0\nu7\tA\t1\nu7\tB\t2\nu7\tB\t3\nu7\tC\t4\n"
)
PKL = pickle.dumps(TINY)


def tiny_source(**changes):
    fields = dict(name="tiny", directory="tiny", pkl_sha256=sha256(PKL), inter_sha256=sha256(EXPECTED.encode()),
                  counts=(2, 3, 9))
    fields.update(changes)
    return {"tiny": Source(**fields)}


class Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def served(monkeypatch):
    """urlopen answers with the tiny pickle and counts its calls."""
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        return Response(PKL)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    return calls


def offline(monkeypatch, error):
    def urlopen(url, timeout=None):
        raise error

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)


def test_conversion_known_answer():
    inter, counts = convert(PKL)
    assert inter.decode() == EXPECTED and counts == (2, 3, 9)


def test_conversion_refuses_pickles_with_globals():
    with pytest.raises(pickle.UnpicklingError, match="global posix.system"):  # what a malicious pickle names
        convert(pickle.dumps({"train": os.system}))


def test_prepare_writes_verified_file_once(tmp_path, served):
    path = prepare("tiny", str(tmp_path), tiny_source(), log=lambda m: None)
    assert path == str(tmp_path / "tiny" / "tiny.inter") and open(path).read() == EXPECTED
    assert served == [datasets.URL.format(commit=datasets.COMMIT, dir="tiny")]
    messages = []
    prepare("tiny", str(tmp_path), tiny_source(), log=messages.append)  # there and valid: nothing to do
    assert len(served) == 1 and "nothing to do" in messages[0]
    assert os.listdir(tmp_path / "tiny") == ["tiny.inter"]  # no temporary file left


def test_offline_error_then_hand_fetched_file(tmp_path, monkeypatch):
    offline(monkeypatch, urllib.error.URLError("Name or service not known"))
    with pytest.raises(UsageError, match="no network") as e:
        prepare("tiny", str(tmp_path), tiny_source(), log=lambda m: None)
    hand = tmp_path / "tiny" / "dataset.pkl"
    assert str(hand) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "tiny").exists() or not os.listdir(tmp_path / "tiny")
    os.makedirs(hand.parent, exist_ok=True)
    hand.write_bytes(PKL)
    assert open(prepare("tiny", str(tmp_path), tiny_source(), log=lambda m: None)).read() == EXPECTED


def test_http_error(tmp_path, monkeypatch):
    offline(monkeypatch, urllib.error.HTTPError("u", 404, "Not Found", {}, None))
    with pytest.raises(UsageError, match="HTTP 404"):
        prepare("tiny", str(tmp_path), tiny_source(), log=lambda m: None)


@pytest.mark.parametrize("changes, words", [
    ({"pkl_sha256": "0" * 64}, "not the pinned"),
    ({"counts": (2, 3, 10)}, "converted counts"),
    ({"inter_sha256": "0" * 64}, "the converted file has sha256"),
])
def test_checksum_and_count_checks_write_nothing(tmp_path, served, changes, words):
    with pytest.raises(UsageError, match=words):
        prepare("tiny", str(tmp_path), tiny_source(**changes), log=lambda m: None)
    assert not (tmp_path / "tiny" / "tiny.inter").exists()


def test_full_disk_leaves_nothing_half_written(tmp_path, served, monkeypatch):
    def replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.os, "replace", replace)
    with pytest.raises(UsageError, match="the disk is full; nothing was written"):
        prepare("tiny", str(tmp_path), tiny_source(), log=lambda m: None)
    assert os.listdir(tmp_path / "tiny") == []


def test_unwritable_data_path(tmp_path, served):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write to"):
        prepare("tiny", str(tmp_path / "file"), tiny_source(), log=lambda m: None)


def test_an_existing_foreign_file_is_kept(tmp_path, served):
    os.makedirs(tmp_path / "tiny")
    (tmp_path / "tiny" / "tiny.inter").write_text("mine")
    with pytest.raises(UsageError, match="exists but is not the expected file"):
        prepare("tiny", str(tmp_path), tiny_source(), log=lambda m: None)
    assert (tmp_path / "tiny" / "tiny.inter").read_text() == "mine"


def test_the_papers_datasets_are_pinned():
    assert set(datasets.SOURCES) == {"amazon-beauty", "amazon-toys-games", "ml-1m"}
    for source in datasets.SOURCES.values():
        assert datasets.COMMIT in source.url and source.url.endswith("/dataset.pkl")
        assert len(source.pkl_sha256) == len(source.inter_sha256) == 64


def test_command_line(tmp_path, monkeypatch, capsys, workdir):
    import sys

    from conftest import ROOT

    sys.path.insert(0, ROOT)
    import run_recbole_diffurec as runner

    offline(monkeypatch, urllib.error.URLError("offline"))
    assert runner.main(["--prepare=all", f"--data_path={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.count("no network") == 3 and "ml-1m/dataset.pkl" in err
    assert runner.main(["--prepare=movies", f"--data_path={tmp_path}"]) == 2
    assert "no prepare recipe for 'movies'" in capsys.readouterr().err
    # a configured dataset that is missing points to --prepare
    assert runner.main(["--model=SASRec", "--dataset=amazon-toys-games", f"--data_path={tmp_path}"]) == 2
    assert "--prepare=amazon-toys-games" in capsys.readouterr().err


def test_recbole_download_only_when_asked(tmp_path, monkeypatch, capsys, workdir):
    import sys

    import recbole.utils.url

    from conftest import ROOT

    sys.path.insert(0, ROOT)
    import run_recbole_diffurec as runner

    assert runner.main(["--model=SASRec", "--dataset=yelp", f"--data_path={tmp_path}"]) == 2
    assert "add --download=True" in capsys.readouterr().err  # the default: no download, and the hint
    calls = []

    def urlopen(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(recbole.utils.url.ur, "urlopen", urlopen)
    assert runner.main(["--model=SASRec", "--dataset=yelp", f"--data_path={tmp_path}", "--download=True"]) == 2
    err = capsys.readouterr().err
    assert calls == [datasets.recbole_url("yelp")] and "cannot download yelp" in err and "\n" not in err.strip()
