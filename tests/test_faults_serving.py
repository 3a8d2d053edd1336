"""Fault injection on serving (issues 12 and 26): the export's limits inside every signature and in
`load`, a broken newest export version, wrong answers to the serving client, export I/O
failures."""

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from as_introvae_tf import export_lib

import harness


# === Serving limits ===========================================================================

MAX_BATCH = harness.SMALL_EXPORT_MAX_BATCH  # small_export (tests/conftest.py)


def _pixels(n, low=0.0, high=1.0):
  return np.random.default_rng(0).uniform(low, high, (n, 28, 28, 1)).astype(np.float32)


def test_max_batch_is_checked_inside_every_signature(small_export):
  result, loaded = small_export
  assert result.model_card["max_batch"] == MAX_BATCH
  seeds = tf.range(MAX_BATCH + 1, dtype=tf.int64)
  calls = {
    "serving_default": dict(seeds=seeds),
    "generate": dict(seeds=seeds),
    "generate_png": dict(seeds=seeds),
    "decode": dict(z=tf.zeros([MAX_BATCH + 1, 4])),
    "encode": dict(images=_pixels(MAX_BATCH + 1)),
    "reconstruct": dict(images=_pixels(MAX_BATCH + 1)),
  }
  for name, inputs in calls.items():
    with pytest.raises(
      tf.errors.InvalidArgumentError, match=f"at most max_batch={MAX_BATCH} examples per request"
    ):
      loaded.signatures[name](**inputs)
  assert harness.call_signature(loaded, "generate", seeds=seeds[:MAX_BATCH])["images"].shape == (
    4,
    28,
    28,
    1,
  )


def test_encode_and_reconstruct_reject_pixels_outside_0_1_and_nan_decode_rejects_nan(small_export):
  _, loaded = small_export
  bad_inputs = {"above 1": _pixels(2, 0.0, 255.0), "below 0": _pixels(2, -1.0, 0.5)}
  nan = _pixels(2)
  nan[1, 3, 4, 0] = np.nan
  for name in ("encode", "reconstruct"):
    for what, images in bad_inputs.items():
      with pytest.raises(tf.errors.InvalidArgumentError, match="pixel values in \\[0, 1\\]"):
        loaded.signatures[name](images=images)
    with pytest.raises(tf.errors.InvalidArgumentError, match="images must be finite"):
      loaded.signatures[name](images=nan)
  z = np.zeros([2, 4], np.float32)
  z[0, 1] = np.nan
  with pytest.raises(tf.errors.InvalidArgumentError, match="z must be finite"):
    loaded.signatures["decode"](z=z)
  assert np.isfinite(harness.call_signature(loaded, "encode", images=_pixels(2))["mu"]).all()


def test_empty_requests_return_empty_batches(small_export):
  _, loaded = small_export
  empty = tf.zeros([0], tf.int64)
  assert harness.call_signature(loaded, "generate", seeds=empty)["images"].shape == (0, 28, 28, 1)
  assert harness.call_signature(loaded, "serving_default", seeds=empty)["images"].shape == (
    0,
    28,
    28,
    1,
  )
  assert harness.call_signature(loaded, "generate_png", seeds=empty)["png_bytes"].shape == (0,)
  assert harness.call_signature(loaded, "decode", z=tf.zeros([0, 4]))["images"].shape == (
    0,
    28,
    28,
    1,
  )
  assert harness.call_signature(loaded, "encode", images=_pixels(0))["mu"].shape == (0, 4)
  assert harness.call_signature(loaded, "reconstruct", images=_pixels(0))["images"].shape == (
    0,
    28,
    28,
    1,
  )


