"""`python -m kdcli` runs the command-line tool."""

from kdcli.cli import main

main()
