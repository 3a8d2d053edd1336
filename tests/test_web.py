"""The export's web demo (as_introvae_tf.serving.web) in a real browser.

Headless Chromium (Debian `chromium` + `chromium-driver`, installed by tools/setup.sh) driven by
Selenium opens the page of tiny exported models (the session runs of tests/conftest.py)
served by a local HTTP server on 127.0.0.1, and checks what it draws against onnxruntime in
Python. The seed rule in JavaScript (seeds.js) is checked against the Python one with node.

Without Chromium, chromedriver, Selenium or the onnxruntime-web files (`npm ci`, also
tools/setup.sh) these tests FAIL under the test command (tools/test.sh sets
AS_INTROVAE_REQUIRE_BROWSER=1; CI sets CI=true) and are skipped, with the reason, elsewhere.
"""

import json
import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from as_introvae_tf import export_lib
from as_introvae_tf.serving import signatures
from as_introvae_tf.serving import web

import harness

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SETUP = "bash tools/setup.sh"
Z_DIM = 4
SEEDS = [0, 1, 2, 3]
# The canvas holds round(clip(v, 0, 1) * 255) (demo.js `toByte`), so a drawn pixel p and
# onnxruntime's value v agree when |p / 255 - v| <= 0.5 / 255 + 1e-4 (1e-4: onnxruntime-web's
# WebAssembly kernels against Python onnxruntime's; measured <= 1.5e-6 on this test's model
# and on a quickstart-sized one, 2.4e-7 on an 8gaussians one).
PIXEL_TOL = 0.5 / 255 + 1e-4
FLOAT_TOL = 1e-4


def _required():
  return bool(os.environ.get("CI")) or os.environ.get("AS_INTROVAE_REQUIRE_BROWSER") == "1"


def _missing(what, message=None):
  """Fails (test command, CI) or skips (elsewhere) naming what is missing and the fix."""
  message = message or f"{what} is not installed: run `{SETUP}`"
  if _required():
    pytest.fail(message, pytrace=False)
  pytest.skip(message)


def _ort_web_or_missing():
  try:
    web.check_ort_web()
    return
  except web.WebDemoError as e:
    problem = str(e)  # (failing outside the except block: no chained traceback)
  _missing("onnxruntime-web", problem)


# === Exports and the browser ==================================================================


@pytest.fixture(scope="module")
def web_export(image_run, tmp_path_factory):
  """The version folder of `python -m as_introvae_tf.export --format=onnx --web` of the
  session's tiny Fashion-MNIST run (`image_run`, tests/conftest.py: z_dim 4)."""
  _ort_web_or_missing()
  out = tmp_path_factory.mktemp("exports") / "fm"
  assert (
    harness.export_cli([f"--workdir={image_run}", f"--export_dir={out}", "--format=onnx", "--web"])
    == 0
  )
  return str(out / "1")


