"""Finding, verifying and choosing the checkpoints of a run (never silently losing or mixing one).

A run's checkpoints live in `WORKDIR/checkpoints` as `ckpt-STEP.index` + `ckpt-STEP.data-*`,
next to the small text file `checkpoint` (the index `tf.train.CheckpointManager` keeps: the
latest prefix and the managed list). Either can be damaged: the index missing, empty or
garbled, a checkpoint truncated, corrupted (TF checks a CRC32C per tensor) or half-deleted.
This module looks at the files themselves, not only at the index:

  `on_disk(directory)`         every `ckpt-STEP` with any file there, oldest first
  `verify(prefix)`             reads every tensor back: None, or what is wrong with it
  `read_run_info(prefix)`      the method/architecture/run id stored in the checkpoint
  `choose_for_training(...)`   the newest checkpoint that restores (older ones as fallback,
                               with a warning naming both); rebuilds a broken index
  `choose_for_reading(...)`    evaluate/export: the newest checkpoint, or an error naming the
                               damaged one and the intact ones

Every checkpoint written by `train_lib` carries a string variable `run_info` (JSON: method,
the architecture flags `config.ARCHITECTURE_KEYS`, example shape, run id, workdir), checked on
every restore: a checkpoint of another method, architecture or run is refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time

import tensorflow as tf
from absl import logging
from tensorflow.python.checkpoint import checkpoint_management  # update_checkpoint_state_internal

from as_introvae_tf import config as config_lib

CHECKPOINT_NAME = "ckpt"
INDEX_FILE = "checkpoint"
DAMAGED_DIR = "damaged"
RUN_INFO = "run_info"
RUN_INFO_KEY = f"{RUN_INFO}/.ATTRIBUTES/VARIABLE_VALUE"
_FILE_RE = re.compile(rf"^{CHECKPOINT_NAME}-(\d+)\.(index|data-\d{{5}}-of-\d{{5}})$")


class CheckpointError(ValueError):
  """No usable checkpoint, or one from another method, architecture or run; the message names
  the checkpoints found and what to do."""


@dataclasses.dataclass
class Found:
  """One `ckpt-STEP` in a checkpoint directory.

  step: the number in the name (= the training step `train_lib` saved it at).
  prefix: absolute path without suffix (what `tf.train.Checkpoint.restore` takes).
  """

  step: int
  prefix: str


def on_disk(directory):
  """Every checkpoint with at least one file (`.index` or `.data-*`) in `directory`.

  Returns:
    list of `Found`, oldest (lowest step) first; empty if the directory is missing.
  """
  if not os.path.isdir(directory):
    return []
  steps = set()
  for name in os.listdir(directory):
    match = _FILE_RE.match(name)
    if match:
      steps.add(int(match.group(1)))
  directory = os.path.abspath(directory)
  return [Found(s, os.path.join(directory, f"{CHECKPOINT_NAME}-{s}")) for s in sorted(steps)]


def short_name(prefix):
  return os.path.basename(prefix)


def verify(prefix):
  """Reads every tensor of checkpoint `prefix` back (TF checks each tensor's CRC32C).

  Returns:
    None if the checkpoint is intact, else a one-line description of the damage (missing
    `.index`/`.data` file, truncated or corrupted file).
  """
  if not tf.io.gfile.exists(prefix + ".index"):
    return f"{short_name(prefix)}.index is missing"
  try:
    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except Exception as e:  # pylint: disable=broad-except  # OpError, IndexError, ValueError...
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text.split(" [Op:")[0][:300]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
  return None


def run_info(config, example_shape, run_id):
  """The JSON text stored in every checkpoint of a run (see the module docstring)."""
  return json.dumps(
    {
      "method": config.method,
      "architecture": {k: _jsonable(getattr(config, k)) for k in config_lib.ARCHITECTURE_KEYS},
      "example_shape": [int(d) for d in example_shape],
      "run_id": run_id,
      "workdir": os.path.abspath(config.workdir) if config.workdir else None,
    },
    sort_keys=True,
  )


def _jsonable(value):
  return list(value) if isinstance(value, tuple) else value


def read_run_info(prefix):
  """The `run_info` dict stored in checkpoint `prefix`, or None (written before it existed)."""
  reader = tf.train.load_checkpoint(prefix)
  if RUN_INFO_KEY not in reader.get_variable_to_shape_map():
    return None
  value = reader.get_tensor(RUN_INFO_KEY)
  return json.loads(value.decode("utf-8") if isinstance(value, bytes) else str(value))


def mismatch(info, config, run_id=None):
  """What differs between a checkpoint's `run_info` and the run described by `config`.

  Args:
    info: `read_run_info` of the checkpoint (None: an old checkpoint, nothing to compare).
    config: the run's `ExperimentConfig` (config.json).
    run_id: the workdir's run id (`workdir.RunRecord.run_id`); None: not compared.

  Returns:
    None, or a text naming the differences (method, architecture flags, run).
  """
  if info is None:
    return None
  problems = []
  if info.get("method") != config.method:
    problems.append(
      f"it was written by a --method={info.get('method')} run, config.json says "
      f"--method={config.method}"
    )
  arch = info.get("architecture", {})
  changed = [
    k
    for k in config_lib.ARCHITECTURE_KEYS
    if k != "method" and k in arch and arch[k] != _jsonable(getattr(config, k))
  ]
  if changed:
    problems.append(
      "its architecture differs: "
      + ", ".join(
        f"--{k}={arch[k]!r} (config.json: {_jsonable(getattr(config, k))!r})" for k in changed
      )
    )
  if not problems and run_id and info.get("run_id") and info["run_id"] != run_id:
    problems.append(
      f"it belongs to another run (run id {info['run_id']}, written in "
      f"{info.get('workdir')}; this workdir's run id is {run_id})"
    )
  return "; ".join(problems) or None


def read_index(directory):
  """The `checkpoint` index file of `directory`.

  Returns:
    (CheckpointState or None, problem or None): problem describes a missing, empty or garbled
    index, or one that names a checkpoint without files.
  """
  path = os.path.join(directory, INDEX_FILE)
  if not os.path.exists(path):
    return None, f"the index file {path} is missing"
  try:
    state = checkpoint_management.get_checkpoint_state(directory)  # None: garbled
  except Exception:  # pylint: disable=broad-except  # ValueError: empty
    state = None
  if state is None:
    return None, f"the index file {path} is empty or garbled"
  latest = state.model_checkpoint_path
  if not os.path.isabs(latest):
    latest = os.path.join(directory, latest)
  if not tf.io.gfile.exists(latest + ".index"):
    return None, f"the index file {path} names {short_name(latest)}, which has no .index file"
  return state, None


def _index_latest(state, directory):
  latest = state.model_checkpoint_path
  return os.path.abspath(latest if os.path.isabs(latest) else os.path.join(directory, latest))


def _listing(found, damaged):
  intact = [short_name(f.prefix) for f in found if f.prefix not in damaged]
  return ", ".join(intact) or "none"


def _move_aside(directory, prefix):
  """Moves the files of damaged checkpoint `prefix` to DIRECTORY/damaged/ (never deletes)."""
  target = os.path.join(directory, DAMAGED_DIR)
  os.makedirs(target, exist_ok=True)
  base = short_name(prefix)
  moved = []
  for name in os.listdir(directory):
    if name.startswith(base + ".") and _FILE_RE.match(name):
      destination = os.path.join(target, name)
      if os.path.exists(destination):
        destination += f".{int(time.time())}"
      shutil.move(os.path.join(directory, name), destination)
      moved.append(destination)
  return target


def rebuild_index(directory, prefix):
  """Writes an index naming `prefix` as the latest checkpoint, as *preserved*.

  `tf.train.CheckpointManager` never deletes a checkpoint whose timestamp is not after the
  index's `last_preserved_timestamp`; checkpoints the index does not list are never touched.
  So a process that recovered from a broken index deletes none of the checkpoints it found.
  """
  now = time.time()
  checkpoint_management.update_checkpoint_state_internal(
    directory,
    model_checkpoint_path=prefix,
    all_model_checkpoint_paths=[prefix],
    all_model_checkpoint_timestamps=[now - 1.0],
    last_preserved_timestamp=now,
    save_relative_paths=True,
  )


def choose_for_training(directory, config, run_id=None, log=logging.warning):
  """The checkpoint a training run continues from, or None to start at step 0.

  Newest first, the first checkpoint that `verify`s is chosen; newer damaged ones are moved to
  DIRECTORY/damaged/ (so that the run does not overwrite them) with a warning naming them and
  the one chosen. If the index file was missing, empty, garbled, or did not name the chosen
  checkpoint, it is rebuilt (`rebuild_index`: no checkpoint found here is ever deleted by the
  run). Returns None only when there is no checkpoint file at all.

  Raises:
    CheckpointError: checkpoint files exist but none is intact (nothing is moved then), or the
      newest intact one belongs to another method, architecture or run.
  """
  found = on_disk(directory)
  if not found:
    return None
  state, index_problem = read_index(directory)
  damaged = {}
  chosen = None
  for f in reversed(found):
    problem = verify(f.prefix)
    if problem is None:
      chosen = f
      break
    damaged[f.prefix] = problem
  if chosen is None:
    details = "; ".join(f"{short_name(p)}: {why}" for p, why in damaged.items())
    raise CheckpointError(
      f"{directory} holds checkpoint files but none of them restores ({details}). Nothing "
      "was deleted or overwritten. Restore a copy of the checkpoints, or use a new --workdir "
      "to start over."
    )
  problem = mismatch(read_run_info(chosen.prefix), config, run_id)
  if problem:
    raise CheckpointError(
      f"{chosen.prefix} is not a checkpoint of this run: {problem}. Nothing was changed. "
      "Use the --workdir of that run, or move the checkpoint away."
    )
  for prefix, why in damaged.items():
    target = _move_aside(directory, prefix)
    log(
      f"Checkpoint {short_name(prefix)} is damaged ({why}); moved its files to {target} "
      f"and resuming from the newest intact checkpoint {short_name(chosen.prefix)} (step "
      f"{chosen.step}). Checkpoints kept: {_listing(found, damaged)}."
    )
  if index_problem or damaged or _index_latest(state, directory) != chosen.prefix:
    if index_problem:
      log(
        f"{index_problem}; checkpoints found: "
        f"{', '.join(short_name(f.prefix) for f in found)}. Rebuilt the index from the "
        f"newest one that restores: {short_name(chosen.prefix)} (step {chosen.step}). No "
        "checkpoint will be deleted by this run except those it writes itself."
      )
    elif not damaged:
      log(
        f"The index file in {directory} names "
        f"{short_name(_index_latest(state, directory))} but {short_name(chosen.prefix)} is "
        "newer and intact: continuing from it."
      )
    rebuild_index(directory, chosen.prefix)
  return chosen.prefix


def choose_for_reading(directory, checkpoint=None, log=logging.warning):
  """The checkpoint evaluate/export read: `checkpoint` if given, else the newest one.

  Args:
    directory: WORKDIR/checkpoints.
    checkpoint: optional checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-1000) or directory.

  Returns:
    the prefix, verified intact. A broken index with an intact newest checkpoint only warns.

  Raises:
    CheckpointError: no checkpoint, or the one asked for (the newest by default) is damaged;
      the message names it, what is wrong, the intact ones and the flag to pick one.
  """
  if checkpoint is not None and os.path.isdir(checkpoint):
    directory, checkpoint = checkpoint, None
  found = on_disk(directory)
  if checkpoint is not None:
    prefix = os.path.abspath(checkpoint)
    scope = on_disk(os.path.dirname(prefix))
    if not any(f.prefix == prefix for f in scope):
      raise CheckpointError(
        f"--checkpoint={checkpoint} is not a checkpoint prefix (no {checkpoint}.index); "
        f"give e.g. {os.path.join(directory, CHECKPOINT_NAME)}-1000. Checkpoints in "
        f"{os.path.dirname(prefix)}: {_listing(scope, {})}"
      )
  else:
    if not found:
      raise CheckpointError(
        f"no checkpoint in {directory}: the run has not saved one yet (train it first)"
      )
    state, index_problem = read_index(directory)
    prefix = found[-1].prefix
    if index_problem:
      log(f"{index_problem}; reading the newest checkpoint found, {short_name(prefix)}")
    elif _index_latest(state, directory) != prefix:
      log(
        f"the index in {directory} names {short_name(_index_latest(state, directory))}; "
        f"reading the newest checkpoint found, {short_name(prefix)}"
      )
    scope = found
  problem = verify(prefix)
  if problem is not None:
    others = [f for f in scope if f.prefix != prefix and verify(f.prefix) is None]
    hint = (
      f" Pass --checkpoint={others[-1].prefix} to use the newest intact one (training "
      "again falls back to it by itself)."
      if others
      else ""
    )
    raise CheckpointError(
      f"checkpoint {prefix} is damaged ({problem}). Intact checkpoints: "
      f"{', '.join(short_name(f.prefix) for f in others) or 'none'}.{hint}"
    )
  return prefix
