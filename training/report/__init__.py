"""The human report of a trained model: a few PNG figures and an ``index.html`` that shows them.

:func:`write_report` writes into the bundle's ``report/`` folder:

- ``training_curves.png``: every ``*loss`` series of the training history by epoch (train and
  validation loss, and e.g. an adversarial model's discriminator loss), with the KL weight
  ``beta`` on a second axis when the history has it. A validation loss that turns up while the
  training loss goes down is over-fitting; a flat one, a model that stopped learning.
- ``score_distribution.png``: one histogram per score of the held-out normal (validation) rows,
  the primary score first, with the labelled anomalies overlaid when given and the calibrated
  threshold (the score at which the p-value falls below alpha) as a vertical line on the
  primary score. Log x when the scores span more than three decades. Normal rows left of the
  line and anomalies right of it is what a good model looks like.
- ``roc_curve.png`` (only with labelled anomalies): true- against false-positive rate of each
  score over validation rows plus anomalies, with the area under each curve in the legend, and
  alpha marked on the false-positive axis.
- ``latent_space.png``: the posterior means of the validation rows (blue) and anomalies (red)
  in two dimensions: the coordinates themselves when the latent space has two, the first two
  principal components of the validation latents (numpy SVD) when it has more, and the single
  coordinate against zero when it has one.
- ``synthetic_vs_training.png`` (by :func:`write_synthetic_comparison`, after training): the
  columns where rows sampled from the model differ most from the training rows, with a table
  of every column's distance in ``index.html``.
- ``index.html``: one self-contained page (inline CSS, relative image links) with the title,
  a summary table and the figures with captions.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``: no display is needed, no global figure is left open, and the caller's pyplot
backend is left alone.

The modules: ``page`` (``write_report`` and ``index.html``), ``figures``, ``synthetic``
(``write_synthetic_comparison``) and ``values`` (helpers of the other three).
"""

from training.report.page import CURVES_FILE, INDEX_FILE, LATENT_FILE, ROC_FILE, SCORES_FILE, write_report
from training.report.synthetic import SYNTHETIC_FILE, write_synthetic_comparison

__all__ = [
    "CURVES_FILE",
    "INDEX_FILE",
    "LATENT_FILE",
    "ROC_FILE",
    "SCORES_FILE",
    "SYNTHETIC_FILE",
    "write_report",
    "write_synthetic_comparison",
]
