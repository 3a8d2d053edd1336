"""Test setup: split the CPU into 2 logical devices before TensorFlow initialises them.

MirroredStrategy(["/cpu:0", "/cpu:1"]) then runs two real replicas on one CPU.
This must run before anything touches TF devices.
"""

import os
import resource

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf.data autotuning off in this process and the subprocesses tests start
# (as_introvae_tf/data/common.py `with_pipeline_options`): with three pytest workers on two
# cores, deleting an autotuned iterator stalled single tests for 30-90 s (docs/measurements.md).
os.environ.setdefault("AS_INTROVAE_DATA_AUTOTUNE", "0")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_addoption(parser):
  parser.addoption(
    "--run_large",
    action="store_true",
    default=False,
    help="also run tests marked large (long trainings, subprocess runs)",
  )


def pytest_configure(config):
  config.addinivalue_line("markers", "large: slow test, run only with --run_large")
  # pytest-xdist registers it too; without xdist (a serial run) the mark must still be known.
  config.addinivalue_line("markers", "xdist_group(name): run on one xdist worker with its group")


_LONGEST_FIRST = (
  "tests/test_train_lib.py::test_sigkill_at_any_moment",
  "tests/test_train_lib.py::test_fashion_mnist_run",
  "tests/test_faults_runs.py::test_sigterm_mid_run",
  "tests/test_packaging.py::test_training_command_runs_the_packaged_quickstart",
  "tests/test_mixed_precision.py::test_image_networks_on_fashion_mnist",
  "tests/test_faults_checkpoints.py::test_relative_workdir_resumes",
  "tests/test_xla_and_steps_per_execution.py::test_jit_compile_gives_the_same_steps",
  "tests/test_reproduce.py::test_reproduce_2d_writes_the_table",
  "tests/test_faults_runs.py::test_second_process_is_refused",
  "tests/test_nan_policy.py::test_two_replicas_skip_together",
  "tests/test_baselines.py::test_fashion_mnist_run_with_tiny_filters",
  "tests/test_faults_images.py::test_folder_of_every_listed_format",
  "tests/test_baselines.py::test_two_d_run_logs_and_resumes",
  "tests/test_models.py::test_as_introvae_encoder_gradient_matches",
  "tests/test_xla_and_steps_per_execution.py::test_steps_per_execution_gives_the_same_run",
  "tests/test_reproduce.py::test_reproduce_2d_basin_check",
  "tests/test_faults_images.py::test_ten_images_with_batch_4",
  "tests/test_models.py::test_as_introvae_xla_as_distance_matches",
)
"""The tests that cost most (10-35 CPU s each in session 16's log, their subprocesses
included: `TEST_CPU_LOG`, docs/measurements.md), costliest first. They are handed out first, so that none starts last and
keeps one worker busy after the others have finished. A test missing here is only scheduled
later; refresh the list from `python tools/test_cpu.py` when the costliest tests change."""


def _rank(item):
  for i, prefix in enumerate(_LONGEST_FIRST):
    if item.nodeid.startswith(prefix):
      return i
  return len(_LONGEST_FIRST)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the `xdist_group` marks
def pytest_collection_modifyitems(config, items):
  items.sort(key=_rank)  # stable: the rest keep their order
  _group_module_fixture_users(items)
  if config.getoption("--run_large"):
    return
  skip = pytest.mark.skip(reason="large test: pass --run_large to run it")
  for item in items:
    if item.get_closest_marker("large"):  # not item.keywords: a parametrize id "large" is one
      item.add_marker(skip)


def _group_module_fixture_users(items):
  """Marks each test that uses a session-scoped fixture of this file (a run or export shared
  by several test files: `trained_2d`, ...) with the group `shared_runs`, and each other test
  that uses a module- or package-scoped fixture with its file's `xdist_group`, so that
  `pytest -n 3 --dist loadgroup` (tools/test.sh) builds each such fixture (a trained run, an
  export) once, on one worker; every other test goes to whichever worker is free, which keeps
  the cores busy to the end of the run. pytest-xdist hands out the groups first (the largest
  first), then `_LONGEST_FIRST`, then the rest. Without xdist the marks do nothing."""
  for item in items:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
      continue
    defs = [d for defs in info.name2fixturedefs.values() for d in defs]
    if any(d.scope == "session" and _ours(d) for d in defs):
      item.add_marker(pytest.mark.xdist_group("shared_runs"))
    elif {d.scope for d in defs} & {"module", "package"}:
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _ours(fixturedef):
  """Whether FIXTUREDEF is defined in this file (not a pytest or plugin fixture)."""
  return getattr(fixturedef.func, "__module__", None) == __name__


@pytest.fixture(scope="session")
def trained_2d(tmp_path_factory):
  """A tiny 2-D AS-IntroVAE run (`harness.TWO_D`: ckpt-2 and ckpt-4, config.json, history),
  trained once per session (per worker) for every test that copies it (`run_copy`) or only
  reads it."""
  import harness  # pylint: disable=import-outside-toplevel

  workdir = tmp_path_factory.mktemp("trained_2d") / "run"
  harness.train(harness.two_d_config(workdir))
  return workdir


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
  """A tiny Fashion-MNIST VAE (filters 8, 16; z 4; batch 8; `harness.EXPORTED_VAE`: 4 steps,
  ckpt-2 and ckpt-4, a decoder EMA), trained once for the export and serving tests; a str."""
  import harness  # pylint: disable=import-outside-toplevel

  return harness.train_run(
    tmp_path_factory.mktemp("image_run"),
    dataset="fashion_mnist",
    filters=(8, 16),
    z_dim=4,
    batch_size=8,
  )


