"""The web demo of an export: a static page that runs `decoder.onnx` in the browser.

`write_web_demo(version_dir)` writes VERSION/web/ beside `decoder.onnx`:

  web/
    index.html  demo.js  demo.css   the page (as_introvae_tf/serving/web_page/)
    seeds.js                        `generate`'s seed rule in JavaScript (tests/test_web.py
                                    checks it against `signatures.seeds_to_z_numpy`)
    decoder.onnx  model_card.json   copies of the export's files
    ort.wasm.min.js                 onnxruntime-web (WebAssembly build), its loader and
    ort-wasm-simd-threaded.mjs      WebAssembly file: everything the page loads is in this
    ort-wasm-simd-threaded.wasm     folder, so any static file server works, offline

The onnxruntime-web files come from the npm package pinned in ONE place,
`as_introvae_tf/serving/web_page/package.json` (with its package-lock.json), installed by
`npm ci --prefix as_introvae_tf/serving/web_page` (tools/setup.sh runs it) into
`web_page/node_modules/` (not in git: ~150 MB, of which the page copies ~15 MB). The
environment variable `AS_INTROVAE_ORT_WEB_DIR` names another folder holding the same files (the
package's `dist/`, e.g. for an installed wheel).

  python -m as_introvae_tf.export --workdir=runs/x --export_dir=exports/x --web   # writes web/
  python -m as_introvae_tf.serving.web --version_dir=exports/x/1            # web/ afterwards
  python -m as_introvae_tf.serving.web --version_dir=exports/x/1 --serve    # http://127.0.0.1:8000/
  python -m http.server -d exports/x/1/web                                  # the same page

Errors (`WebDemoError`; the command prints `error: ...` and exits with status 1): the
onnxruntime-web files missing (the message names the folder and the `npm ci` command that fills
it) or of another version than the pin, a version folder without decoder.onnx or
model_card.json, a web/ folder that exists already (without `overwrite`), a folder that cannot
be written.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import sys

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_page")
"""The page's sources and the npm pin (package.json, package-lock.json) of onnxruntime-web."""
PAGE_FILES = ("index.html", "demo.js", "demo.css", "seeds.js")
ORT_WEB_PACKAGE = "onnxruntime-web"
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""What the page loads from onnxruntime-web's dist/: the WebAssembly-only build."""
ORT_WEB_DIR_ENV = "AS_INTROVAE_ORT_WEB_DIR"
WEB_DIR = "web"
EXPORT_FILES = ("decoder.onnx", "model_card.json")
MIME_TYPES = {
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".onnx": "application/octet-stream",
}


class WebDemoError(Exception):
  """The web demo cannot be written; the message names the problem and the fix."""


def pinned_ort_web_version(page_dir: str = PAGE_DIR) -> str:
  """The onnxruntime-web version pinned in `page_dir/package.json` (the one place it is set).

  Raises:
    WebDemoError: package.json is missing or does not pin an exact version.
  """
  path = os.path.join(page_dir, "package.json")
  try:
    with open(path) as f:
      version = json.load(f)["dependencies"][ORT_WEB_PACKAGE]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise WebDemoError(f"cannot read the {ORT_WEB_PACKAGE} pin from {path}: {e}") from None
  if not all(part.isdigit() for part in version.split(".")):
    raise WebDemoError(f"{path} must pin an exact {ORT_WEB_PACKAGE} version; got {version!r}")
  return version


def install_command(page_dir: str = PAGE_DIR) -> str:
  """The command that installs the pinned onnxruntime-web (what tools/setup.sh runs)."""
  return f"npm ci --prefix {page_dir}"


def ort_web_dist(page_dir: str = PAGE_DIR) -> str:
  """The folder the onnxruntime-web files are copied from: $AS_INTROVAE_ORT_WEB_DIR or
  `page_dir/node_modules/onnxruntime-web/dist` (str; not checked, see `check_ort_web`)."""
  return os.environ.get(ORT_WEB_DIR_ENV) or os.path.join(
    page_dir, "node_modules", ORT_WEB_PACKAGE, "dist"
  )


def check_ort_web(dist: str | None = None, page_dir: str = PAGE_DIR) -> str:
  """Checks that the pinned onnxruntime-web files are installed; returns their folder (str).

  Raises:
    WebDemoError: a file of `ORT_WEB_FILES` is missing (the message names the folder and the
      `npm ci` command), or the installed package is not the pinned version.
  """
  dist = dist or ort_web_dist(page_dir)
  pinned = pinned_ort_web_version(page_dir)
  missing = [name for name in ORT_WEB_FILES if not os.path.isfile(os.path.join(dist, name))]
  if missing:
    raise WebDemoError(
      f"the {ORT_WEB_PACKAGE} {pinned} files of the web demo are not installed: "
      f"{', '.join(missing)} missing in {dist}. Run `{install_command(page_dir)}` "
      f"(bash tools/setup.sh does), or set {ORT_WEB_DIR_ENV} to a folder holding them"
    )
  package_json = os.path.join(os.path.dirname(dist), "package.json")
  if os.path.isfile(package_json):
    try:
      with open(package_json) as f:
        installed = json.load(f).get("version")
    except (OSError, ValueError, AttributeError) as e:
      raise WebDemoError(
        f"{package_json} cannot be read ({e}): run `{install_command(page_dir)}`"
      ) from None
    if installed != pinned:
      raise WebDemoError(
        f"{os.path.dirname(dist)} holds {ORT_WEB_PACKAGE} {installed}, but "
        f"{os.path.join(page_dir, 'package.json')} pins {pinned}: run "
        f"`{install_command(page_dir)}`"
      )
  return dist


