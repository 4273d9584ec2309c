"""`python -m wfvae_cli ...` (also what `torchrun -m wfvae_cli` launches)."""

from wfvae_cli.cli.app import main

if __name__ == "__main__":
    main()
