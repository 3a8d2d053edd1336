"""How a run setting is declared: `setting(...)` fields of `Section` dataclasses.

`hparams.py` declares every setting with these; `config.py` reads them back (`flag_name`,
`group_of`, the `--help` groups `GROUPS`) to generate the flags, `ExperimentConfig`, its checks
and `--help`. Imports neither TensorFlow nor absl.
"""

from __future__ import annotations

import dataclasses
import typing

GROUPS = (
  "Method and losses",
  "Data",
  "Network",
  "Training",
  "Distribution and precision",
  "Bookkeeping",
)
"""The concerns `--help` groups the flags by, in its order."""


def setting(default, help, *, choices=None, source=None, flag=None, group=None):  # noqa: A002
  """A dataclass field that is a run setting (and a flag).

  Args:
    default: the default (also the flag's; a tuple for a list flag).
    help: the flag's help text.
    choices: the allowed values of an enum setting (checked by `config.validate`).
    source: where the default comes from (shown by `--help`; default "project default").
    flag: the flag's name when it differs from the field's (e.g. AVAE's `alpha` is
      `--avae_alpha`).
    group: the `--help` group when it differs from the section's `GROUP`.
  """
  metadata = {"help": help, "choices": choices, "source": source, "flag": flag, "group": group}
  return dataclasses.field(
    default=default, metadata={k: v for k, v in metadata.items() if v is not None}
  )


class Section:
  """What every section shares: reading its values from a flat config."""

  GROUP: typing.ClassVar[str] = GROUPS[0]

  @classmethod
  def from_config(cls, config):
    """This section with the values of `config` (a `config.ExperimentConfig`)."""
    return cls(**{f.name: getattr(config, flag_name(f)) for f in dataclasses.fields(cls)})


def flag_name(field):
  """The flag (and `ExperimentConfig` field) name of a section's field."""
  return field.metadata.get("flag", field.name)


def group_of(section, field):
  """The `--help` group of a section's field."""
  return field.metadata.get("group", section.GROUP)
