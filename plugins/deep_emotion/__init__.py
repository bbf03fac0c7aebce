"""deep_emotion plugin (under construction)."""
