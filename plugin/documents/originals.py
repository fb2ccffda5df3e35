"""Every uploaded file (and attachment) kept as it came, named by its SHA-256.

Content addressing makes a re-sent file free and an original impossible to overwrite with
something else; the two-level fan-out (``ab/cd/<sha>``) keeps folders small.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from deskpilot.errors import InputDataError, NotFoundError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha(sha: str) -> str:
    """The hash in lower case; anything but 64 hex digits is refused (no path tricks)."""
    low = sha.lower() if isinstance(sha, str) else ""
    if not _SHA256.fullmatch(low):
        raise InputDataError(f"not a SHA-256 hex digest: {sha!r}", hint="expected 64 hex digits")
    return low


class OriginalStore:
    """A folder of originals: ``put`` is atomic and idempotent, ``get`` verifies the bytes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        sha = check_sha(sha)
        return self.root / sha[:2] / sha[2:4] / sha

    def __contains__(self, sha: object) -> bool:
        if not isinstance(sha, str) or _SHA256.fullmatch(sha.lower()) is None:
            return False
        return self.path(sha).is_file()

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store ``data`` once; returns its hash and path (an existing copy is not rewritten)."""
        sha = sha256_hex(data)
        target = self.path(sha)
        if target.is_file():
            return sha, target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, target

    def get(self, sha: str) -> bytes:
        """The original's bytes; NotFoundError when absent, InputDataError when they no longer match."""
        target = self.path(sha)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no original stored with SHA-256 {sha}") from None
        if sha256_hex(data) != target.name:
            raise InputDataError(
                f"the stored original {target.name} is damaged (its bytes no longer match the hash)",
                hint=f"restore {target} from a backup",
            )
        return data
