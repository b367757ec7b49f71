"""The benchmarks, importable as ``hybridrec.bench.<name>`` so ``hybridrec bench <name>`` runs them from an
installed wheel as well as from a checkout; the labelled sets they score ship with them (``datasets/``).
Where results go: :func:`hybridrec.benchmarks.results_dir`."""
