"""Neural-network Gaussian processes for the log volume log P(f) of paper 002 (Zhang et al., appendix A).

``kernels``: NNGP kernels (arc-cosine recursion, Monte-Carlo empirical kernel). ``ep``: expectation propagation for
the Heaviside likelihood, returning log P(f). ``importance``: an unbiased importance-sampling check of log P(f).
``sampling``: direct sampling of P(f) over random initialisations of an FCN (the n = 7 Boolean system).
"""
