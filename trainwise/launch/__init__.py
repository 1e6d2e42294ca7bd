"""`trainwise launch`: train on N processes per node (and M nodes) under torchrun."""
