"""Where files live: local paths and URLs behind one interface (the one place for URLs and credentials).

Inputs (videos, folders, globs, manifests, webdataset shards) and outputs (latent stores) may be local paths or
URLs of any object store. This module decides which a string is, rejects malformed URLs before anything is
touched, and turns a URL into an ``fsspec`` file system plus a path on it.

Credentials and endpoints come from each cloud's standard environment and config files, read by that cloud's
own client library (for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_PROFILE`` and
``~/.aws/``), so a job runs with the same settings as the user's other tools. ``storage_options`` (the CLI's
``--storage-options JSON``) are passed to the file system as keyword arguments for anything else, exactly as
fsspec, pandas and zarr accept them.

Why fsspec: it is what pandas, pyarrow, zarr, webdataset and Ray Data users already configure, it covers every
scheme the users have (``s3``, ``gs``, ``az``/``abfs``, ``http(s)``, ``file``, ``memory``), and it gives
file-like objects with ranged reads that the video decoders can consume directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfvae_cli.errors import WfvaeError

if TYPE_CHECKING:  # fsspec is imported only when a URL is used: local runs never pay for it
    import fsspec

__all__ = [
    "SCHEMES",
    "StorageError",
    "StorageUrl",
    "describe_error",
    "filesystem",
    "is_transient",
    "is_url",
    "parse_storage_options",
    "parse_url",
    "storage_env",
]

#: scheme -> the package that implements it (the install hint of an error)
SCHEMES: dict[str, str] = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
    "file": "fsspec",
    "memory": "fsspec",
}
#: schemes whose URL names a bucket / container / host right after ``//``
_NETLOC_SCHEMES = frozenset(SCHEMES) - {"file", "memory"}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(/*)(.*)$", re.DOTALL)


class StorageError(WfvaeError):
    """A URL that is malformed, names something that does not exist, or cannot be reached or authorised."""


@dataclass(frozen=True)
class StorageUrl:
    """A validated URL: ``scheme://netloc/path`` (``netloc`` is the bucket, container or host)."""

    scheme: str
    netloc: str
    path: str  # without a leading slash

    @property
    def url(self) -> str:
        if self.scheme in ("file", "memory"):
            return f"{self.scheme}:///{self.path}" if self.scheme == "file" else f"memory://{self.path}"
        return f"{self.scheme}://{self.netloc}/{self.path}" if self.path else f"{self.scheme}://{self.netloc}"

    @property
    def fs_path(self) -> str:
        """The path as the scheme's fsspec file system names it (``bucket/key`` for object stores)."""
        if self.scheme == "file":
            return "/" + self.path
        if self.scheme in ("http", "https"):
            return self.url
        if self.scheme == "memory":
            return "/" + self.path
        return f"{self.netloc}/{self.path}" if self.path else self.netloc

    def join(self, *parts: str) -> StorageUrl:
        """A URL below this one (``parts`` are ``/``-separated relative paths)."""
        path = "/".join(p.strip("/") for p in (self.path, *parts) if p.strip("/"))
        return StorageUrl(self.scheme, self.netloc, path)

    def __str__(self) -> str:
        return self.url


def is_url(text: str | Path) -> bool:
    """True for ``scheme:…`` strings with a scheme of two or more letters (``C:\\x`` is a Windows path)."""
    if isinstance(text, Path):
        return False
    m = _SCHEME_RE.match(text)
    return bool(m) and len(m.group(1)) > 1


def parse_url(text: str, *, what: str = "URL") -> StorageUrl:
    """Validate ``text`` as a storage URL, or raise a one-line :class:`StorageError` naming it and the fix.

    Catches the mistakes that would otherwise become a silent local write or a confusing client error: an
    unknown scheme, one slash instead of two (``s3:/bucket/x``), a missing bucket (``s3:///x``).
    """
    m = _SCHEME_RE.match(text)
    if not m or len(m.group(1)) < 2:
        raise StorageError(f"{what} {text!r} is not a URL; expected scheme://bucket/path, e.g. s3://bucket/x")
    scheme, slashes, rest = m.group(1).lower(), m.group(2), m.group(3)
    if scheme not in SCHEMES:
        raise StorageError(
            f"{what} {text!r}: unknown scheme {scheme!r}; use one of {', '.join(sorted(SCHEMES))} "
            "(or a local path)"
        )
    if scheme == "file":
        if slashes not in ("/", "///") and not (slashes == "//" and rest.startswith("localhost/")):
            raise StorageError(f"{what} {text!r}: a file URL is file:///absolute/path")
        path = rest.removeprefix("localhost/") if slashes == "//" else rest
        return StorageUrl("file", "", path.strip("/"))
    if len(slashes) > 2 and scheme != "memory":
        raise StorageError(f"{what} {text!r}: no bucket (or host) after '{scheme}://'; write {scheme}://BUCKET/path")
    if slashes != "//":
        fixed = f"{scheme}://{rest.lstrip('/')}"
        raise StorageError(f"{what} {text!r}: expected two slashes after '{scheme}:'; did you mean {fixed!r}?")
    netloc, _, path = rest.partition("/")
    if not netloc and scheme != "memory":
        raise StorageError(f"{what} {text!r}: no bucket (or host) after '{scheme}://'; write {scheme}://BUCKET/path")
    if scheme == "memory":
        return StorageUrl("memory", "", rest.strip("/"))
    return StorageUrl(scheme, netloc, path.strip("/"))


