"""The bytes that ``files.save_image/save_fig/save_torch/save_pkl/save_video`` store.

Each function turns one kind of Python object into the contents of a file,
in memory, and checks its input first, so that a bad object is refused at
the call, naming the argument, before anything is written.  The libraries
they need are optional extras, imported at the call (``import ml_dash``
stays lean); a missing one raises ``ImportError`` naming the extra to
install.  Writing a temporary file and uploading it was the alternative
rejected: the bytes go through the one verified write of
``storage/blobs.py`` like any other save, and nothing is left in /tmp when
a save fails.
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from .arrays import require

# The pixel formats a video frame may have: H x W (gray), H x W x 1, 3 (RGB) or 4 (RGBA).
_CHANNELS = (1, 3, 4)


# Extensions of ML files that the mimetypes table gets wrong (".pt" is a SNES page table there).
_BINARY = frozenset((".pt", ".pth", ".ckpt", ".safetensors", ".npy", ".npz", ".pkl", ".bin"))


def content_type(name: str) -> str:
    """The MIME type a file named ``name`` is stored with."""
    if os.path.splitext(name)[1].lower() in _BINARY:
        return "application/octet-stream"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _require(module: str, extra: str, method: str) -> Any:
    """``module`` imported, or ``ImportError`` naming ``files.<method>()`` and the extra."""
    return require(module, extra, f"files.{method}()")


def extension(path: str) -> str:
    """The lowercase extension of ``path`` without its dot (``""`` when it has none)."""
    return os.path.splitext(path)[1].lstrip(".").lower()


def image_format(path: str, default: str) -> str:
    """The Pillow/matplotlib format name for ``path``'s extension, else ``default``."""
    name = extension(path)
    return {"jpg": "jpeg", "tif": "tiff"}.get(name, name) or default


def to_uint8(array: Any, what: str) -> Any:
    """``array`` as uint8 pixels: floats in [0, 1] scaled to 0-255 (clipped), booleans
    to 0 or 255, other integers kept if they are within 0-255.  ``what`` names the
    argument in the errors."""
    import numpy as np
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{what} has NaN or infinite values; pixels must be finite")
        return (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    if array.dtype.kind == "b":
        return array.astype(np.uint8) * 255
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{what} has integer values outside 0-255 ({array.min()} to "
                             f"{array.max()}); give uint8 pixels or floats in [0, 1]")
        return array.astype(np.uint8)
    raise TypeError(f"{what} must hold numbers (floats in [0, 1] or integers 0-255), "
                    f"not {array.dtype} values")


def image_bytes(array: Any, path: str) -> bytes:
    """A numpy array (H x W, H x W x 3 or 4) encoded as an image in ``path``'s format
    (PNG when it has no extension).  Needs Pillow."""
    image_module = _require("PIL.Image", "image", "save_image")
    import numpy as np
    pixels = np.asarray(array)
    if pixels.dtype.kind in "fb":  # other dtypes go to Pillow as they are (16-bit PNG...)
        pixels = to_uint8(pixels, "save_image(array)")
    buffer = io.BytesIO()
    image_module.fromarray(pixels).save(buffer, format=image_format(path, "png").upper())
    return buffer.getvalue()


def figure_bytes(fig: Any, path: str, savefig: dict) -> bytes:
    """A matplotlib figure (default: the current one) rendered in ``path``'s format
    (PNG when it has none), then closed, as the reference package does, so that a
    loop that saves a figure per epoch does not keep every figure in memory."""
    pyplot = _require("matplotlib.pyplot", "plot", "save_fig")
    fig = fig if fig is not None else pyplot.gcf()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format(path, "png"), **savefig)
    pyplot.close(fig)
    return buffer.getvalue()


