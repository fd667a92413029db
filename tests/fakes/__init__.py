"""Stand-ins for the HTTP APIs the code under test calls (the Kubernetes API), one place for all.

Each stands at the wire, behind the real client library, and checks what it receives the way the
real service does, so a request the service would refuse fails here too. AWS is not faked here: it
is moto's server (the sandbox); Slurm is real (tests/slurm_harness.py).
"""
