"""One experiment per paper: `python -m experiments.<name> --help`."""
