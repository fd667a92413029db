"""Reference training jobs that run on the fleet through gpufleet.lifecycle.runtime."""