def test_load_honours_the_exports_max_batch_and_checks_inputs_as_for_a_workdir(small_export):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  result, _ = small_export
  workdir = os.path.dirname(os.path.dirname(result.model_card["checkpoint"]))
  exported = as_introvae_tf.load(os.path.dirname(result.version_dir))
  assert exported.batch_size == MAX_BATCH
  assert exported.sample(5 * MAX_BATCH, seed=0).shape == (20, 28, 28, 1)  # batches of 4
  from_workdir = as_introvae_tf.load(workdir)
  nan = _pixels(2)
  nan[1, 3, 4, 0] = np.nan
  z = np.zeros([2, 4], np.float32)
  z[0, 1] = np.inf
  for model in (from_workdir, exported):
    with pytest.raises(ValueError, match="images must be finite"):
      model.encode(nan)
    with pytest.raises(ValueError, match="images must be finite"):
      model.reconstruct(nan)
    with pytest.raises(ValueError, match=r"pixel values in \[0, 1\]"):
      model.encode(_pixels(2, 0.0, 255.0))
    with pytest.raises(ValueError, match="z must be finite"):
      model.decode(z)


def test_broken_newest_export_version_falls_back_with_a_warning(small_export, tmp_path, caplog):
  import as_introvae_tf  # pylint: disable=import-outside-toplevel

  result, _ = small_export
  export_dir = tmp_path / "fm"
  shutil.copytree(result.version_dir, export_dir / "1")
  shutil.copytree(result.version_dir, export_dir / "2")
  pb = export_dir / "2" / "saved_model.pb"
  pb.write_bytes(pb.read_bytes()[:100])  # truncated
  shutil.copytree(result.version_dir, export_dir / "3")
  shutil.rmtree(export_dir / "3" / "variables")
  caplog.set_level(logging.WARNING)
  model = as_introvae_tf.load(str(export_dir))
  assert model.path == str(export_dir / "1")
  for version in (3, 2):
    assert f"Export version {version} in {export_dir} is broken" in caplog.text
  assert "loading the newest intact version, 1" in caplog.text
  shutil.rmtree(export_dir / "1")
  with pytest.raises(ValueError, match="no version of the export .* loads: version 3: .*version 2"):
    as_introvae_tf.load(str(export_dir))
  # One version folder given: the same kind of error, naming it (was TensorFlow's own).
  with pytest.raises(ValueError, match=f"export version folder {export_dir / '2'} does not load"):
    as_introvae_tf.load(str(export_dir / "2"))