def parse_storage_options(text: str | None, *, option: str = "--storage-options") -> dict[str, Any]:
    """The ``--storage-options`` JSON object (``None`` or empty: no options)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WfvaeError(f"{option}: not valid JSON ({exc.msg} at column {exc.colno}); pass a JSON object") from None
    if not isinstance(value, dict):
        raise WfvaeError(f"{option}: expected a JSON object such as '{{\"anon\": true}}', got {type(value).__name__}")
    return value


def filesystem(
    url: StorageUrl | str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system for ``url`` and the path on it.

    A scheme whose implementation is not installed is a :class:`StorageError` that names the package to install.
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with the core install
        raise StorageError(f"{parsed}: reading URLs needs fsspec; pip install fsspec") from None
    try:
        fs = fsspec.filesystem(parsed.scheme, **with_defaults(parsed.scheme, storage_options or {}))
    except ImportError:
        package = SCHEMES[parsed.scheme]
        from wfvae_cli.extras import EXTRA_OF, install_command

        fix = install_command(EXTRA_OF[package][0]) if package in EXTRA_OF else f"pip install {package}"
        raise StorageError(f"{parsed}: the {parsed.scheme}:// scheme needs {package}; {fix}") from None
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{parsed}: bad storage options ({exc}); check --storage-options") from None
    return fs, parsed.fs_path


#: botocore client settings used unless the user's ``--storage-options`` / ``config_kwargs`` say otherwise:
#: a short connect timeout and botocore's "standard" retry mode (exponential backoff with jitter on
#: connection errors, 5xx and throttling), so an unreachable endpoint fails in seconds, not minutes, and a
#: transient error of a healthy endpoint is retried. s3fs adds its own retries of read errors on top.
S3_CLIENT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 60,
    "retries": {"max_attempts": 3, "mode": "standard"},
}


def with_defaults(scheme: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus this module's client defaults for ``scheme`` (the user's values always win)."""
    if scheme not in ("s3", "s3a"):
        return options
    config = {**S3_CLIENT_DEFAULTS, **(options.get("config_kwargs") or {})}
    return {**options, "config_kwargs": config}


_with_defaults = with_defaults  # the name other modules used before it was public


#: fsspec (s3fs) option -> obstore S3 config key, for the few places that talk to obstore directly (the writer
#: lease's conditional PUTs). One ``--storage-options`` object serves both, in fsspec's spelling.
_S3FS_TO_OBSTORE = {"key": "access_key_id", "secret": "secret_access_key", "token": "session_token",
                    "endpoint_url": "endpoint", "region_name": "region"}


