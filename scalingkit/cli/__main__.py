"""`python -m scalingkit.cli ...` runs the command line."""
from scalingkit.cli.main import main

main()
