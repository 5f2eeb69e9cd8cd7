"""Evaluation against ground truth: uses physics and io only.

- :mod:`hetacumn.metrics.fsc`: Fourier shell correlation, resolution at a threshold, AU-FSC.
- :mod:`hetacumn.metrics.pose`: rotation and translation errors after global (and mirror) alignment.
- :mod:`hetacumn.metrics.latent`: confusion error, adjusted Rand index, Spearman of PC1.

Import the submodules directly; this package imports none of them, so that the FSC does not pull in
scikit-learn.
"""