def obstore_options(scheme: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """``--storage-options`` (fsspec spelling) as obstore ``from_url`` keyword arguments.

    S3: credentials, endpoint, region and ``anon`` are translated (also from ``client_kwargs``); an ``http://``
    endpoint (a local S3-compatible server) turns on ``allow_http``. Options with no obstore meaning (retries,
    timeouts, block sizes) are dropped: obstore has its own retry policy. Other schemes take their settings from
    the cloud's standard environment (obstore reads the same variables as the SDKs); their options are not
    translated.
    """
    import os

    options = dict(options or {})
    out: dict[str, Any] = {}
    client_options: dict[str, Any] = dict(options.get("client_options") or {})
    if scheme in ("s3", "s3a"):
        flat = {**(options.get("client_kwargs") or {}), **options}
        for src, dst in _S3FS_TO_OBSTORE.items():
            if flat.get(src) is not None:
                out[dst] = flat[src]
        if flat.get("anon"):
            out["skip_signature"] = True
        if "endpoint" not in out:
            # obstore reads these itself, and an empty one makes its request signer panic (a BaseException
            # that no error mapping sees) on the first request instead of failing with a message.
            for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
                if name in os.environ and not os.environ[name].strip():
                    raise StorageError(
                        f"{name} is set but empty; unset it (unset {name}) or set it to the S3 endpoint URL"
                    )
        endpoint = out.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if str(endpoint or "").startswith("http://"):
            client_options.setdefault("allow_http", True)
    if client_options:
        out["client_options"] = client_options
    return out


#: exception class names (from botocore, aiohttp, s3fs, gcsfs, adlfs) that mean "try again": the network
#: dropped, the server was busy (5xx) or throttled us. Matched by name so that no cloud SDK must be imported.
_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError", "TimeoutError", "IncompleteRead",
        "ReadTimeoutError", "ConnectTimeoutError", "ResponseStreamingError", "ServerDisconnectedError",
        "ClientPayloadError", "ClientOSError", "ServerTimeoutError", "FSTimeoutError", "ProtocolError",
        "HttpResponseError", "ServiceResponseError",
    }
)
_TRANSIENT_TEXT = ("SlowDown", "Throttl", "TooManyRequests", "RequestTimeout", "InternalError",
                   "ServiceUnavailable", "503", "500 ", "502", "504", "reduce your request rate")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying (a dropped connection, a timeout, a 5xx, throttling)."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    for cls in type(exc).__mro__:
        if cls.__name__ in _TRANSIENT_NAMES:
            return True
    text = str(exc)
    return any(t in text for t in _TRANSIENT_TEXT)


def describe_error(exc: BaseException, url: str, *, what: str = "input") -> StorageError:
    """One line naming ``url`` and the fix, for an exception raised by an fsspec file system or its SDK.

    The cases users hit: a bucket or key that does not exist, credentials that are missing or refused, an
    endpoint that cannot be reached, and anything else (shown with its class name so it can be searched).
    """
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:300]
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, StorageError):
        return exc
    if "NoSuchBucket" in text or ("NoSuchBucket" in names):
        bucket = url.split("://", 1)[-1].split("/", 1)[0]
        return StorageError(
            f"{what} {url}: bucket {bucket!r} does not exist (or is not visible with these credentials); check the URL"
        )
    no_credentials = {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError",
                      "CredentialRetrievalError"}
    # "169.254.169.254": obstore (Rust) fell back to the instance-metadata endpoint, i.e. no credentials were set
    if names & no_credentials or "169.254.169.254" in text:
        return StorageError(
            f"{what} {url}: no credentials found ({name}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a profile, "
            "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*), or pass --storage-options '{\"anon\": true}' "
            "for a public bucket"
        )
    if isinstance(exc, PermissionError) or any(
        k in text for k in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403")
    ):
        return StorageError(
            f"{what} {url}: access denied ({text or name}); check the credentials (AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket's permissions"
        )
    if names & {
        "EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionRefusedError", "gaierror"
    } or ("Could not connect" in text):
        return StorageError(
            f"{what} {url}: cannot reach the storage endpoint ({text or name}); check AWS_ENDPOINT_URL / "
            "--storage-options endpoint_url and the network"
        )
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{what} {url} does not exist; check the URL (quote glob patterns so the shell keeps them)")
    return StorageError(f"{what} {url}: storage error {name}: {text}; check the URL, credentials and endpoint")


#: environment variables that configure the cloud clients (endpoints, regions, profiles, credentials). A Ray job
#: hands the ones set on the driver to its workers (wfvae_cli/pipeline/ray), so a worker on another node reaches
#: the same endpoint with the same identity as the coordinator, as a local run would; docs/ray.md.
STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "AZURE_")


def storage_env() -> dict[str, str]:
    """The cloud-client environment variables set in this process (see :data:`STORAGE_ENV_PREFIXES`)."""
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES) and v}


def adopt_storage_env(env: dict[str, str], *, replace: bool = False) -> None:
    """Make ``env`` (a :func:`storage_env` of another process) this process's cloud-client environment.

    ``replace=True`` also removes the cloud variables ``env`` does not have, so this process mirrors the other
    exactly (a decode worker mirrors its parent, whose settings may change after the worker started, e.g. when
    a job points ``AWS_ENDPOINT_URL`` at a server). Without it, variables are only added or overwritten (a Ray
    node keeps what it set for itself).
    """
    import os

    if replace:
        for name in [k for k in os.environ if k.startswith(STORAGE_ENV_PREFIXES) and k not in env]:
            del os.environ[name]
    os.environ.update(env)
