#!/bin/bash
# gpufleet node user data, rendered by lifecycle/bootstrap/user_data.py.
# Fetches the lifecycle bundle from S3 and runs its bootstrap; see lifecycle/bootstrap/on_create.sh.
set -euo pipefail
exec > >(tee -a /var/log/gpufleet-user-data.log) 2>&1

bundle=s3://training-lifecycle-bucket/lifecycle/0123456789ab/
# The bundle is the Python package gpufleet.lifecycle: its scripts run it with PYTHONPATH=/opt/gpufleet.
lifecycle=/opt/gpufleet/gpufleet/lifecycle
install -d -m 0755 "$lifecycle" /etc/gpufleet

attempt=1
until aws s3 cp --recursive --only-show-errors --region us-east-1 "$bundle" "$lifecycle/"; do
    if [ "$attempt" -ge 10 ]; then
        echo "gpufleet: could not download $bundle after $attempt attempts" >&2
        exit 1
    fi
    sleep $((attempt * 5))
    attempt=$((attempt + 1))
done

install -m 0644 "$lifecycle/"nodes/train-h100.env /etc/gpufleet/node.env
exec bash "$lifecycle/bootstrap/on_create.sh" /etc/gpufleet/node.env
