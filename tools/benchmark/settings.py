"""What the benchmark times: the methods, workloads and their schedules, the steps of the
interleaved comparison, and the labels and ratios of its report (see the package doc)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The repository root: the jobs run there (the configs' paths are relative to it)."""

METHODS = ("vae", "introvae", "soft_introvae", "as_introvae")
WORKLOADS = {
  "2d": dict(
    config="8gaussians",
    dataset="8gaussians",
    batch_size=512,
    z_dim=2,
    num_hidden=256,
    num_layers=3,
    label="2-D MLP 3x256, z 2",
  ),
  "fashion_mnist": dict(
    config="fashion_mnist",
    dataset="fashion_mnist",
    batch_size=128,
    z_dim=32,
    filters=(64, 128),
    image_size=28,
    channels=1,
    label="Fashion-MNIST (64,128), z 32",
  ),
  "cifar10": dict(
    config="cifar10",
    dataset="cifar10",
    batch_size=64,
    z_dim=128,
    filters=(64, 128, 256),
    image_size=32,
    channels=3,
    label="CIFAR-10 (64,128,256), z 128",
  ),
}
# (warm-up windows, timed windows, steps per window, pipeline batches)
SCHEDULE = {
  "full": {"2d": (4, 7, 50, 300), "image": (1, 3, 3, 30), "replicas": (2, 5, 30, 0)},
  "quick": {"2d": (1, 3, 20, 100), "image": (1, 1, 1, 10), "replicas": (1, 2, 10, 0)},
}
# The interleaved comparison: per workload, the steps timed window by window in one process.
COMPARE_STEPS = {
  "2d": (
    "project:soft_introvae",
    "plain:soft_introvae",
    "project:as_introvae",
    "plain:as_introvae",
  ),
  "cifar10": ("project:soft_introvae", "plain:soft_introvae"),
}
# (warm-up rounds, timed rounds, steps per window)
COMPARE_SCHEDULE = {
  "full": {"2d": (3, 10, 50), "cifar10": (1, 3, 3)},
  "quick": {"2d": (1, 5, 20), "cifar10": (1, 2, 1)},
}
# Extra 2-D steps of the comparison (--compare_extra): label -> config changes.
EXTRA_STEPS = {
  "project:as_introvae:xla_off": dict(as_distance_xla="off"),
  "project:soft_introvae:unfused": dict(fuse_passes="off"),
  "project:as_introvae:unfused": dict(fuse_passes="off"),
}
THREAD_STEPS = ("project:soft_introvae", "plain:soft_introvae")
PRECISIONS = ("none", "mixed_bfloat16", "mixed_float16")
VARIANTS = (
  "no_trackers",
  "no_nan_check",
  "no_grad_norms",
  "closed_form_kl",
  "lean",
  "spe10",
  "jit",
)
MATMUL_N = 1024
RESULT_PREFIX = "BENCHMARK_RESULT "


TINY_SIZES = {
  "2d": dict(batch_size=32, num_hidden=16, num_layers=1),
  "cifar10": dict(batch_size=4, image_size=16, filters=(8, 16), z_dim=8),
}
"""`--tiny` (tests only): sizes at which a comparison job runs in seconds; its numbers mean
nothing."""


STEP_NAMES = {
  "project:soft_introvae": "project S-IntroVAE",
  "plain:soft_introvae": "plain S-IntroVAE",
  "project:as_introvae": "project AS-IntroVAE",
  "plain:as_introvae": "plain AS-IntroVAE",
  "project:as_introvae:xla_off": "project AS-IntroVAE, --as_distance_xla=off",
  "project:soft_introvae:unfused": "project S-IntroVAE, --fuse_passes=off",
  "project:as_introvae:unfused": "project AS-IntroVAE, --fuse_passes=off",
}
# (workload, A, B, what the ratio is, target): speed A / speed B = time B / time A.
COMPARE_RATIOS = (
  (
    "2d",
    "project:soft_introvae",
    "plain:soft_introvae",
    "2-D S-IntroVAE, project / plain (speed)",
    ">= 1.1",
  ),
  (
    "2d",
    "project:as_introvae",
    "plain:as_introvae",
    "2-D AS-IntroVAE, project / plain (speed)",
    "",
  ),
  (
    "cifar10",
    "project:soft_introvae",
    "plain:soft_introvae",
    "CIFAR-10 S-IntroVAE, project / plain (speed)",
    ">= 1.0",
  ),
  (
    "2d",
    "project:as_introvae",
    "project:as_introvae:xla_off",
    "2-D AS-IntroVAE, project, --as_distance_xla auto / off (speed)",
    "",
  ),
  (
    "2d",
    "project:soft_introvae",
    "project:soft_introvae:unfused",
    "2-D S-IntroVAE, project, --fuse_passes auto / off (speed)",
    "",
  ),
  (
    "2d",
    "project:as_introvae",
    "project:as_introvae:unfused",
    "2-D AS-IntroVAE, project, --fuse_passes auto / off (speed)",
    "",
  ),
)
# (workload, AS step, S step, what, target): time AS / time S.
AS_OVER_S = (
  (
    "2d",
    "project:as_introvae",
    "project:soft_introvae",
    "2-D AS-IntroVAE / S-IntroVAE, project (time)",
    "<= 1.15",
  ),
  (
    "2d",
    "plain:as_introvae",
    "plain:soft_introvae",
    "2-D AS-IntroVAE / S-IntroVAE, plain (time)",
    "",
  ),
)


def thread_key(job):
  """ "INTERxINTRA" of a job's thread setting (0 = TF default)."""
  return f"{job.get('inter', 0)}x{job.get('intra', 0)}"