def write_web_demo(
  version_dir: str, dist: str | None = None, overwrite: bool = False, page_dir: str = PAGE_DIR
) -> str:
  """Writes the web demo into `version_dir/web/` (see the module docstring).

  Args:
    version_dir: an export version folder holding decoder.onnx and model_card.json.
    dist: the onnxruntime-web dist/ folder; default `ort_web_dist()`.
    overwrite: replace an existing web/ folder.
    page_dir: the page sources and the npm pin (default `PAGE_DIR`).

  Returns:
    The web/ folder (str). It is written under a hidden temporary name and renamed at the
    end, so a half-written page is never served.

  Raises:
    WebDemoError: see `check_ort_web`; decoder.onnx or model_card.json missing in
      `version_dir`; web/ exists and not `overwrite`; a file that cannot be written.
  """
  dist = check_ort_web(dist, page_dir)
  missing = [n for n in EXPORT_FILES if not os.path.isfile(os.path.join(version_dir, n))]
  if missing:
    raise WebDemoError(
      f"{version_dir} has no {' or '.join(missing)}: the web demo needs an export with the "
      "ONNX decoder (python -m as_introvae_tf.export with --format including onnx)"
    )
  target = os.path.join(version_dir, WEB_DIR)
  if os.path.exists(target) and not overwrite:
    raise WebDemoError(f"{target} exists already (pass --overwrite to write it again)")
  tmp = os.path.join(version_dir, f".tmp-{WEB_DIR}-{os.getpid()}")
  try:
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in PAGE_FILES:
      shutil.copyfile(os.path.join(page_dir, name), os.path.join(tmp, name))
    for name in ORT_WEB_FILES:
      shutil.copyfile(os.path.join(dist, name), os.path.join(tmp, name))
    for name in EXPORT_FILES:
      shutil.copyfile(os.path.join(version_dir, name), os.path.join(tmp, name))
    if os.path.exists(target):
      shutil.rmtree(target)
    os.rename(tmp, target)
  except OSError as e:
    raise WebDemoError(f"cannot write the web demo to {target}: {e}") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


def make_server(directory: str, port: int = 8000, host: str = "127.0.0.1"):
  """A `http.server.ThreadingHTTPServer` serving `directory` with the MIME types the page
  needs (.mjs as JavaScript, .wasm as application/wasm, whatever the system's tables say).
  Call `serve_forever()` on it; `server_address` holds the port (0 picks a free one).

  Raises:
    OSError: the address cannot be bound.
  """

  class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      del format, args  # quiet: the page's own status tells what happens

  return http.server.ThreadingHTTPServer(
    (host, port), functools.partial(Handler, directory=directory)
  )


def main(argv=None) -> int:
  """`python -m as_introvae_tf.serving.web`: writes VERSION/web/ (unless it exists) and, with
  --serve, serves it. Returns the exit status (0 ok, 1 `error: ...` printed)."""
  parser = argparse.ArgumentParser(
    prog="python -m as_introvae_tf.serving.web",
    description="Write (and serve) the web demo of an exported decoder.",
  )
  parser.add_argument("--version_dir", required=True, help="EXPORT_DIR/VERSION of an export")
  parser.add_argument("--overwrite", action="store_true", help="write web/ again if it exists")
  parser.add_argument("--serve", action="store_true", help="serve web/ over http afterwards")
  parser.add_argument("--port", type=int, default=8000, help="port of --serve (default 8000)")
  parser.add_argument("--host", default="127.0.0.1", help="address of --serve (127.0.0.1)")
  args = parser.parse_args(argv)
  target = os.path.join(args.version_dir, WEB_DIR)
  try:
    if args.overwrite or not os.path.isdir(target):
      target = write_web_demo(args.version_dir, overwrite=args.overwrite)
      print(f"Wrote the web demo to {target}")
  except WebDemoError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if args.serve:
    try:
      server = make_server(target, args.port, args.host)
    except OSError as e:
      print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
      return 1
    print(f"Serving {target} at http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
      server.serve_forever()
    except KeyboardInterrupt:
      pass
    finally:
      server.server_close()
  else:
    print(f"Serve it with: python -m http.server -d {target}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
