"""Training jobs: the job file, what it renders to (sbatch script, Kubernetes manifests), submission."""
