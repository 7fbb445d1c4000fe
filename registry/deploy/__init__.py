"""Using trained networks: predict, export (SavedModel, frozen graph for ATC), import foreign weights."""
