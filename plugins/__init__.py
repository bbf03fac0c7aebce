"""ferzoo's built-in plugins (imported as ``ferzoo_plugins``); each registers through the ``ferzoo`` entry points."""
