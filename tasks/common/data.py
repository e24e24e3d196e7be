"""Fetch datasets into the data dir, from a mirror or the canonical URLs, verified by sha256.

Every file in ``manifest.json`` has a canonical URL (or an archive URL plus the ``member`` to
extract) and a sha256 of the canonical bytes. A file
is taken, in order, from: the data dir (if already there and its hash matches), the mirror
directory (``$SRU_DATA_MIRROR``, else ``../shared/data`` beside the checkout; ``.gz`` copies are
decompressed), or the URL. Whatever the
source, the bytes must match the manifest, or ``DataError`` says which file, which hash was
expected, and how to fix it. Nothing falls back silently.

A dataset of many files (FSDD's 3,000 wavs) gives a ``file_list`` instead: a checksum file in this
repository (``sha256  name`` lines) and the folder, mirror folder and URL pattern its files share.

An entry may also name a ``mirror_path`` and ``mirror_sha256``: the mirror then holds a different
file standing in for the canonical one (SQuAD: a faithful rebuild, not the official bytes). It is
stored under its own name, verified against its own hash, so the two are never confused; the task
sees which one it got from the returned path.
"""
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zlib
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from tasks.common.errors import UserError

MANIFEST = json.loads((Path(__file__).with_name("manifest.json")).read_text())


class DataError(UserError):
    pass


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_data_dir():
    return Path(os.environ.get("SRU_DATA_DIR", "data"))


def _copy_verified(write, entry, dest, source):
    """Write into a temp file beside dest, check the hash, then rename: never a half file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                write(out)
            except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # a truncated or damaged .gz in the mirror
                raise DataError(f"{source} cannot be read ({type(e).__name__}: {e}): the copy is truncated or "
                                f"corrupt; replace it (canonical: {entry['url']}, sha256 {entry['sha256']})") from e
        got = sha256(tmp)
        if got != entry["sha256"]:
            raise DataError(f"{source} does not match the manifest: expected sha256 {entry['sha256']}, "
                            f"got {got}. The source copy is corrupt or a different version; fix or "
                            f"replace it (canonical: {entry['url']}).")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _verified_in_place(dest, sha):
    if not dest.exists():
        return False
    got = sha256(dest)
    if got != sha:
        raise DataError(f"{dest} is corrupt: expected sha256 {sha}, got {got}. "
                        f"Delete it and run `python -m scripts.fetch_data` again "
                        f"(with SRU_DATA_MIRROR=<dir> when offline).")
    return True


SHARED_MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the checkout


def default_mirror():
    """The data mirror: $SRU_DATA_MIRROR if set (empty: none), else ../shared/data beside the checkout if it is
    there, else None (the canonical URLs)."""
    if "SRU_DATA_MIRROR" in os.environ:
        return os.environ["SRU_DATA_MIRROR"] or None
    return str(SHARED_MIRROR) if SHARED_MIRROR.is_dir() else None


def fetch_file(entry, data_dir, mirror=None, log=print):
    dest = Path(data_dir) / entry["path"]
    stand_in = Path(data_dir) / entry["mirror_path"] if "mirror_path" in entry else None
    if _verified_in_place(dest, entry["sha256"]):
        return dest
    if stand_in is not None and _verified_in_place(stand_in, entry["mirror_sha256"]):
        return stand_in
    mirror = mirror if mirror is not None else default_mirror()
    if mirror:
        src = Path(mirror) / entry["mirror"]
        if not src.exists():
            raise DataError(f"{src} not found in the mirror SRU_DATA_MIRROR={mirror}; expected the file "
                            f"{entry['mirror']} there (or unset SRU_DATA_MIRROR to download {entry['url']})")
        if stand_in is not None:
            dest, entry = stand_in, dict(entry, sha256=entry["mirror_sha256"])
        opener = gzip.open if src.suffix == ".gz" and dest.suffix != ".gz" else open
        log(f"copying {src} -> {dest}")
        _copy_verified(lambda out: shutil.copyfileobj(opener(src, "rb"), out), entry, dest, src)
        return dest
    try:
        if "member" in entry:  # the canonical file lives inside an archive: fetch that once, then extract
            archive = _download_archive(entry["url"], Path(data_dir) / "_downloads", log)
            log(f"extracting {entry['member']} from {archive} -> {dest}")
            is_tar = archive.name.endswith((".tar.gz", ".tgz", ".tar"))
            with (tarfile.open if is_tar else zipfile.ZipFile)(archive) as a:
                member = a.extractfile(entry["member"]) if is_tar else a.open(entry["member"])
                _copy_verified(lambda out: shutil.copyfileobj(member, out), entry, dest,
                               f"{entry['url']}:{entry['member']}")
        else:
            log(f"downloading {entry['url']} -> {dest}")
            _copy_verified(lambda out: shutil.copyfileobj(urllib.request.urlopen(entry["url"], timeout=60), out),
                           entry, dest, entry["url"])
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError) as e:
        raise DataError(f"could not fetch {entry['url']} ({e}); offline, point SRU_DATA_MIRROR at a "
                        f"directory holding {entry['mirror']}") from e
    return dest


def _download_archive(url, cache_dir, log):
    path = cache_dir / Path(urllib.parse.urlparse(url).path).name
    if not path.exists():
        log(f"downloading {url} -> {path}")
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        with open(tmp, "wb") as out:
            shutil.copyfileobj(urllib.request.urlopen(url, timeout=60), out)
        os.replace(tmp, path)
    return path


def manifest_files(name):
    """The dataset's file entries (a file_list expanded into one entry per listed file)."""
    dataset = MANIFEST[name]
    if "file_list" not in dataset:
        return dataset["files"]
    spec = dataset["file_list"]
    lines = (Path(__file__).resolve().parents[2] / spec["checksums"]).read_text().split("\n")
    entries = []
    for line in filter(None, lines):
        sha, file_name = line.split()
        entry = dict(path=f"{spec['path']}/{file_name}", sha256=sha, url=spec["url"].format(name=file_name),
                     mirror=f"{spec['mirror']}/{file_name}")
        if "member" in spec:
            entry["member"] = spec["member"].format(name=file_name)
        entries.append(entry)
    return entries


def ensure_dataset(name, data_dir=None, mirror=None, log=print):
    """Paths of the dataset's files, fetched and verified. Raises DataError naming what is wrong."""
    if name not in MANIFEST:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(MANIFEST)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    entries = manifest_files(name)
    quiet = len(entries) > 20   # one line for a folder of files, not thousands
    if quiet:
        log(f"{name}: fetching / verifying {len(entries):,} files under {data_dir}")
    return {Path(e["path"]).name: fetch_file(e, data_dir, mirror, (lambda *_: None) if quiet else log) for e in entries}
