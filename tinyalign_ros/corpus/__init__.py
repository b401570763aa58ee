"""Corpus making for the base projector and the benchmark (not used by the nodes at run time):
synthetic speech (synth), real recordings from registry packages (corpora), and the shipped base
projector's recipe (recipe)."""
