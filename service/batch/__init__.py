"""Batch scoring: files in, scored files out (``latentwatch score``).

- :mod:`service.batch.io`: input files (CSV, Parquet, folders, globs) read in record
  batches, and outputs (Parquet or CSV) written under a temporary name, renamed when whole.
- :mod:`service.batch.rows`: the job's options, the output layout, and one record batch
  scored (in this process or on a worker).
- :mod:`service.batch.local`: the job: column checks on every file, scoring each batch with
  :class:`~service.scorer.Scorer`, progress and the summary.
- :mod:`service.batch.dask`: the same job with batches scored on a Dask cluster.
- :mod:`service.batch.spark`: :func:`~service.batch.spark.score_pandas`, a pandas frame scored
  as a file is, for Spark's ``mapInPandas``.
- :mod:`service.batch.payload`: a bundle as bytes for the workers and executors, and the one
  scorer each process opens from it.
- :mod:`service.batch.via`: the same job with rows scored by a running ``latentwatch serve``.
- :mod:`service.batch.pushgateway`: the job's metrics pushed to a Prometheus Pushgateway.
- :mod:`service.batch.cli`: the ``score`` command's arguments and handler.

This package imports nothing when loaded, so building the command line stays cheap and
dask stays optional.
"""
