"""The workdir of a training run: one process at a time (a lock) and the run's record.

Lock (`WorkdirLock`): `WORKDIR/train.lock` holds the host, PID and start time of the process
that trains in the workdir, as JSON, and an exclusive `fcntl.flock` on it for as long as that
process lives. The kernel drops the flock when the process ends in any way (SIGKILL too), so:

  * a second process finds the flock taken and stops at once (`WorkdirLockedError`, naming the
    first one's host, PID and start time);
  * a lock file whose flock is free was left by a process that died: it is taken over, with a
    warning naming that process.

The file is removed on a normal exit. (flock is per host on local disks; on a shared file
system across hosts it depends on the file system's lock support.)

Record (`RunRecord`): `WORKDIR/config.json` keeps the flags the run was *started* with, and
`WORKDIR/config_history.jsonl` one JSON line per training segment that wrote a checkpoint:
`{"segment", "step" (where it started), "time", "host", "pid", "run_id", "changes": [{"flag",
"old", "new"}]}`; `old` is the value the previous segment trained with. config.json is written
just before a segment's first checkpoint and the history line just after it, so a run that
fails before its first step leaves nothing that could refuse the corrected command, and a
segment that saved no checkpoint leaves no line. `effective_config()` is config.json with every change
applied (what the latest segment trained with).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys

from absl import logging

from as_introvae_tf import config as config_lib

LOCK_FILE = "train.lock"
CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
UNRECORDED_FLAGS = ("workdir", "verbose")
"""Flags whose change is not a change of the run (where it lives, how it prints)."""


class WorkdirLockedError(RuntimeError):
  """Another live process trains in this workdir; the message names it."""


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class WorkdirLock:
  """An exclusive lock on a workdir (see the module docstring); a context manager.

  Args:
    workdir: the run directory (must exist).
    name: lock file name (multi-worker runs: one per task).
  """

  def __init__(self, workdir, name=LOCK_FILE):
    self.path = os.path.join(workdir, name)
    self._fd = None

  @staticmethod
  def describe(owner):
    if not owner:
      return "an unknown process"
    return (
      f"PID {owner.get('pid')} on host {owner.get('host')} (started "
      f"{owner.get('started')}: {owner.get('command', '')})"
    ).replace(": )", ")")

  def read_owner(self):
    try:
      with open(self.path, encoding="utf-8") as f:
        return json.loads(f.read() or "null")
    except (OSError, ValueError):
      return None

  def acquire(self):
    """Takes the lock or raises `WorkdirLockedError` at once (never waits)."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES):
          raise
        owner = self.read_owner()
        raise WorkdirLockedError(
          f"--workdir={os.path.dirname(self.path)} is in use by another training process: "
          f"{self.describe(owner)} (lock file {self.path}). Wait for it to finish or stop "
          "it, or use another --workdir. Two processes on one workdir would mix their "
          "checkpoints."
        ) from None
      # The file may have been removed (a release) between open and flock: lock the live one.
      try:
        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    previous = None
    with os.fdopen(os.dup(fd), "r", encoding="utf-8") as f:
      text = f.read()
    if text.strip():
      try:
        previous = json.loads(text)
      except ValueError:
        previous = {"command": text.strip()[:200]}
    if previous:
      alive = (
        previous.get("host") == socket.gethostname()
        and isinstance(previous.get("pid"), int)
        and _pid_alive(previous["pid"])
        and previous["pid"] != os.getpid()
      )
      logging.warning(
        "Taking over the stale lock %s of %s, which %s; its last checkpoint is resumed as usual.",
        self.path,
        self.describe(previous),
        "no longer holds it" if alive else "is no longer running",
      )
    owner = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "started": _now(),
      "command": " ".join(sys.argv)[:500],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
    os.fsync(fd)
    self._fd = fd
    self.owner = owner
    self.previous = previous
    return self

  def release(self):
    """Removes the lock file and drops the lock (idempotent)."""
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except OSError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
    return False


def resolve(path):
  """The absolute form of a user's path (`~` expanded; relative to the working directory).

  Every entry point (training, evaluation, export, `as_introvae_tf.load`) resolves its
  workdir, export directory and checkpoint paths once with this, so a relative path means the
  same as its absolute form everywhere below it.
  """
  return os.path.abspath(os.path.expanduser(os.fspath(path)))


