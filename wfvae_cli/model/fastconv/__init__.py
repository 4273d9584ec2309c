"""Fast CPU convolutions for WF-VAE inference, apart from the architecture in :mod:`wfvae_cli.model`.

``winograd`` (Winograd F(4x4, 3x3) and F(2x2, 3x3) driver), ``products`` (its transformed-domain GEMMs and the
per-machine backend verdict), ``native`` (building and loading ``kernels/winograd.c``).
"""
