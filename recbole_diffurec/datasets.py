"""The papers' datasets from the DiffuRec authors' own files, as RecBole atomic files.

``prepare(name, data_path)`` downloads ``datasets/data/<dir>/dataset.pkl`` of github.com/WHUIR/DiffuRec
at one pinned commit, checks its sha256, converts it (``convert``) and checks the result's counts
and sha256 before it moves it, atomically, to ``<data_path>/<name>/<name>.inter``. The pickles
hold, per user index, the chronological item sequence split into ``train`` + ``val`` + ``test``
(one item each), and the maps ``umap`` (raw user id -> index) and ``smap`` (raw item id -> index).
The conversion writes, user by user in index order, every item of train + val + test with the raw
ids and ``timestamp`` = the 0-based position in the user's sequence: the published files keep the
order of the interactions but not their times, so **timestamps are positions**, enough for
RecBole's leave-one-out split by time (``order: TO``) and nothing that needs real time.

Without network, put the file fetched by hand at ``<data_path>/<name>/dataset.pkl`` (the
message names the URL): it is checked and converted the same way.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

from recbole_diffurec.errors import UsageError

COMMIT = "f6f70c9d78477591742c71c9ed83e5f1269530e8"  # WHUIR/DiffuRec, 2024-02-26
URL = "https://raw.githubusercontent.com/WHUIR/DiffuRec/{commit}/datasets/data/{dir}/dataset.pkl"
HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


@dataclass(frozen=True)
class Source:
    """One dataset: where its pickle is, and what the pickle and the converted file must be."""

    name: str
    directory: str  # under datasets/data/ of the authors' repository
    pkl_sha256: str
    inter_sha256: str
    counts: tuple[int, int, int]  # users, items, interactions

    @property
    def url(self) -> str:
        return URL.format(commit=COMMIT, dir=self.directory)


SOURCES = {
    s.name: s
    for s in (
        Source("amazon-beauty", "amazon_beauty",
               "1d5ba224ff02584bcde37d3dd9fd3191d440829e7fcb7fe42dcfd313dd2144cb",
               "9cc62f3b17f84e3d195f67a5cc40d540eaa6ada491b4c9886c143c87f8c1ad99", (22363, 12101, 198502)),
        Source("amazon-toys-games", "toys",
               "e6e8f7f188326a3370749055e2a736fbd16ac036f42fe051ebd8eb891ff7bd4a",
               "c8c89507346f3a323e69e936e8630d880446e4c119741c2139fb342a6a1d0919", (19412, 11924, 167597)),
        Source("ml-1m", "ml-1m",
               "24517f75352c088e6163b0f1a1d61932390c08d837e191e02d09d1d35dc63ea4",
               "66abc6a44c9bc5786202166e895bf64078cf5b112c5b3251fc1f91a7dd7f3754", (6040, 3706, 1000209)),
    )
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _NoGlobals(pickle.Unpickler):
    """The authors' pickles hold only dicts, lists, ints and strings: refuse anything else."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"global {module}.{name} in a dataset pickle")


def convert(pkl: bytes) -> tuple[bytes, tuple[int, int, int]]:
    """The RecBole ``.inter`` file of one of the authors' pickles, and its (users, items, rows)."""
    data = _NoGlobals(io.BytesIO(pkl)).load()
    users = {index: raw for raw, index in data["umap"].items()}
    items = {index: raw for raw, index in data["smap"].items()}
    lines, used = [HEADER], set()
    for index in sorted(data["train"]):
        sequence = data["train"][index] + data["val"].get(index, []) + data["test"].get(index, [])
        user = users[index]
        for position, item in enumerate(sequence):
            lines.append(f"{user}\t{items[item]}\t{position}\n")
            used.add(item)
    return "".join(lines).encode("utf-8"), (len(data["train"]), len(used), len(lines) - 1)


def _download(source: Source, hand: str) -> bytes:
    try:
        with urllib.request.urlopen(source.url, timeout=60) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        problem = f"the server answered HTTP {e.code} ({e.reason})"
    except (urllib.error.URLError, OSError) as e:
        problem = f"no network ({getattr(e, 'reason', e)})"
    raise UsageError(
        f"cannot download {source.name}: {problem} for {source.url}. Fetch that file by hand, put it at "
        f"{hand} and run the same command again."
    )


