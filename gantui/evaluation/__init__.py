"""Sample quality measured with a small MNIST classifier that ships with the package (torch only)."""