def live_writer(workdir, name=LOCK_FILE):
  """The owner (dict: host, pid, started, command) of a training run that holds `train.lock`
  in `workdir` now, or None.

  Read-only (never takes the lock): the lock file exists and names a live process on this
  host, or a process on another host (which this host cannot check: assumed live). A lock
  file of a dead process on this host (a SIGKILLed run) is no writer.
  """
  owner = WorkdirLock(workdir, name).read_owner()
  if not isinstance(owner, dict):
    return None
  if owner.get("host") != socket.gethostname():
    return owner
  pid = owner.get("pid")
  if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
    return owner
  return None


def _value(value):
  return list(value) if isinstance(value, tuple) else value


@dataclasses.dataclass
class RunRecord:
  """config.json (the original flags) and config_history.jsonl of a workdir.

  original: the `ExperimentConfig` the run was started with, or None (no run recorded yet).
  segments: the history lines (dicts), oldest first.
  """

  workdir: str
  original: config_lib.ExperimentConfig | None
  segments: list

  @classmethod
  def load(cls, workdir):
    """Reads the record of `workdir` (an empty one if it holds no config.json)."""
    original = None
    if os.path.exists(os.path.join(workdir, CONFIG_FILE)):
      original = config_lib.load_config(workdir)
    segments = []
    path = os.path.join(workdir, HISTORY_FILE)
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        for line in f:
          line = line.strip()
          if not line:
            continue
          try:
            segments.append(json.loads(line))
          except ValueError:  # a line cut by a crash mid-write: ignore it
            logging.warning("%s: ignoring an unreadable line %r", path, line[:80])
    return cls(workdir, original, segments)

  @property
  def run_id(self):
    for segment in self.segments:
      if segment.get("run_id"):
        return segment["run_id"]
    return None

  def changes(self):
    """Every recorded change: [{"step", "flag", "old", "new"}], oldest first."""
    return [dict(step=s.get("step"), **c) for s in self.segments for c in s.get("changes", [])]

  def effective_config(self):
    """config.json with every recorded change applied (what the last segment trained with)."""
    if self.original is None:
      return None
    values = self.original.to_dict()
    for change in self.changes():
      if change["flag"] in values:
        values[change["flag"]] = change["new"]
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
    return config_lib.ExperimentConfig(**values)

  def diff(self, config):
    """[{"flag", "old", "new"}] between the last segment's flags and `config`."""
    previous = self.effective_config()
    if previous is None:
      return []
    old, new = previous.to_dict(), config.to_dict()
    return [
      {"flag": k, "old": _value(old[k]), "new": _value(new[k])}
      for k in new
      if k not in UNRECORDED_FLAGS and _value(old.get(k)) != _value(new[k])
    ]

  def commit(self, config, step, run_id):
    """Records a segment: `save_config`, then `append_segment`. Returns the changes."""
    self.save_config(config)
    return self.append_segment(config, step, run_id)

  def save_config(self, config):
    """Writes config.json (atomically) if the run has none yet; training calls it just before
    a segment's first checkpoint."""
    if self.original is None:
      config_lib.save_config(config, self.workdir)
      self.original = config

  def append_segment(self, config, step, run_id):
    """Appends the line of a segment that has just written its first checkpoint: its start
    `step`, run id and the flags that differ from the previous segment's. Returns the changes
    recorded ([{"flag", "old", "new"}]).

    Raises:
      OSError: the file cannot be written.
    """
    changes = self.diff(config)
    segment = {
      "segment": len(self.segments),
      "step": int(step),
      "time": _now(),
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "run_id": run_id,
      "changes": changes,
    }
    with open(os.path.join(self.workdir, HISTORY_FILE), "a", encoding="utf-8") as f:
      f.write(json.dumps(segment, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())
    self.segments.append(segment)
    return changes

  def new_run_id(self, config):
    """The record's run id; for a run without history (new, or from before it) one derived
    from the workdir's absolute path and the flags, so that every worker of a multi-worker
    run (same workdir and flags) stores the same id, and runs in other workdirs differ."""
    if self.run_id:
      return self.run_id
    text = os.path.abspath(self.workdir) + "\n" + config.to_json()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
