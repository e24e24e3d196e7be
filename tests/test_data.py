"""Fetching without a mirror: canonical URLs (plain files and archive members), verified by sha256."""
import hashlib
import zipfile

import pytest

from tasks.common.data import MANIFEST, DataError, fetch_file


def test_download_plain_and_archive_member_verified(tmp_path):
    body = b"(3 (2 a) (4 fine) (2 tree))\n"
    (tmp_path / "plain.txt").write_bytes(body)
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as z:
        z.writestr("trees/train.txt", body)
    digest = hashlib.sha256(body).hexdigest()
    plain = dict(path="x/plain.txt", sha256=digest, url=(tmp_path / "plain.txt").as_uri(), mirror="x/plain.txt.gz")
    member = dict(path="x/train.txt", sha256=digest, url=(tmp_path / "bundle.zip").as_uri(),
                  member="trees/train.txt", mirror="x/train.txt.gz")
    data = tmp_path / "data"
    for entry in (plain, member):
        assert fetch_file(entry, data, mirror="", log=lambda *_: None).read_bytes() == body
    wrong = dict(member, path="x/other.txt", sha256="0" * 64)
    with pytest.raises(DataError, match="does not match the manifest"):
        fetch_file(wrong, data, mirror="", log=lambda *_: None)
    assert not (data / "x" / "other.txt").exists()
    gone = dict(plain, path="x/gone.txt", url=(tmp_path / "nowhere.txt").as_uri())
    with pytest.raises(DataError, match="SRU_DATA_MIRROR"):
        fetch_file(gone, data, mirror="", log=lambda *_: None)


def test_manifest_entries_are_complete():
    for name, dataset in MANIFEST.items():
        for entry in dataset["files"]:
            assert {"path", "sha256", "url", "mirror"} <= set(entry), (name, entry)
            assert len(entry["sha256"]) == 64 and entry["url"].startswith("https://")
