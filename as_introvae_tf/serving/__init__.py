"""Clients of an exported model served by TF Serving, apart from the training code.

`as_introvae_tf.serving.client` (`python -m as_introvae_tf.serving.client`): asks TF Serving for
samples over REST or gRPC and writes a PNG grid. It needs neither the training modules nor a
model on this machine; the exporter that writes what it serves is `as_introvae_tf.export_lib`
(`as-introvae-export`), the serving setup `export/` (README, docker-compose, models.config).
Importing this package imports nothing else.
"""
