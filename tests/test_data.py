"""Fetching without a mirror: canonical URLs (plain files and archive members), verified by sha256."""
import gzip
import hashlib
import io
import tarfile
import zipfile

import pytest

from tasks.common.data import MANIFEST, DataError, fetch_file, manifest_files


def test_download_plain_and_archive_member_verified(tmp_path):
    body = b"(3 (2 a) (4 fine) (2 tree))\n"
    (tmp_path / "plain.txt").write_bytes(body)
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as z:
        z.writestr("trees/train.txt", body)
    with tarfile.open(tmp_path / "bundle.tar.gz", "w:gz") as t:   # OpenSLR's yes/no comes as a tarball
        info = tarfile.TarInfo("waves/a.txt")
        info.size = len(body)
        t.addfile(info, io.BytesIO(body))
    digest = hashlib.sha256(body).hexdigest()
    plain = dict(path="x/plain.txt", sha256=digest, url=(tmp_path / "plain.txt").as_uri(), mirror="x/plain.txt.gz")
    member = dict(path="x/train.txt", sha256=digest, url=(tmp_path / "bundle.zip").as_uri(),
                  member="trees/train.txt", mirror="x/train.txt.gz")
    tar_member = dict(path="x/a.txt", sha256=digest, url=(tmp_path / "bundle.tar.gz").as_uri(),
                      member="waves/a.txt", mirror="x/a.txt")
    data = tmp_path / "data"
    for entry in (plain, member, tar_member):
        assert fetch_file(entry, data, mirror="", log=lambda *_: None).read_bytes() == body
    wrong = dict(member, path="x/other.txt", sha256="0" * 64)
    with pytest.raises(DataError, match="does not match the manifest"):
        fetch_file(wrong, data, mirror="", log=lambda *_: None)
    assert not (data / "x" / "other.txt").exists()
    gone = dict(plain, path="x/gone.txt", url=(tmp_path / "nowhere.txt").as_uri())
    with pytest.raises(DataError, match="SRU_DATA_MIRROR"):
        fetch_file(gone, data, mirror="", log=lambda *_: None)


def test_manifest_entries_are_complete():
    for name in MANIFEST:
        for entry in manifest_files(name):
            assert {"path", "sha256", "url", "mirror"} <= set(entry), (name, entry)
            assert len(entry["sha256"]) == 64 and entry["url"].startswith("https://")


def test_a_mirror_stand_in_is_stored_under_its_own_name_and_hash(tmp_path):
    """SQuAD's mirror holds a rebuild, not the official bytes: verified against its own hash, kept apart."""
    body, canonical = b"the rebuilt file\n", b"the official file\n"
    mirror = tmp_path / "mirror"
    (mirror / "x").mkdir(parents=True)
    with gzip.open(mirror / "x" / "f.recon.json.gz", "wb") as f:
        f.write(body)
    entry = dict(path="x/f.json", sha256=hashlib.sha256(canonical).hexdigest(), url="https://example.org/f.json",
                 mirror="x/f.recon.json.gz", mirror_path="x/f.recon.json",
                 mirror_sha256=hashlib.sha256(body).hexdigest())
    got = fetch_file(entry, tmp_path / "data", mirror=mirror, log=lambda *_: None)
    assert got == tmp_path / "data" / "x" / "f.recon.json" and got.read_bytes() == body
    assert not (tmp_path / "data" / "x" / "f.json").exists()
    # the official file, once present, is preferred; a wrong stand-in hash is refused
    (tmp_path / "data" / "x" / "f.json").write_bytes(canonical)
    assert fetch_file(entry, tmp_path / "data", mirror=mirror, log=lambda *_: None).name == "f.json"
    with pytest.raises(DataError, match="expected sha256"):
        fetch_file(dict(entry, mirror_sha256="0" * 64), tmp_path / "other", mirror=mirror, log=lambda *_: None)


def test_a_truncated_gz_in_the_mirror_is_named_not_an_eof_traceback(tmp_path):
    body = b"some lines of a corpus\n" * 200
    mirror = tmp_path / "mirror"
    (mirror / "x").mkdir(parents=True)
    whole = gzip.compress(body)
    (mirror / "x" / "f.txt.gz").write_bytes(whole[: len(whole) // 2])
    entry = dict(path="x/f.txt", sha256=hashlib.sha256(body).hexdigest(), url="https://example.org/f.txt",
                 mirror="x/f.txt.gz")
    with pytest.raises(DataError, match=r"f\.txt\.gz cannot be read .*truncated or corrupt; replace it"):
        fetch_file(entry, tmp_path / "data", mirror=mirror, log=lambda *_: None)
    assert not (tmp_path / "data" / "x" / "f.txt").exists()


def test_the_mirror_is_the_variable_else_shared_data_beside_the_checkout(monkeypatch, tmp_path):
    from tasks.common import data
    monkeypatch.setenv("SRU_DATA_MIRROR", str(tmp_path))
    assert data.default_mirror() == str(tmp_path)
    monkeypatch.setenv("SRU_DATA_MIRROR", "")
    assert data.default_mirror() is None                      # set but empty: the canonical URLs
    monkeypatch.delenv("SRU_DATA_MIRROR")
    monkeypatch.setattr(data, "SHARED_MIRROR", tmp_path)
    assert data.default_mirror() == str(tmp_path)
    monkeypatch.setattr(data, "SHARED_MIRROR", tmp_path / "absent")
    assert data.default_mirror() is None
