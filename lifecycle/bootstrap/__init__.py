"""Node bootstrap: the on_create entry point, its steps, and the user data that starts it."""
