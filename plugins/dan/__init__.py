"""dan plugin (under construction)."""
