"""URL validation and file systems (wfvae_cli.storage), against the session's real S3-compatible server."""

from __future__ import annotations

import pytest

from wfvae_cli.storage import StorageError, filesystem, is_url, parse_storage_options, parse_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bucket/a/b.mp4", ("s3", "bucket", "a/b.mp4")),
        ("gs://b", ("gs", "b", "")),
        ("https://host.example/x/y.mp4", ("https", "host.example", "x/y.mp4")),
        ("file:///tmp/x", ("file", "", "tmp/x")),
    ],
)
def test_parse_url(text, expected):
    u = parse_url(text)
    assert (u.scheme, u.netloc, u.path) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("s3:/bucket/x", "two slashes"),
        ("s3:///x", "no bucket"),
        ("foo://bucket/x", "unknown scheme"),
        ("file://relative/x", "file:///"),
    ],
)
def test_bad_urls_are_one_line(text, needle):
    with pytest.raises(StorageError, match=needle) as info:
        parse_url(text)
    assert "\n" not in str(info.value) and text in str(info.value)


def test_is_url():
    assert (
        is_url("s3://b/x") and is_url("s3:/b") and not is_url("/tmp/x") and not is_url("C:\\x") and not is_url("a.mp4")
    )


def test_storage_options():
    assert parse_storage_options('{"anon": true}') == {"anon": True}
    assert parse_storage_options(None) == {}
    with pytest.raises(Exception, match="JSON object"):
        parse_storage_options("[1]")


@pytest.mark.integration
def test_filesystem_reaches_the_server(s3_bucket):
    fs, path = filesystem(f"s3://{s3_bucket}/dir/x.txt")
    fs.pipe(path, b"hello")
    assert fs.cat(path) == b"hello"
    assert fs.ls(f"{s3_bucket}/dir", detail=False) == [f"{s3_bucket}/dir/x.txt"]


def test_empty_endpoint_variable_is_one_line(monkeypatch):
    """A blank AWS_ENDPOINT_URL made obstore panic on its first request; now it is a one-line error naming it."""
    from wfvae_cli.storage import StorageError, obstore_options

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    with pytest.raises(StorageError, match=r"AWS_ENDPOINT_URL is set but empty; unset it"):
        obstore_options("s3", None)
    assert obstore_options("s3", {"endpoint_url": "http://127.0.0.1:9000"})["endpoint"] == "http://127.0.0.1:9000"