def torch_bytes(obj: Any) -> bytes:
    """``obj`` written by ``torch.save``.  Needs torch."""
    torch = _require("torch", "torch", "save_torch")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def pickle_bytes(obj: Any) -> bytes:
    """``obj`` pickled (the user's own file format: the store itself never pickles)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(f"save_pkl(): cannot pickle {type(obj).__name__}: {exc}") from None


def video_frames(frame_stack: Any) -> Any:
    """``frame_stack`` (a list of frames or one N x H x W [x C] array) as one uint8
    array of N x H x W x C, checked: ``TypeError`` for what is not frames,
    ``ValueError`` for an empty stack, frames of different shapes or bad pixels."""
    import numpy as np
    if isinstance(frame_stack, (str, bytes, dict)) or not hasattr(frame_stack, "__len__"):
        raise TypeError(f"save_video(frame_stack): expected a list of numpy frames or an "
                        f"N x H x W [x C] array, got {type(frame_stack).__name__}")
    if len(frame_stack) == 0:
        raise ValueError("save_video(frame_stack): frame_stack is empty; give at least one frame")
    if isinstance(frame_stack, np.ndarray):
        frames = frame_stack
    else:
        shapes = []
        for index, frame in enumerate(frame_stack):
            if not hasattr(frame, "shape") and not isinstance(frame, (list, tuple)):
                raise TypeError(f"save_video(frame_stack): frame {index} is a "
                                f"{type(frame).__name__}, not an array")
            shapes.append(np.shape(frame))
        if len(set(shapes)) > 1:
            first = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
            raise ValueError(f"save_video(frame_stack): frame {first} has shape {shapes[first]}, "
                             f"frame 0 has {shapes[0]}; every frame must have the same shape")
        frames = np.stack([np.asarray(frame) for frame in frame_stack])
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in _CHANNELS or 0 in frames.shape:
        raise ValueError(f"save_video(frame_stack): frames of shape {frames.shape[1:]} are not "
                         "images; each frame must be H x W (gray) or H x W x 1, 3 or 4")
    frames = to_uint8(frames, "save_video(frame_stack)")
    return frames[..., 0] if frames.shape[-1] == 1 else frames


def video_bytes(frame_stack: Any, path: str, fps: float, options: dict) -> bytes:
    """The frames encoded as a video in ``path``'s format (mp4, gif, webm...), at
    ``fps`` frames a second; ``options`` go to imageio's writer (``quality``,
    ``codec``, ``bitrate``...).  Needs imageio and imageio-ffmpeg (the ``video``
    extra), which ships its own ffmpeg binary."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < 1e6:
        raise ValueError(f"save_video(fps={fps!r}): fps must be a positive number")
    name = extension(path)
    if not name:
        raise ValueError(f"save_video(to={os.path.basename(path)!r}): give a name with a video "
                         "extension, such as 'rollout.mp4' or 'rollout.gif'")
    frames = video_frames(frame_stack)  # checked before the extra is imported: bad input first
    imageio = _require("imageio.v3", "video", "save_video")
    if name != "gif":
        _require("imageio_ffmpeg", "video", "save_video")
    if "." + name not in _require("imageio.config", "video", "save_video").known_extensions:
        raise ValueError(f"save_video(to={os.path.basename(path)!r}): imageio knows no format "
                         f"'.{name}'; use .mp4, .gif, .webm, .avi or .mkv")
    # GIF frames take a duration in ms; imageio's fps for them is deprecated.
    timing = {"duration": 1000 / fps} if name == "gif" else {"fps": fps}
    if name == "gif" and not _GIF_MIN_FPS <= fps:
        raise ValueError(f"save_video(fps={fps!r}): a GIF frame lasts at most 655.35 s, so a "
                         f"GIF's fps must be at least {_GIF_MIN_FPS:.5g}")
    refused = (f"save_video(to={os.path.basename(path)!r}): the encoder refused these frames or "
               f"options ({', '.join(f'{key}={value!r}' for key, value in options.items()) or 'none'})")
    with tempfile.TemporaryFile() as messages:
        try:
            with _stderr_into(messages):  # ffmpeg writes to the process's own stderr
                data = _encode(imageio, frames, "." + name, {**timing, **options})
        except Exception as exc:  # whatever the encoder raises: the frames are not stored
            raise ValueError(f"{refused}: {exc}{_said(messages)}") from exc
        if not data:  # ffmpeg failed (an unknown codec...): imageio returns no bytes, raises nothing
            raise ValueError(f"{refused}{_said(messages) or ': it wrote nothing'}")
        messages.seek(0)
        warned = messages.read()
    if warned:  # what the encoder warned of, passed on to the real stderr
        os.write(2, warned)
    return data


# Pillow stores a GIF frame's duration in centiseconds, in 16 bits.
_GIF_MIN_FPS = 1000 / 655_350


def _encode(imageio: Any, frames: Any, extension: str, options: dict) -> bytes:
    """``frames`` encoded by imageio's writer for ``extension``, closed even when it fails.

    A writer whose write failed keeps the frames it had not flushed, and
    each later ``close()`` (the one of its ``__del__`` too) tries them again:
    it is closed here until it has none left, or its ``__del__`` prints an
    "Exception ignored" traceback on stderr.
    """
    writer = imageio.imopen("<bytes>", "w", extension=extension, legacy_mode=False)
    try:
        return writer.write(frames, **options)
    finally:
        for _ in range(len(frames) + 2):
            try:
                writer.close()
                break
            except Exception:  # the failure the write raised already, met again
                continue


@contextlib.contextmanager
def _stderr_into(file: Any) -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to ``file`` for the block, so
    that what an encoder's child process (ffmpeg) prints is read, not shown.

    imageio starts ffmpeg with the inherited stderr and checks neither its exit
    status nor what it printed.  ``FFREPORT`` (a log file of ffmpeg's own) was
    the alternative rejected: ffmpeg prints on stderr all the same.  Another
    thread's output in the meantime is caught too; it is passed on after.
    """
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to catch
        yield
        return
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _said(messages: Any) -> str:
    """The last lines the encoder printed into ``messages``, as ``": ..."``, or ""."""
    messages.seek(0)
    lines = [line.strip() for line in messages.read().decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    return ": ffmpeg said " + " / ".join(lines[-4:]) if lines else ""