def _client(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel

  # pylint: disable-next=import-outside-toplevel
  from as_introvae_tf.serving import client as serving_client

  fv = flags.FlagValues()
  serving_client.define_flags(fv)
  fv(["serving_client"] + argv)
  return serving_client.main(["serving_client"], fv)


def test_client_refuses_more_than_max_batch_before_building_anything(monkeypatch, capsys, tmp_path):
  # pylint: disable-next=import-outside-toplevel
  from as_introvae_tf.serving import client as serving_client

  def must_not_run(*args, **kwargs):
    raise AssertionError("the request was built")

  monkeypatch.setattr(serving_client, "build_rest_request", must_not_run)
  monkeypatch.setattr(serving_client, "grpc_predict", must_not_run)
  began = time.time()
  # 10^12 seeds: building the seed list alone would exhaust the memory.
  assert _client(["--model=fm", "--num=1000000000000", f"--out={tmp_path / 'g.png'}"]) == 1
  assert "more than --max_batch=256" in capsys.readouterr().err
  assert _client(["--model=fm", "--num=5", "--max_batch=4", "--grpc=localhost:1"]) == 1
  assert "5 samples requested, more than --max_batch=4" in capsys.readouterr().err
  assert time.time() - began < 5
  with pytest.raises(ValueError, match="more than --max_batch=256"):
    serving_client.fetch_samples(list(range(257)), url="http://localhost:1", model="fm")


# === The serving client against wrong answers ================================================


class _RawHTTP:
  """A local HTTP server on 127.0.0.1 answering every POST with the raw bytes `reply(body)`
  (status line, headers and body as given, garbage included), then closing the connection.
  It serves at most 50 requests and stops itself after 60 s (or on leaving the `with`)."""

  def __init__(self, reply):
    import threading  # pylint: disable=import-outside-toplevel

    self.reply, self.requests = reply, []
    self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    self.sock.bind(("127.0.0.1", 0))
    self.sock.listen(8)
    self.sock.settimeout(0.1)
    self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
    self.stop = threading.Event()
    self.thread = threading.Thread(target=self._serve, daemon=True)

  def _serve(self):
    deadline = time.time() + 60
    while not self.stop.is_set() and time.time() < deadline and len(self.requests) < 50:
      try:
        conn, _ = self.sock.accept()
      except OSError:
        continue
      with conn:
        conn.settimeout(5)
        try:
          raw = b""
          while b"\r\n\r\n" not in raw:
            raw += conn.recv(65536) or b"\r\n\r\n"
          head, _, body = raw.partition(b"\r\n\r\n")
          length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
          while len(body) < length:
            body += conn.recv(65536)
          self.requests.append(json.loads(body))
          conn.sendall(self.reply(self.requests[-1]))
        except (OSError, ValueError, AttributeError):
          pass

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.stop.set()
    self.thread.join(10)
    self.sock.close()


def _http(body, status="200 OK", length=None):
  body = body if isinstance(body, bytes) else json.dumps(body).encode()
  length = len(body) if length is None else length
  head = (
    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    "Connection: close\r\n\r\n"
  )
  return head.encode() + body


def _images(n, shape=(8, 8, 1), value=0.5):
  return np.full((n, *shape), value, np.float32).tolist()


def _png_b64(value=128, shape=(8, 8)):
  import base64  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel

  from PIL import Image  # pylint: disable=import-outside-toplevel

  buf = io.BytesIO()
  Image.fromarray(np.full(shape, value, np.uint8), "L").save(buf, format="PNG")
  return {"b64": base64.b64encode(buf.getvalue()).decode()}


_WRONG_ANSWERS = {
  "too_few": (_http({"predictions": _images(3)}), "3 predictions for 4 seeds"),
  "too_many": (_http({"predictions": _images(5)}), "5 predictions for 4 seeds"),
  "shape": (_http({"predictions": _images(4, (8, 8, 3))}), "the model card says [8, 8, 1]"),
  "nan": (
    _http(json.dumps({"predictions": _images(4)}).replace("0.5", "NaN", 1).encode()),
    "1 non-finite values (NaN/inf)",
  ),
  "inf": (
    _http(json.dumps({"predictions": _images(4)}).replace("0.5", "Infinity", 2).encode()),
    "2 non-finite values",
  ),
  "range": (
    _http({"predictions": _images(4, value=1.5)}),
    "pixels are outside [0, 1] (min 1.5, max 1.5)",
  ),
  "negative": (_http({"predictions": _images(4, value=-0.25)}), "outside [0, 1] (min -0.25"),
  "not_a_list": (_http({"predictions": 5}), "'predictions' is a JSON int, not a list"),
  "a_string": (_http({"predictions": "images"}), "'predictions' is a JSON str, not a list"),
  "not_an_object": (_http([1, 2, 3, 4]), "not a predict answer: a JSON list"),
  "no_key": (_http({"answers": []}), "no 'predictions' or 'outputs'"),
  "ragged": (
    _http({"predictions": [*_images(3), [0.5]]}),
    "not a regular array of numbers",
  ),
  "strings": (_http({"predictions": ["a", "b", "c", "d"]}), "not a regular array of numbers"),
  "bad_png": (
    _http({"predictions": [{"b64": "bm90IGEgcG5n"}] * 4}),
    "PNG 0 of the answer does not decode",
  ),
  "empty": (_http({"predictions": []}), "0 predictions for 4 seeds"),
  "error": (_http({"error": "Servable not found"}, "404 Not Found"), "HTTP 404"),
  "error_list": (_http([1, 2], "500 Internal Server Error"), "HTTP 500 from"),
  "garbage_status": (b"GARBAGE 200 maybe\r\n\r\n{}", "did not answer in HTTP"),
  "no_answer": (b"", "did not answer in HTTP"),
  "short_body": (
    _http(b'{"predictions": [', length=1000),
    "was cut short (17 bytes received, 983 more expected)",
  ),
  "not_json": (_http(b"<html>busy</html>"), "is not JSON"),
}


def _one_error_line(err):
  assert "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  return lines[0]


@pytest.fixture
def model_card(tmp_path):
  path = tmp_path / "export" / "1" / "model_card.json"
  path.parent.mkdir(parents=True)
  path.write_text(json.dumps({"kind": "image", "example_shape": [8, 8, 1], "max_batch": 16}))
  return path


@pytest.mark.parametrize("case", sorted(_WRONG_ANSWERS))
def test_client_refuses_each_wrong_answer_in_one_line(case, tmp_path, model_card, capsys):
  reply, expected = _WRONG_ANSWERS[case]
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  with _RawHTTP(lambda body: reply) as server:
    rc = _client(
      [
        f"--url={server.url}",
        "--model=fm",
        "--num=4",
        f"--out={out_dir / 'grid.png'}",
        f"--model_card={model_card}",
        "--timeout=10",
      ]
    )
  assert rc == 1
  line = _one_error_line(capsys.readouterr().err)
  assert expected in line, line
  assert os.listdir(out_dir) == []  # no grid, no temporary file
  assert server.requests[0]["instances"] == [0, 1, 2, 3]


def test_client_writes_a_checked_answer_and_refuses_what_it_cannot_reach_or_write(
  tmp_path, model_card, capsys
):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  out_dir = tmp_path / "out"
  out_dir.mkdir()
  good = _http({"predictions": _images(4, value=0.25)})
  with _RawHTTP(lambda body: good) as server:
    args = [f"--url={server.url}", "--model=fm", "--num=4", "--timeout=10"]
    assert _client(args + [f"--out={out_dir / 'grid.png'}", f"--model_card={model_card}"]) == 0
    assert os.listdir(out_dir) == ["grid.png"]
    grid = np.asarray(Image.open(out_dir / "grid.png"))
    assert grid.shape == (16, 16) and (grid == 64).all()  # 2 x 2 cells of 0.25 * 255
    capsys.readouterr()
    # An --out it cannot write: under a file, a folder; nothing is left behind.
    (out_dir / "a_file").write_text("x")
    for out, why in (
      (out_dir / "a_file" / "grid.png", "cannot write --out"),
      (out_dir, "Is a directory"),
    ):
      assert _client(args + [f"--out={out}"]) == 1
      assert why in _one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(out_dir)) == ["a_file", "grid.png"]
    # A model card that is missing or not a card.
    assert _client(args + [f"--out={out_dir / 'g.png'}", "--model_card=/nonexistent.json"]) == 1
    assert "cannot read --model_card /nonexistent.json" in _one_error_line(capsys.readouterr().err)
    # The card's max_batch (16) is the default limit.
    assert _client(args[:-2] + ["--num=17", f"--model_card={model_card}"]) == 1
    assert "more than --max_batch=16" in _one_error_line(capsys.readouterr().err)
  # Nothing listening there any more: refused.
  assert _client(args + [f"--out={out_dir / 'g.png'}"]) == 1
  assert "cannot reach" in _one_error_line(capsys.readouterr().err)
  assert sorted(os.listdir(out_dir)) == ["a_file", "grid.png"]


