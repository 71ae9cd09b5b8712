"""Zeta zeros and the spacing data built from them: Riemann-Siegel Z(t), zeros by Gram/Rosser
blocks, zero tables on disk, unfolded spacings, RMT references, prime gaps, the data report."""
