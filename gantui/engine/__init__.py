"""The trainer: PyTorch only, no UI. The dashboard and the headless mode consume its events."""
