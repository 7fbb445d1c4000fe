"""Training machinery shared by every registered network: model_fn, schedule, hooks, runs."""
