"""Node health from the control plane: one package, three parts.

- ``probe``: run the node health checks (``python -m gpufleet.lifecycle.health``) on a node and read
  back its report (this host, SSM Run Command, ...);
- ``gate``: new or suspect nodes serve nothing until their checks pass (the rebalancer's gate too);
- ``replace``: ``gpufleet health [--replace]``: check every node of the fleet, stop the work on the
  failed ones and replace them from the same reservation.
"""
