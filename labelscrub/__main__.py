"""`python -m labelscrub` runs the CLI."""

from labelscrub.cli import main

main()
