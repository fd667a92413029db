"""Reference training jobs that run on the fleet through lifecycle.runtime."""
