"""Test setup: split the CPU into 2 logical devices before TensorFlow initialises them.

MirroredStrategy(["/cpu:0", "/cpu:1"]) then runs two real replicas on one CPU
(../shared/design/ECOSYSTEM.md). This must run before anything touches TF devices.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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


def pytest_collection_modifyitems(config, items):
  if config.getoption("--run_large"):
    return
  skip = pytest.mark.skip(reason="large test: pass --run_large to run it")
  for item in items:
    if "large" in item.keywords:
      item.add_marker(skip)


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
