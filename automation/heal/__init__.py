"""The healer: per node, leave / reboot / replace from its observed faults (the decision table in
``decisions.csv``), within a replacement budget (``decide.py``); ``gpufleet heal`` acts on it."""
