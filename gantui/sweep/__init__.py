"""`gantui sweep`: a search for the recipe that works, on Optuna (space, study, trial, runner)."""
