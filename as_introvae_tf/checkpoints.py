"""Finding, verifying and choosing the checkpoints of a run (never silently losing or mixing one).

A run's checkpoints live in `WORKDIR/checkpoints` as `ckpt-STEP.index` + `ckpt-STEP.data-*`,
next to the small text file `checkpoint` (the index `tf.train.CheckpointManager` keeps: the
latest prefix and the managed list). Either can be damaged: the index missing, empty or
garbled, a checkpoint truncated, corrupted (TF checks a CRC32C per tensor) or half-deleted.
This module looks at the files themselves, not only at the index:

  `on_disk(directory)`         every `ckpt-STEP` with any file there, oldest first
  `verify(prefix)`             reads every tensor back: None, or what is wrong with it
  `read_run_info(prefix)`      the method/architecture/run id stored in the checkpoint
  `choose(directory)`          THE choice, for every reader (training's resume, evaluate,
                               export, `load`): the newest checkpoint that restores (newer
                               damaged ones named in warnings, `Choice.notes`)
  `choose_for_training(...)`   `choose`, then moves damaged ones aside, rebuilds a broken index
  `choose_for_reading(...)`    `choose` and its warnings, nothing on disk changed

Paths may be relative to the working directory; every prefix returned is absolute.

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
_TEMP_RE = re.compile(rf"^{CHECKPOINT_NAME}-\d+_temp$")


class CheckpointError(ValueError):
  """No usable checkpoint, or one from another method, architecture or run; the message names
  the checkpoints found and what to do."""


class NoCheckpointError(CheckpointError, FileNotFoundError):
  """The checkpoint directory holds no (complete) checkpoint yet: the run has not saved one.
  Also a FileNotFoundError, as a missing file is."""


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
  directory = os.path.abspath(directory)
  path = os.path.join(directory, INDEX_FILE)
  if not os.path.exists(path):
    return None, f"the index file {path} is missing"
  try:
    state = checkpoint_management.get_checkpoint_state(directory)  # None: garbled
  except Exception:  # pylint: disable=broad-except  # ValueError: empty
    state = None
  if state is None:
    return None, f"the index file {path} is empty or garbled"
  # TF has already joined a relative entry with `directory` (absolute here, so the result is).
  latest = _index_latest(state, directory)
  if not tf.io.gfile.exists(latest + ".index"):
    return None, f"the index file {path} names {short_name(latest)}, which has no .index file"
  return state, None


def _index_latest(state, directory):
  """The absolute prefix the index names (TF joins a relative entry with the directory it was
  given; `directory` makes a relative result absolute, once)."""
  latest = state.model_checkpoint_path
  return os.path.abspath(latest if os.path.isabs(latest) else os.path.join(directory, latest))


def _listing(found, damaged):
  intact = [short_name(f.prefix) for f in found if f.prefix not in damaged]
  return ", ".join(intact) or "none"


def _move_aside(directory, prefix):
  """Moves the files of damaged checkpoint `prefix` to DIRECTORY/damaged/ (never deletes).

  Raises:
    CheckpointError: the files cannot be moved (a read-only or full disk); names the folder
      and the cause, and says that nothing was deleted.
  """
  target = os.path.join(directory, DAMAGED_DIR)
  base = short_name(prefix)
  try:
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(directory):
      if name.startswith(base + ".") and _FILE_RE.match(name):
        destination = os.path.join(target, name)
        if os.path.exists(destination):
          destination += f".{int(time.time())}"
        shutil.move(os.path.join(directory, name), destination)
  except OSError as e:
    raise CheckpointError(
      f"Checkpoint {base} is damaged and could not be moved aside to {target} "
      f"({e.strerror or e}{f': {e.filename}' if e.filename else ''}); training stopped "
      f"before writing anything. Nothing was deleted. Make {directory} writable (or move "
      f"{base}.* away yourself) and run the command again."
    ) from None
  return target


def remove_temporary_folders(directory):
  """Removes the `ckpt-STEP_temp/` folders a failed `tf.train.Checkpoint` save leaves behind
  (TF writes the shards there before renaming them into place; an empty or partial one never
  holds a restorable checkpoint). Only for the process that holds the workdir lock.

  Returns:
    list of the removed paths.
  """
  removed = []
  if not os.path.isdir(directory):
    return removed
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if _TEMP_RE.match(name) and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
      if not os.path.exists(path):
        removed.append(path)
  return removed


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


@dataclasses.dataclass
class Choice:
  """What `choose` found and chose in a checkpoint directory.

  prefix, step: the checkpoint chosen (absolute prefix, verified intact).
  directory: the absolute checkpoint directory.
  found: every `Found` there, oldest first.
  damaged: {prefix: what is wrong} of the checkpoints newer than the chosen one that failed
    `verify` (empty when a checkpoint was asked for by name).
  writing: the newest checkpoint, incomplete because the live training run (`writer`) is
    writing it now: skipped, not damaged. None otherwise.
  writer: the live training run's `train.lock` owner (dict) when one was given.
  index_problem: a missing, empty or garbled index, or one naming a checkpoint without files.
  index_latest: the absolute prefix the readable index names, else None.
  explicit: the checkpoint was asked for by name.
  """

  prefix: str
  step: int
  directory: str
  found: list
  damaged: dict = dataclasses.field(default_factory=dict)
  writing: str | None = None
  writer: dict | None = None
  index_problem: str | None = None
  index_latest: str | None = None
  explicit: bool = False

  def notes(self, action):
    """The warnings every reader gives about this choice, one line each.

    Args:
      action: what the caller does with the chosen checkpoint, e.g. "reading" or "resuming
        from" (the only word that differs between training and the readers).
    """
    if self.explicit:
      return []
    chosen = f"{short_name(self.prefix)} (step {self.step})"
    notes = []
    if self.writing:
      owner = self.writer or {}
      notes.append(
        f"{short_name(self.writing)} is still being written by the training run in progress "
        f"(PID {owner.get('pid')} on {owner.get('host')}{_since(owner)}); {action} the newest "
        f"complete checkpoint, {chosen}. {_STALE_LOCK_HINT}"
      )
    for prefix, why in self.damaged.items():
      notes.append(
        f"Checkpoint {short_name(prefix)} is damaged ({why}); {action} the newest intact "
        f"checkpoint, {chosen}. Intact checkpoints: "
        f"{_listing([f for f in self.found if f.prefix != self.writing], self.damaged)}."
      )
    if self.index_problem:
      notes.append(
        f"{self.index_problem}; checkpoints found: "
        f"{', '.join(short_name(f.prefix) for f in self.found)}; {action} the newest one "
        f"that restores, {chosen}."
      )
    elif not self.damaged and not self.writing and self.index_latest != self.prefix:
      notes.append(
        f"The index file in {self.directory} names {short_name(self.index_latest)} but "
        f"{short_name(self.prefix)} is newer and intact: {action} {chosen}."
      )
    return notes


_STALE_LOCK_HINT = (
  "If no such run is alive (a lock left by a run on another host, which this host cannot "
  "check), delete the workdir's train.lock."
)


def _since(owner):
  """`, since <started>` from a `train.lock` owner dict, or "" without a start time."""
  return f", since {owner['started']}" if owner.get("started") else ""


def choose(directory, checkpoint=None, writer=None):
  """THE rule that picks the checkpoint every reader uses: training's resume, evaluation,
  export and `as_introvae_tf.load` (no side effects: nothing is logged, moved or written).

  Without `checkpoint`: the newest `ckpt-STEP` on disk that `verify`s (the files decide, not
  the `checkpoint` index, which is only compared). Newer ones that fail are reported as
  damaged, except the newest one while a live training run writes in the workdir (`writer`):
  that one is incomplete, not damaged. With `checkpoint`: exactly that one.

  Args:
    directory: WORKDIR/checkpoints (relative to the working directory, or absolute).
    checkpoint: optional checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-1000) or a
      checkpoint directory; relative paths are taken from the working directory.
    writer: the `train.lock` owner (dict) of a live training run in the workdir, or None
      (`workdir.live_writer`).

  Returns:
    `Choice` (its `notes(action)` are the warnings to give).

  Raises:
    NoCheckpointError: no checkpoint file in `directory` (the run has not saved one yet).
    CheckpointError: checkpoint files exist but none restores (each named with what is
      wrong); `checkpoint` is not a checkpoint prefix, or is damaged (the message names the
      intact ones and the `--checkpoint=` that reads the newest of them).
  """
  directory = os.path.abspath(os.path.expanduser(os.fspath(directory)))
  if checkpoint is not None:
    checkpoint = os.path.abspath(os.path.expanduser(os.fspath(checkpoint)))
    if os.path.isdir(checkpoint):
      directory, checkpoint = checkpoint, None
  if checkpoint is not None:
    return _choose_named(directory, checkpoint)
  found = on_disk(directory)
  if not found:
    raise NoCheckpointError(
      f"no checkpoint in {directory}: the run has not saved one yet (train it first, or "
      "longer: a checkpoint is written every --checkpoint_every_steps and at the end)"
    )
  state, index_problem = read_index(directory)
  damaged, writing, chosen = {}, None, None
  for f in reversed(found):
    problem = verify(f.prefix)
    if problem is None:
      chosen = f
      break
    if writer is not None and f is found[-1]:
      writing = f.prefix
    else:
      damaged[f.prefix] = problem
  if chosen is None:
    details = "; ".join(f"{short_name(p)}: {why}" for p, why in damaged.items())
    if writing and not damaged:
      raise NoCheckpointError(
        f"no complete checkpoint in {directory} yet: the training run in progress is writing "
        f"its first one, {short_name(writing)} (PID {(writer or {}).get('pid')} on "
        f"{(writer or {}).get('host')}{_since(writer or {})}); try again when it is done. "
        f"{_STALE_LOCK_HINT}"
      )
    raise CheckpointError(
      f"{directory} holds checkpoint files but none of them restores ({details}). Nothing "
      "was deleted or overwritten. Restore a copy of the checkpoints, or use a new --workdir "
      "to start over."
    )
  return Choice(
    prefix=chosen.prefix,
    step=chosen.step,
    directory=directory,
    found=found,
    damaged=damaged,
    writing=writing,
    writer=writer,
    index_problem=index_problem,
    index_latest=None if state is None else _index_latest(state, directory),
  )


def _choose_named(directory, prefix):
  scope = on_disk(os.path.dirname(prefix))
  match = [f for f in scope if f.prefix == prefix]
  if not match:
    raise CheckpointError(
      f"--checkpoint={prefix} is not a checkpoint prefix (no {short_name(prefix)}.index); "
      f"give e.g. {os.path.join(directory, CHECKPOINT_NAME)}-1000. Checkpoints in "
      f"{os.path.dirname(prefix)}: {_listing(scope, {})}"
    )
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
  return Choice(
    prefix=prefix,
    step=match[0].step,
    directory=os.path.dirname(prefix),
    found=scope,
    explicit=True,
  )


def choose_for_training(directory, config, run_id=None, log=logging.warning):
  """The checkpoint a training run continues from, or None to start at step 0.

  The choice is `choose`'s (the newest checkpoint that restores), with its warnings. Then,
  as the only process writing in the workdir (it holds the lock): newer damaged checkpoints
  are moved to DIRECTORY/damaged/ (so that the run does not overwrite them), TF's leftover
  `ckpt-STEP_temp/` folders are removed, and an index that was missing, empty, garbled, or
  did not name the chosen checkpoint is rebuilt (`rebuild_index`: no checkpoint found here is
  ever deleted by the run). Returns None only when there is no checkpoint file at all.

  Raises:
    CheckpointError: checkpoint files exist but none is intact (nothing is moved then), the
      newest intact one belongs to another method, architecture or run, or a damaged one
      cannot be moved aside (a read-only folder).
  """
  directory = os.path.abspath(directory)
  for path in remove_temporary_folders(directory):
    logging.info("Removed %s, left by a checkpoint save that failed", path)
  try:
    choice = choose(directory)
  except NoCheckpointError:
    return None
  problem = mismatch(read_run_info(choice.prefix), config, run_id)
  if problem:
    raise CheckpointError(
      f"{choice.prefix} is not a checkpoint of this run: {problem}. Nothing was changed. "
      "Use the --workdir of that run, or move the checkpoint away."
    )
  moved = {prefix: _move_aside(directory, prefix) for prefix in choice.damaged}
  for note in choice.notes("resuming from"):
    log(note)
  for prefix, target in moved.items():
    log(f"Moved the files of the damaged {short_name(prefix)} to {target} (nothing deleted).")
  if choice.index_problem or choice.damaged or choice.index_latest != choice.prefix:
    rebuild_index(directory, choice.prefix)
    if choice.index_problem:
      log(
        f"Rebuilt the index from {short_name(choice.prefix)}. No checkpoint will be deleted "
        "by this run except those it writes itself."
      )
  return choice.prefix


def choose_for_reading(directory, checkpoint=None, log=logging.warning, writer=None):
  """The checkpoint evaluation, export and `load` read: `choose`'s, its warnings passed to
  `log` (nothing on disk is changed).

  Args:
    directory: WORKDIR/checkpoints.
    checkpoint: optional checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-1000) or directory.
    writer: the live training run's lock owner, if one trains in the workdir now.

  Returns:
    the absolute prefix, verified intact.

  Raises:
    NoCheckpointError, CheckpointError: see `choose`.
  """
  choice = choose(directory, checkpoint, writer=writer)
  for note in choice.notes("reading"):
    log(note)
  return choice.prefix