def test_client_checks_points_and_pngs_without_a_model_card(tmp_path, capsys):
  from as_introvae_tf.serving import client  # pylint: disable=import-outside-toplevel

  points = np.array([[3.0, -4.0], [0.0, 1.0]], np.float32)
  np.testing.assert_array_equal(client.check_samples(points, 2, [2], "2d"), points)
  np.testing.assert_array_equal(client.check_samples(points, 2), points)  # unbounded: fine
  with pytest.raises(client.ServingError, match="non-finite"):
    client.check_samples(np.array([[np.nan, 0.0]]), 1)
  with pytest.raises(client.ServingError, match="neither an image"):
    client.check_samples(np.zeros([2, 5]), 2)
  with pytest.raises(client.ServingError, match="not numbers"):
    client.check_samples(np.array([["a", "b"]]), 1)
  pngs = _http({"predictions": [_png_b64(255)] * 3})
  with _RawHTTP(lambda body: pngs) as server:
    args = [f"--url={server.url}", "--model=fm", "--signature=generate_png", "--timeout=10"]
    assert _client(args + ["--num=3", f"--out={tmp_path / 'p.png'}"]) == 0
    assert _client(args + ["--num=2", f"--out={tmp_path / 'q.png'}"]) == 1
    assert "3 predictions for 2 seeds" in _one_error_line(capsys.readouterr().err)
  assert not (tmp_path / "q.png").exists()


