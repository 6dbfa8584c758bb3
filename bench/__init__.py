"""Side-by-side benchmarks (`make bench`): each target is a ratio measured in one run."""
