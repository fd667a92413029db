"""Offline rendering of the stacks under Pulumi's mock runtime (no credentials, no CLI)."""
