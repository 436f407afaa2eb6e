"""A small synchronous TensorBoard event writer (scalars and PNG images).

It writes TFRecord event files with the `tensorboard` package's protos and
record framing, from the calling thread, without TensorFlow: TF then only
reads the data set and is idle while JAX trains.
"""

from __future__ import annotations

import io
import os
import socket
import time

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class SummaryWriter:
  """Appends events to ``<logdir>/events.out.tfevents.<time>.<host>``."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self._writer = RecordWriter(open(os.path.join(logdir, name), "wb"))
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event: event_pb2.Event) -> None:
    self._writer.write(event.SerializeToString())

  def _summary(self, step: int, value: summary_pb2.Summary.Value) -> None:
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                summary=summary_pb2.Summary(value=[value])))

  def scalar(self, tag: str, value: float, step: int) -> None:
    self._summary(step, summary_pb2.Summary.Value(tag=tag, simple_value=float(value)))

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """``image``: uint8 [H, W, 1|3]."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    h, w, c = image.shape
    self._summary(step, summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
        height=h, width=w, colorspace=c, encoded_image_string=buf.getvalue())))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
