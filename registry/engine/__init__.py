"""Training machinery shared by every registered network: graphs, the training loop, hooks, runs."""
