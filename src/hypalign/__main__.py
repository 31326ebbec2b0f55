"""``python -m hypalign`` (and ``torchrun -m hypalign ...``) runs the command line."""

from hypalign.cli.main import main

main()