@pytest.fixture(scope="session")
def run_2d(tmp_path_factory):
  """A tiny 2-D VAE (`harness.EXPORTED_VAE` on the 8 Gaussians, batch 64); a str."""
  import harness  # pylint: disable=import-outside-toplevel

  return harness.train_run(
    tmp_path_factory.mktemp("run_2d"),
    dataset="8gaussians",
    z_dim=2,
    batch_size=64,
    num_hidden=16,
    num_layers=1,
  )


@pytest.fixture(scope="session")
def wgan_2d(tmp_path_factory):
  """A tiny 2-D WGAN-GP (`harness.EXPORTED_VAE`'s cadence; batch 40, 2 steps, no EMA): a
  generator without an inference encoder, for the export, evaluation and `load` tests; a str.
  Copy it before writing into it."""
  import harness  # pylint: disable=import-outside-toplevel

  return harness.train_run(
    tmp_path_factory.mktemp("wgan_2d") / "wgan",
    method="wgan_gp",
    dataset="8gaussians",
    z_dim=2,
    num_hidden=16,
    num_layers=1,
    batch_size=40,
    train_steps=2,
    num_vae=0,
    ema_decay=0.0,
  )


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
  """The folder (a str) under which the shared exports are written, one model folder each."""
  return str(tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="session")
def image_export(image_run, exports):
  """(ExportResult, loaded SavedModel) of `image_run` in EXPORTS/fm: EMA weights, SavedModel
  and ONNX."""
  from as_introvae_tf import export_lib  # pylint: disable=import-outside-toplevel

  result = export_lib.export_run(image_run, os.path.join(exports, "fm"))
  return result, tf.saved_model.load(result.version_dir)


@pytest.fixture(scope="session")
def raw_export(image_run, exports):
  """(ExportResult, loaded SavedModel) of `image_run` in EXPORTS/fm_raw: raw decoder weights,
  SavedModel only."""
  from as_introvae_tf import export_lib  # pylint: disable=import-outside-toplevel

  result = export_lib.export_run(
    image_run, os.path.join(exports, "fm_raw"), weights="raw", formats=["saved_model"]
  )
  return result, tf.saved_model.load(result.version_dir)


@pytest.fixture(scope="session")
def small_export(image_run, exports):
  """(ExportResult, loaded SavedModel) of `image_run` in EXPORTS/fm_small, SavedModel only,
  exported with --max_batch=`harness.SMALL_EXPORT_MAX_BATCH`."""
  import harness  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import export_lib  # pylint: disable=import-outside-toplevel

  result = export_lib.export_run(
    image_run,
    os.path.join(exports, "fm_small"),
    formats=["saved_model"],
    max_batch=harness.SMALL_EXPORT_MAX_BATCH,
  )
  return result, tf.saved_model.load(result.version_dir)


@pytest.fixture
def no_pictures(monkeypatch):
  """Training runs without the matplotlib scatter plots (`harness.no_pictures`) in this test."""
  import harness  # pylint: disable=import-outside-toplevel
  from as_introvae_tf import train_lib  # pylint: disable=import-outside-toplevel

  monkeypatch.setattr(train_lib, "render_samples", harness.no_pictures)


@pytest.fixture
def private_check_cache(tmp_path_factory, monkeypatch):
  """Keeps find_bad_images' on-disk cache out of the user's ~/.cache during a test (the image
  folder tests use it: `pytestmark = pytest.mark.usefixtures("private_check_cache")`)."""
  from as_introvae_tf import data  # pylint: disable=import-outside-toplevel

  monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("check_cache")))


@pytest.fixture
def run_copy(trained_2d, tmp_path):
  """A private copy of `trained_2d` (tmp_path/run), to damage or train on."""
  import shutil  # pylint: disable=import-outside-toplevel

  workdir = tmp_path / "run"
  shutil.copytree(trained_2d, workdir)
  return workdir


_TWO_REPLICAS = []


@pytest.fixture
def two_replicas():
  """One MirroredStrategy over the 2 logical CPUs, shared by the whole session.

  Several MirroredStrategy objects in one process reuse collective instance keys and abort
  each other's collectives, so tests must share this one.
  """
  if not _TWO_REPLICAS:
    _TWO_REPLICAS.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
  return _TWO_REPLICAS[0]


_CPU_LOG_ENV = "TEST_CPU_LOG"
"""`TEST_CPU_LOG=FOLDER bash tools/test.sh` (a new or empty FOLDER: the files are appended
to) writes each test's CPU seconds (its process and the subprocesses it waited for; setup,
call and teardown) to FOLDER/cpu_<pid>.tsv, one file per worker. Unlike `--durations` (wall
time, which on 2 cores under `-n 3` mostly measures what the other workers were doing) it
stays meaningful with other jobs running. BUILD.md "The test suite" sums it per file."""


def _cpu_seconds():
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  folder = os.environ.get(_CPU_LOG_ENV)
  if not folder:
    yield
    return
  before = _cpu_seconds()
  yield
  after = _cpu_seconds()
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, f"cpu_{os.getpid()}.tsv"), "a") as f:
    f.write(f"{item.nodeid}\t{after[0] - before[0]:.2f}\t{after[1] - before[1]:.2f}\n")
