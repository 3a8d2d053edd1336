"""--dataset=mnist|fashion_mnist|cifar10|...: what is on disk first, then a TFDS download, else
one clear error. Nothing is downloaded here: the network is replaced by a failure (or by a
local TFDS test dataset that TFDS generates without a network)."""

import socket

import numpy as np
import pytest

import harness
from as_introvae_tf import data

CIFAR_DIR = data.shared_data_dir() / "cifar10"


def _no_network_call(*args, **kwargs):
  raise AssertionError("the network must not be tried when the data are on disk")


@pytest.fixture
def offline(monkeypatch):
  monkeypatch.setattr(data.standard, "network_available", lambda *a, **k: False)


@pytest.fixture
def no_debian_files(monkeypatch, tmp_path):
  monkeypatch.setattr(data.idx, "FASHION_MNIST_DIR", str(tmp_path / "no_debian_package"))


def _dummy_mnist(data_dir):
  """TFDS's own test dataset (random 28x28x1 images), generated locally, no network."""
  from tensorflow_datasets import testing

  testing.DummyMnist(data_dir=str(data_dir)).download_and_prepare()


def test_network_probe_answers_for_an_open_and_a_closed_port():
  server = socket.socket()
  server.bind(("127.0.0.1", 0))
  server.listen(1)
  port = server.getsockname()[1]
  try:
    assert data.network_available(("127.0.0.1", port), timeout=2)
  finally:
    server.close()
  assert not data.network_available(("127.0.0.1", port), timeout=2)


@harness.needs_fmnist
def test_fashion_mnist_uses_the_debian_files_without_the_network(monkeypatch):
  monkeypatch.setattr(data.standard, "network_available", _no_network_call)
  assert data.parse_dataset("fashion_mnist", None, None) == data.DatasetSpec(
    "fashion_mnist", "fashion_mnist", (28, 28, 1)
  )


def test_offline_and_nothing_on_disk_names_what_to_get(tmp_path, offline, no_debian_files):
  with pytest.raises(FileNotFoundError) as err:
    data.parse_dataset("fashion_mnist", None, None, data_dir=str(tmp_path))
  message = str(err.value)
  assert "no fashion_mnist data on this machine and no network" in message
  assert "apt-get install -y dataset-fashion-mnist" in message
  assert f"download it into {tmp_path}" in message and "download_and_prepare()" in message
  with pytest.raises(FileNotFoundError, match="--dataset celeb_a: .*folder:PATH"):
    data.parse_dataset("celeb_a", 64, 3, data_dir=str(tmp_path))


def test_a_prepared_tfds_folder_is_used_without_the_network(tmp_path, monkeypatch, no_debian_files):
  _dummy_mnist(tmp_path)
  monkeypatch.setitem(data.STANDARD_DATASETS, "mnist", "dummy_mnist")
  monkeypatch.setattr(data.standard, "network_available", _no_network_call)
  spec = data.parse_dataset("mnist", None, None, data_dir=str(tmp_path))
  assert spec == data.DatasetSpec("tfds", "dummy_mnist", (28, 28, 1))
  batch = next(iter(data.build_dataset(spec, "train", 4, seed=0, data_dir=str(tmp_path))))
  assert batch.shape == (4, 28, 28, 1) and batch.dtype == np.float32
  assert 0.0 <= float(np.min(batch)) and float(np.max(batch)) <= 1.0


def test_download_path_reports_a_failed_download(tmp_path, monkeypatch, no_debian_files):
  monkeypatch.setattr(data.standard, "network_available", lambda *a, **k: True)
  calls = []

  def failing_download(self, *args, **kwargs):  # TFDS's network call
    calls.append(args)
    raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

  from tensorflow_datasets.core.download import download_manager

  monkeypatch.setattr(download_manager.DownloadManager, "download", failing_download)
  monkeypatch.setattr(download_manager.DownloadManager, "download_and_extract", failing_download)
  with pytest.raises(FileNotFoundError) as err:
    data.parse_dataset("mnist", None, None, data_dir=str(tmp_path))
  assert calls  # the real TFDS download was tried, and failed at the network
  message = str(err.value)
  assert "downloading mnist with TensorFlow Datasets failed (ConnectionError" in message
  assert f"download it into {tmp_path}" in message
  assert not data.tfds_prepared("mnist", str(tmp_path))


def test_download_path_prepares_the_data_once(tmp_path, monkeypatch, no_debian_files):
  monkeypatch.setitem(data.STANDARD_DATASETS, "mnist", "dummy_mnist")
  monkeypatch.setattr(data.standard, "network_available", lambda *a, **k: True)
  downloads = []

  def local_download(name, data_dir):  # stands in for the network: TFDS's local test data
    downloads.append((name, data_dir))
    _dummy_mnist(data_dir)

  monkeypatch.setattr(data.standard, "download_and_prepare", local_download)
  spec = data.parse_dataset("mnist", 32, 3, data_dir=str(tmp_path))
  assert spec == data.DatasetSpec("tfds", "dummy_mnist", (32, 32, 3))
  assert downloads == [("dummy_mnist", str(tmp_path))]
  assert data.parse_dataset("mnist", 32, 3, data_dir=str(tmp_path)) == spec
  assert len(downloads) == 1  # prepared now: no second download
  batch = next(iter(data.build_dataset(spec, "test", 2, seed=0, data_dir=str(tmp_path))))
  assert batch.shape == (2, 32, 32, 3)


@harness.needs_cifar
def test_cifar10_falls_back_to_the_shared_folder_offline(tmp_path, monkeypatch):
  monkeypatch.setattr(data.standard, "network_available", _no_network_call)
  spec = data.parse_dataset("cifar10", None, None, data_dir=str(tmp_path))
  assert spec == data.DatasetSpec("folder", str(CIFAR_DIR), (32, 32, 3))


def test_cifar10_without_the_shared_folder_needs_no_folder_outside_the_package(
  tmp_path, monkeypatch, offline
):
  monkeypatch.setenv(data.SHARED_DATA_ENV, str(tmp_path / "no_shared_data"))
  with pytest.raises(
    FileNotFoundError, match="--dataset cifar10: no cifar10 data .*tfds.builder\\('cifar10'\\)"
  ):
    data.parse_dataset("cifar10", None, None, data_dir=str(tmp_path))