def test_the_running_client_imports_no_tensorflow(tmp_path):
  """The client run end to end in a fresh interpreter (images, PNGs, 2-D points) writes its
  pictures without importing TensorFlow, Keras or the training code."""
  answers = {
    "images": _http({"predictions": _images(2, (8, 8, 3))}),
    "pngs": _http({"predictions": [_png_b64(7)] * 2}),
    "points": _http({"predictions": [[0.5, -1.0], [2.0, 3.0]]}),
  }
  code = (
    "import sys\n"
    "from absl import flags\n"
    "from as_introvae_tf.serving import client\n"
    "fv = flags.FlagValues(); client.define_flags(fv); fv(sys.argv)\n"
    "rc = client.main(sys.argv[:1], fv)\n"
    "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
    "'tf_keras') or m.startswith(('as_introvae_tf.data', 'as_introvae_tf.visualize', "
    "'as_introvae_tf.train', 'as_introvae_tf.methods')))\n"
    "print(rc, bad)\n"
  )
  for name, answer in answers.items():
    with _RawHTTP(lambda body, answer=answer: answer) as server:
      out = tmp_path / f"{name}.png"
      run = subprocess.run(
        [sys.executable, "-c", code, f"--url={server.url}", "--model=m", "--num=2", f"--out={out}"],
        capture_output=True,
        text=True,
        cwd=harness.ROOT,
        timeout=120,
      )
    assert run.stdout.strip().splitlines()[-1] == "0 []", (name, run.stdout, run.stderr)
    assert out.stat().st_size > 0


@pytest.mark.parametrize("failure", ["export_dir_under_a_file", "read_only", "disk_full"])
def test_export_io_failures_give_one_line_and_leave_no_temporary_folder(
  small_export, failure, tmp_path, monkeypatch, capsys
):
  import errno  # pylint: disable=import-outside-toplevel

  result, _ = small_export
  workdir = os.path.dirname(result.model_card["checkpoint"]).rsplit(os.sep, 1)[0]
  export_dir = tmp_path / "exports" / "fm"
  if failure == "export_dir_under_a_file":
    (tmp_path / "exports").write_text("a file, not a folder")
    needle = "Not a directory"
  elif failure == "read_only":  # as root chmod does not stop writes: the OS error is injected
    real = os.makedirs

    def read_only(path, *args, **kwargs):
      if ".tmp-" in str(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
      return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    needle = "Read-only file system"
  else:

    class FullDisk:
      def write_out(self, filepath, **kwargs):
        del kwargs
        os.makedirs(os.path.join(filepath, "variables"))  # a half-written export
        raise OSError(errno.ENOSPC, "No space left on device", filepath)

    monkeypatch.setattr(export_lib, "build_archive", lambda functions: FullDisk())
    needle = "No space left on device"
  rc = harness.export_cli(
    [f"--workdir={workdir}", f"--export_dir={export_dir}", "--format=saved_model"]
  )
  err = capsys.readouterr().err
  assert rc == 1, err
  assert err.startswith("error: ") and needle in err and "Traceback" not in err, err
  assert len(err.strip().splitlines()) == 1, err
  if os.path.isdir(export_dir):
    assert os.listdir(export_dir) == []  # no hidden .tmp-* folder, no version