def _write_atomic(path: str, data: bytes) -> None:
    """``data`` at ``path`` through a temporary file in the same folder: all of it or nothing."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".prepare-", dir=folder)
    except OSError as e:
        raise UsageError(f"cannot write to {folder} ({e.strerror}); pass --data_path=DIR with a folder you can write.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp) if os.path.exists(tmp) else None
        what = "the disk is full" if e.errno == errno.ENOSPC else e.strerror or str(e)
        raise UsageError(f"cannot write {path}: {what}; nothing was written. Free space or pass --data_path=DIR.") from None


def prepare(name: str, data_path: str, sources: dict[str, Source] | None = None, log=print) -> str:
    """``<data_path>/<name>/<name>.inter`` from the authors' file, checked; returns its path."""
    sources = SOURCES if sources is None else sources
    if name not in sources:
        raise UsageError(f"no prepare recipe for '{name}'; the papers' datasets are: {', '.join(sources)} (or all).")
    source = sources[name]
    folder = os.path.join(data_path, name)
    target = os.path.join(folder, f"{name}.inter")
    hand = os.path.join(folder, "dataset.pkl")
    if os.path.isfile(target):
        with open(target, "rb") as f:
            found = sha256(f.read())
        if found == source.inter_sha256:
            log(f"{name}: {target} is there and verified (sha256 {found[:12]}...); nothing to do")
            return target
        raise UsageError(
            f"{target} exists but is not the expected file (sha256 {found[:12]}..., expected "
            f"{source.inter_sha256[:12]}...); move it away and run the same command again."
        )
    if os.path.isfile(hand):
        log(f"{name}: converting {hand} (fetched by hand)")
        with open(hand, "rb") as f:
            pkl = f.read()
    else:
        log(f"{name}: downloading {source.url}")
        pkl = _download(source, hand)
    if sha256(pkl) != source.pkl_sha256:
        raise UsageError(
            f"{name}: the file from {hand if os.path.isfile(hand) else source.url} has sha256 {sha256(pkl)[:12]}..., "
            f"not the pinned {source.pkl_sha256[:12]}... of WHUIR/DiffuRec@{COMMIT[:7]}; fetch {source.url} again"
            + (f" and replace {hand}." if os.path.isfile(hand) else ".")
        )
    try:
        inter, counts = convert(pkl)
    except Exception as e:
        raise UsageError(f"{name}: the pickle does not hold the authors' format ({type(e).__name__}: {e}).") from None
    if counts != source.counts:
        raise UsageError(f"{name}: converted counts (users, items, interactions) {counts}, expected {source.counts}.")
    if sha256(inter) != source.inter_sha256:
        raise UsageError(f"{name}: the converted file has sha256 {sha256(inter)[:12]}..., expected {source.inter_sha256[:12]}....")
    _write_atomic(target, inter)
    log(f"{name}: wrote {target} ({counts[0]:,} users, {counts[1]:,} items, {counts[2]:,} interactions; "
        f"sha256 {source.inter_sha256[:12]}..., verified)")
    return target


def prepare_all(names: list[str], data_path: str, log=print) -> list[str]:
    """``prepare`` each of ``names`` (``['all']``: the three); every one is tried, errors reported together."""
    names = list(SOURCES) if names == ["all"] else names
    done, problems = [], []
    for name in names:
        try:
            done.append(prepare(name, data_path, log=log))
        except UsageError as e:
            problems.append(str(e))
    if problems:
        raise UsageError(" | ".join(problems))
    return done


# ----- RecBole's own datasets (its url.yaml), when the user asks for them -----
def recbole_url(dataset: str) -> str | None:
    """RecBole's download URL of ``dataset`` (its properties/dataset/url.yaml), or None."""
    import recbole
    import yaml

    with open(os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")) as f:
        return (yaml.safe_load(f) or {}).get(dataset)


def recbole_download(dataset: str, folder: str, log=print) -> None:
    """Download and unpack RecBole's processed ``dataset`` into ``folder`` with RecBole's own helpers
    (RecBole's ``Dataset._download`` would do the same but ends with a distributed barrier that a
    single process cannot pass)."""
    from recbole.utils.url import decide_download, download_url, extract_zip, rename_atomic_files

    if dataset in SOURCES:
        raise UsageError(f"{dataset} is one of the papers' datasets: get it with --prepare={dataset}.")
    url = recbole_url(dataset)
    if url is None:
        raise UsageError(f"RecBole has no download for '{dataset}' (its url.yaml); put the atomic files in {folder}.")
    log(f"{dataset}: downloading RecBole's copy from {url}")
    try:
        if not decide_download(url):
            raise UsageError(f"download of {dataset} declined; put the atomic files in {folder} by hand.")
        os.makedirs(folder, exist_ok=True)
        path = download_url(url, folder)
        extract_zip(path, folder)
        os.unlink(path)
        rename_atomic_files(folder, os.path.splitext(os.path.basename(path))[0], dataset)
    except (urllib.error.URLError, OSError) as e:
        raise UsageError(
            f"cannot download {dataset} from {url} ({getattr(e, 'reason', e)}); fetch it by hand and unpack "
            f"it into {folder}."
        ) from None
