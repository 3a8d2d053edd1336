"""Serving an exported model: the signatures an export holds and a client that calls them.

* `as_introvae_tf.serving.signatures`: `ServingFunctions`, the computations an export serves
  (generate, decode, encode, reconstruct, generate_png), and the seed rule `seeds_to_z` they
  share with clients. `as_introvae_tf.export_lib` restores a run and writes them (SavedModel,
  ONNX); `export/` holds the serving setup (README, docker-compose, models.config).
* `as_introvae_tf.serving.client` (`python -m as_introvae_tf.serving.client`): asks TF Serving
  for samples over REST or gRPC, checks the answer and writes a PNG grid. Over REST it imports
  neither TensorFlow nor the training code (`--grpc` needs `tensorflow-serving-api`, which
  imports TensorFlow); importing this package imports nothing else. Its request bodies,
  answers and transports are `as_introvae_tf.serving.protocol`.
"""

__all__ = ["MAX_BATCH"]

MAX_BATCH = 256
"""Default `--max_batch` of the exporter and the client: the most examples (seeds, codes,
images) one serving call accepts."""
