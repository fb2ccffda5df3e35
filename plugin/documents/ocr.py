"""OCR through the ``tesseract`` binary (Apache-2.0), found at run time.

A subprocess rather than a binding: nothing to compile, a hard timeout, and a crash in
Tesseract or Leptonica cannot take the worker down with it.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from deskpilot.documents.model import DocumentRejected

if TYPE_CHECKING:
    from PIL.Image import Image

INSTALL_HINT = (
    "install Tesseract on the server (Debian/Ubuntu: `apt-get install tesseract-ocr`) "
    "or send a PDF with a text layer"
)


@functools.cache
def tesseract_path() -> str | None:
    """Where ``tesseract`` is on PATH; looked up once per process (``cache_clear()`` to re-check)."""
    return shutil.which("tesseract")


def tesseract_available() -> bool:
    return tesseract_path() is not None


def require_tesseract(what: str = "this document") -> str:
    """The binary's path, or a rejection that tells the operator what to install."""
    path = tesseract_path()
    if path is None:
        raise DocumentRejected(
            "ocr_unavailable",
            f"{what} is a scan or picture with no text layer, and OCR is not available on this server",
            hint=INSTALL_HINT,
        )
    return path


def _as_image_bytes(image: bytes | Image) -> bytes:
    """PNG/JPEG bytes go to Tesseract as they are; a Pillow image is encoded as PNG first."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if image.mode not in ("1", "L", "RGB", "RGBA", "LA", "P", "I;16"):
        image = image.convert("RGB")  # CMYK, YCbCr, ... : PNG cannot hold them
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def ocr_image(image: bytes | Image, timeout_s: float = 60.0, *, lang: str = "eng", what: str = "") -> str:
    """The text Tesseract reads in one image (PNG/JPEG bytes or a Pillow image).

    Raises DocumentRejected: ``ocr_unavailable`` without the binary, ``too_large`` past the
    timeout, ``corrupt`` when Tesseract cannot read the picture.
    """
    label = what or "the image"
    binary = require_tesseract(label)
    payload = _as_image_bytes(image)
    # one thread: on a small worker, OpenMP's threads only fight each other
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [binary, "stdin", "stdout", "-l", lang, "--psm", "3"],
            input=payload,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DocumentRejected(
            "too_large",
            f"OCR of {label} took longer than {timeout_s:g} s and was stopped",
            hint="send a smaller or cleaner scan (300 dpi, one page per image)",
        ) from exc
    except OSError as exc:
        raise DocumentRejected(
            "ocr_unavailable", f"OCR could not be started for {label}: {exc}", hint=INSTALL_HINT
        ) from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DocumentRejected(
            "corrupt",
            f"OCR could not read {label}" + (f": {detail[-1]}" if detail else ""),
            hint="check that the picture opens in an image viewer, or send a PDF",
        )
    return done.stdout.decode("utf-8", "replace").replace("\f", "\n").strip()