@pytest.fixture(scope="module")
def export_2d(run_2d, tmp_path_factory):
  """The session's tiny 2-D VAE (`run_2d`) exported with its page (and a SavedModel)."""
  _ort_web_or_missing()
  out = tmp_path_factory.mktemp("exports")
  return export_lib.export_run(run_2d, str(out / "g8"), web=True)  # SavedModel too


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  """(root folder, base URL) of an HTTP server on 127.0.0.1 serving a fresh folder."""
  root = tmp_path_factory.mktemp("site")
  server = web.make_server(str(root), port=0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield root, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()
  server.server_close()


@pytest.fixture(scope="module")
def browser():
  """Headless Chromium through chromedriver (Selenium), closed after the module."""
  try:
    from selenium import webdriver  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.chrome.options import Options  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  except ImportError:
    webdriver = None
  if webdriver is None:
    _missing("selenium (requirements.txt)")
  for path in (CHROMIUM, CHROMEDRIVER):
    if not os.path.exists(path):
      _missing(f"{path} (Debian packages chromium, chromium-driver)")
  options = Options()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    options.add_argument(arg)
  options.add_argument("--window-size=1000,1300")
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  yield driver
  driver.quit()


def _publish(web_dir, site, name):
  """Copies a web/ folder under the server's root as `name`; returns (folder, its URL)."""
  root, base = site
  target = root / name
  shutil.copytree(web_dir, target)
  return target, f"{base}/{name}/index.html"


def _open(browser, url, timeout=60):
  """Loads `url` and waits until the page says ready or error; returns that status."""
  browser.get(url)
  deadline = time.time() + timeout
  while time.time() < deadline:
    status = browser.execute_script("return document.body.dataset.status")
    if status in ("ready", "error"):
      return status
    time.sleep(0.05)
  raise AssertionError(f"{url} still {status!r} after {timeout} s")


def _wait(browser, script, timeout=30):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if browser.execute_script(script):
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out waiting for: {script}")


def _canvas_gray(browser, selector):
  """The red channel of every pixel of the canvas at `selector` as float [H, W] in [0, 255]."""
  data = browser.execute_script(
    "const c = document.querySelector(arguments[0]);"
    "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);"
    "return [c.width, c.height, Array.from(d.data)];",
    selector,
  )
  width, height, rgba = data
  return np.asarray(rgba, np.float64).reshape(height, width, 4)[..., 0]


def _onnx(version_dir, z):
  import onnxruntime as ort  # pylint: disable=import-outside-toplevel

  session = ort.InferenceSession(
    os.path.join(version_dir, "decoder.onnx"), providers=["CPUExecutionProvider"]
  )
  return session.run(["images"], {"z": np.asarray(z, np.float32)})[0]


def _node(script):
  node = shutil.which("node")
  if node is None:
    _missing("node (Node.js)")
  return json.loads(subprocess.check_output([node, "-e", script], cwd=web.PAGE_DIR, text=True))


# === The seed rule and the pin ================================================================


def test_seed_rule_in_javascript_equals_seeds_to_z():
  seeds = [0, 1, 2, 3, 42, -1, 2**40 + 7, -(2**63), 2**63 - 1]
  for z_dim in (1, 3, 4, 32):
    js = _node(
      "const s = require('./seeds.js');"
      f"console.log(JSON.stringify({json.dumps([str(x) for x in seeds])}"
      f".map((x) => Array.from(s.seedToZ(x, {z_dim})))))"
    )
    # One float32 rounding of log/sin/cos apart at most (measured 6e-8 = 1 ulp).
    np.testing.assert_allclose(
      np.asarray(js, np.float32), signatures.seeds_to_z_numpy(seeds, z_dim), rtol=1e-6, atol=1e-6
    )
  rule, errors = _node(
    "const s = require('./seeds.js'); const errors = [];"
    "for (const bad of ['abc', '1.5', '', '9223372036854775808']) {"
    "  try { s.parseSeed(bad); errors.push(null); } catch (e) { errors.push(e.message); } }"
    "console.log(JSON.stringify([s.SEED_RULE, errors]))"
  )
  assert rule == signatures.SEED_RULE
  assert all(errors) and "integer" in errors[0] and "int64" in errors[3]


def test_onnxruntime_web_is_pinned_in_one_place():
  pinned = web.pinned_ort_web_version()
  with open(os.path.join(web.PAGE_DIR, "package-lock.json")) as f:
    lock = json.load(f)
  assert lock["packages"][""]["dependencies"]["onnxruntime-web"] == pinned
  assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == pinned
  _ort_web_or_missing()
  with open(os.path.join(os.path.dirname(web.ort_web_dist()), "package.json")) as f:
    assert json.load(f)["version"] == pinned


def test_web_flag_errors_name_the_fix(tmp_path, monkeypatch):
  with pytest.raises(export_lib.ExportError, match="--web needs the ONNX decoder"):
    export_lib.export_run(str(tmp_path), str(tmp_path / "e"), formats=["saved_model"], web=True)
  monkeypatch.setenv(web.ORT_WEB_DIR_ENV, str(tmp_path / "nowhere"))
  with pytest.raises(export_lib.ExportError, match=r"nowhere.*npm ci --prefix .*web_page"):
    export_lib.export_run(str(tmp_path), str(tmp_path / "e"), web=True)
  assert not (tmp_path / "e").exists()  # checked before anything was written
  monkeypatch.delenv(web.ORT_WEB_DIR_ENV)
  _ort_web_or_missing()
  with pytest.raises(web.WebDemoError, match="has no decoder.onnx or model_card.json"):
    web.write_web_demo(str(tmp_path))


def test_export_writes_the_page_beside_the_decoder(web_export, image_run, tmp_path, capsys):
  web_dir = os.path.join(web_export, "web")
  expected = set(web.PAGE_FILES + web.ORT_WEB_FILES + web.EXPORT_FILES)
  assert set(os.listdir(web_dir)) == expected
  with open(os.path.join(web_export, "model_card.json")) as f:
    assert json.load(f)["web_demo"].startswith("web/index.html")
  out = tmp_path / "e"
  assert harness.export_cli(
    [f"--workdir={image_run}", f"--export_dir={out}", "--format=saved_model", "--web"]
  )
  assert "error: --web needs the ONNX decoder: add onnx to --format" in capsys.readouterr().err
  assert not out.exists()
  for name in web.EXPORT_FILES:
    with open(os.path.join(web_dir, name), "rb") as a:
      with open(os.path.join(web_export, name), "rb") as b:
        assert a.read() == b.read(), name
  with open(os.path.join(web_dir, "index.html")) as f:
    html = f.read()
  assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html
  assert web.main(["--version_dir", web_export]) == 0  # exists: kept
  assert "python -m http.server -d" in capsys.readouterr().out
  assert web.main(["--version_dir", web_export, "--overwrite"]) == 0
  assert set(os.listdir(web_dir)) == expected


# === In the browser ===========================================================================


def test_page_draws_the_samples_of_generate_and_moves_with_the_sliders(web_export, site, browser):
  version_dir = web_export
  _, url = _publish(os.path.join(version_dir, "web"), site, "fm")
  assert _open(browser, url) == "ready", browser.find_element("id", "error").text
  # Everything the page loaded came from this server (no CDN, nothing from outside).
  origins = browser.execute_script(
    "return performance.getEntriesByType('resource').map((e) => new URL(e.name).origin)"
  )
  assert set(origins) == {url.split("/fm/")[0]}, origins
  expected = _onnx(version_dir, signatures.seeds_to_z_numpy(SEEDS, Z_DIM))
  # The floats onnxruntime-web returned, and the 8-bit pixels the canvas holds.
  page = np.asarray(browser.execute_script("return Array.from(demo.grid.images)"), np.float32)
  np.testing.assert_allclose(page[: expected.size], expected.reshape(-1), atol=FLOAT_TOL)
  for i, seed in enumerate(SEEDS):
    pixels = _canvas_gray(browser, f'#grid canvas[data-seed="{seed}"]') / 255.0
    assert pixels.shape == (28, 28)
    assert np.abs(pixels - expected[i, ..., 0]).max() <= PIXEL_TOL, seed

  # A slider moved with the keyboard (End = its maximum, 3) redraws the sample of seed 0.
  before = _canvas_gray(browser, "#slider-view canvas")
  draws = browser.execute_script("return demo.sliderDraws")
  from selenium.webdriver.common.keys import Keys  # pylint: disable=import-outside-toplevel

  browser.find_element("id", "z0").send_keys(Keys.END)
  _wait(browser, "return document.getElementById('z0').value === '3'")
  _wait(browser, f"return demo.sliderDraws > {draws} && !demo.sliderRunning")
  after = _canvas_gray(browser, "#slider-view canvas")
  assert np.abs(after - before).max() > 0
  z = signatures.seeds_to_z_numpy([0], Z_DIM)
  z[0, 0] = 3.0
  assert np.abs(after / 255.0 - _onnx(version_dir, z)[0, ..., 0]).max() <= PIXEL_TOL

  # The interpolation strip starts at seed 0 and ends at seed 1 (t = 0 and 1 give z exactly).
  strip = browser.find_elements("css selector", "#strip canvas")
  assert len(strip) == 8
  first = _canvas_gray(browser, "#strip canvas:first-child")
  last = _canvas_gray(browser, "#strip canvas:last-child")
  assert np.array_equal(first, _canvas_gray(browser, '#grid canvas[data-seed="0"]'))
  assert np.array_equal(last, _canvas_gray(browser, '#grid canvas[data-seed="1"]'))


def test_inputs_the_page_cannot_handle_show_a_message(web_export, site, browser):
  _, url = _publish(os.path.join(web_export, "web"), site, "fm_inputs")
  assert _open(browser, url) == "ready"
  for field, value, form, error, message in (
    (
      "seed",
      "abc",
      "seed-form",
      "seed-error",
      'first seed: a seed is an integer (int64); got "abc"',
    ),
    ("count", "0", "seed-form", "seed-error", "count: a whole number from 1 to 64"),
    ("seed-b", "2.5", "interp-form", "interp-error", "to seed: a seed is an integer"),
  ):
    browser.execute_script(
      "document.getElementById(arguments[0]).value = arguments[1];"
      "document.getElementById(arguments[2]).requestSubmit();",
      field,
      value,
      form,
    )
    _wait(browser, f"return !document.getElementById('{error}').hidden")
    assert message in browser.find_element("id", error).text
    assert browser.execute_script("return document.body.dataset.status") == "ready"
    browser.execute_script(  # a valid value again: the message goes
      "document.getElementById(arguments[0]).value = arguments[1];"
      "document.getElementById(arguments[2]).requestSubmit();",
      field,
      "1",
      form,
    )
    _wait(browser, f"return document.getElementById('{error}').hidden")
    _wait(browser, "return document.body.dataset.status === 'ready'")  # redrawn


def _broken(web_dir, site, name, change):
  target, url = _publish(web_dir, site, name)
  change(target)
  return url


def _edit_card(**fields):
  def change(target):
    card = json.loads((target / "model_card.json").read_text())
    card.update(fields)
    (target / "model_card.json").write_text(json.dumps(card))

  return change


@pytest.mark.parametrize(
  "name, change, message",
  [
    ("wrong_z_dim", _edit_card(z_dim=Z_DIM + 1), "decoder.onnx does not fit model_card.json"),
    ("bad_shape", _edit_card(example_shape=[28, 28]), "example_shape must be [2]"),
    ("other_rule", _edit_card(seeds_to_z="numpy"), "its samples would not be the model's"),
    ("no_json", lambda t: (t / "model_card.json").write_text("{z_dim"), "not valid JSON"),
    ("no_card", lambda t: (t / "model_card.json").unlink(), "not found beside this page"),
    (
      "no_wasm",
      lambda t: (t / "ort-wasm-simd-threaded.wasm").unlink(),
      "onnxruntime-web WebAssembly files",
    ),
    ("no_ort", lambda t: (t / "ort.wasm.min.js").unlink(), "ort.wasm.min.js did not load"),
    ("bad_ort", lambda t: (t / "ort.wasm.min.js").write_text(""), "ort.wasm.min.js) did not load"),
    ("no_demo_js", lambda t: (t / "demo.js").unlink(), "demo.js did not load"),
    ("no_seeds_js", lambda t: (t / "seeds.js").unlink(), "seeds.js did not load"),
    ("no_onnx", lambda t: (t / "decoder.onnx").unlink(), "decoder.onnx could not be loaded"),
    ("bad_onnx", lambda t: (t / "decoder.onnx").write_bytes(b"x"), "Could not load decoder.onnx"),
  ],
)
def test_a_bad_export_folder_shows_a_readable_error(
  web_export, site, browser, name, change, message
):
  url = _broken(os.path.join(web_export, "web"), site, name, change)
  assert _open(browser, url) == "error"
  error = browser.find_element("id", "error")
  assert error.is_displayed() and message in error.text, error.text
  assert not browser.find_element("id", "demo").is_displayed()


def test_2d_model_samples_as_a_scatter_plot(export_2d, site, browser):
  web_dir = os.path.join(export_2d.version_dir, "web")
  assert f"web demo: python -m http.server -d {web_dir}" in export_lib.describe(export_2d)
  _, url = _publish(os.path.join(export_2d.version_dir, "web"), site, "g8")
  assert _open(browser, url) == "ready", browser.find_element("id", "error").text
  assert browser.execute_script("return demo.plotRange") == 2.0  # 8gaussians: [-2, 2]^2
  assert browser.find_elements("css selector", "#grid canvas.scatter")
  points = np.asarray(browser.execute_script("return Array.from(demo.grid.images)"), np.float32)
  assert points.size == 2 * 1000
  expected = _onnx(export_2d.version_dir, signatures.seeds_to_z_numpy(range(1000), 2))
  np.testing.assert_allclose(points.reshape(-1, 2), expected, atol=FLOAT_TOL)
  # ... and the SavedModel's `generate` signature for the same seeds (the served samples).
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  generate = tf.saved_model.load(export_2d.version_dir).signatures["generate"]
  served = generate(seeds=tf.range(256, dtype=tf.int64))["images"].numpy()
  np.testing.assert_allclose(points.reshape(-1, 2)[:256], served, atol=FLOAT_TOL)


def test_a_garbled_onnxruntime_web_package_json_is_named(tmp_path):
  """A damaged `node_modules/onnxruntime-web/package.json` is a `WebDemoError` naming the file
  and the fix, not a JSON traceback."""
  dist = tmp_path / "onnxruntime-web" / "dist"
  dist.mkdir(parents=True)
  for name in web.ORT_WEB_FILES:
    (dist / name).write_text("x")
  (dist.parent / "package.json").write_text('{"version": ')
  with pytest.raises(web.WebDemoError, match=r"package.json cannot be read .*npm ci --prefix"):
    web.check_ort_web(str(dist))
