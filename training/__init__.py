"""latentwatch's offline trainer: data, preprocessing, models, training loop, export.

Everything here may import torch; the serving side (``service``) never imports this package
when a module loads.
"""
