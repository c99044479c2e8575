"""File sources in object storage (s3://, gs://, az://, https://), read through fsspec.

An object is known by its ETag (or version id, or generation), not its mtime: when the manifest holds the same
ETag, the object is unchanged and not even downloaded. Any other object is copied, streamed in blocks, to a
staging file beside the warehouse and read there by the source's own adapter exactly as a local file is, so a
grown JSONL object is read on from where the last batch stopped (the manifest's hash of the bytes read so far
still matches), a rewritten one is read again whole, and one whose ETag changed but not its bytes is unchanged.

Credentials come from the environment or the storage tool's usual config (AWS_* variables and ~/.aws for s3fs,
GOOGLE_APPLICATION_CREDENTIALS for gcsfs, AZURE_STORAGE_* for adlfs), never from selfmodel.yaml: a path with a
user, password or query in it is refused when the config loads.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from selfmodel.sources.base import COMPRESSED_SUFFIXES

# fsspec protocols selfmodel reads, and the package each needs.
REMOTE_SCHEMES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                  "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}
# Environment variables whose values are storage secrets: an error is scrubbed of them before it is kept.
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY",
                   "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET")
COPY_BLOCK = 1 << 20


def is_remote(path: str | None) -> bool:
    """True for an object storage URL (a scheme fsspec reads beside the local file system)."""
    return bool(path) and urlsplit(path).scheme.lower() in REMOTE_SCHEMES


def credentials_in(url: str) -> bool:
    """True when a URL carries a credential of its own (user info, or a query such as an Azure SAS token)."""
    split = urlsplit(url)
    return "@" in split.netloc or bool(split.query)


def storage_secrets() -> list[str]:
    return [value for name in SECRET_ENV_VARS if (value := os.environ.get(name))]


@dataclass(frozen=True)
class RemoteObject:
    url: str
    size: int
    etag: str | None  # None when the store gives no ETag, version or generation: the bytes decide


def _filesystem(url: str):
    import fsspec

    scheme = urlsplit(url).scheme.lower()
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        raise OSError(f"reading {scheme}:// needs the {REMOTE_SCHEMES[scheme]} package: pip install "
                      f"{REMOTE_SCHEMES[scheme]}") from None


def _etag(info: dict) -> str | None:
    for key in ("VersionId", "version_id", "ETag", "etag", "generation", "md5Hash", "content_md5"):
        value = info.get(key)
        if value:
            return f"{key}:{str(value).strip(chr(34))}"
    return None


def list_objects(url: str, patterns: tuple[str, ...]) -> list[RemoteObject]:
    """The objects a URL names, sorted: one object, every object under a prefix ending in `/` whose name
    matches `patterns` (or their compressed forms), or those a glob names."""
    fs, path = _filesystem(url)
    protocol = url.split("://", 1)[0]
    if any(char in path for char in "*?["):
        infos = list(fs.glob(path, detail=True).values())
    elif url.endswith("/") or (fs.isdir(path) and not fs.isfile(path)):
        names = patterns + tuple(pattern + suffix for pattern in patterns for suffix in COMPRESSED_SUFFIXES)
        infos = [info for info in fs.find(path, detail=True).values()
                 if any(fnmatch.fnmatchcase(info["name"].rsplit("/", 1)[-1], name) for name in names)]
    else:
        infos = [fs.info(path)]
    objects = []
    for info in infos:
        if info.get("type", "file") != "file":
            continue
        name = info["name"]
        full = name if "://" in name else f"{protocol}://{name}"
        objects.append(RemoteObject(url=full, size=int(info.get("size") or 0), etag=_etag(info)))
    return sorted(objects, key=lambda obj: obj.url)


def download(url: str, target: Path) -> None:
    """Copy the object to `target` in blocks (memory stays flat whatever its size)."""
    fs, path = _filesystem(url)
    with fs.open(path, "rb") as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, COPY_BLOCK)


def staging_name(index: int, url: str) -> str:
    """A staged copy's file name: unique, and ending as the object does (format chat tells Parquet by it)."""
    return f"{index:06d}-{url.rsplit('/', 1)[-1] or 'object'}"
