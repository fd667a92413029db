#!/bin/bash
# Munge key for Slurm nodes, from Secrets Manager (encrypted under the cluster's CMK).
# The head node creates the key on its first boot if the secret has none; every other node
# waits for it. The key never passes through Pulumi state.
# Parameters: GPUFLEET_ROLE, GPUFLEET_MUNGE_SECRET_ID, GPUFLEET_REGION.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

case "${GPUFLEET_ROLE:-}" in
    slurm-head | slurm-compute | slurm-login) ;;
    *) log "role ${GPUFLEET_ROLE:-none} uses no munge: skipped"; exit 0 ;;
esac
require_var GPUFLEET_MUNGE_SECRET_ID GPUFLEET_REGION
key_file="${GPUFLEET_ROOT:-}/etc/munge/munge.key"

fetch_key() {
    aws secretsmanager get-secret-value --region "$GPUFLEET_REGION" \
        --secret-id "$GPUFLEET_MUNGE_SECRET_ID" --query SecretString --output text 2>/dev/null
}

if ! key_b64=$(fetch_key) || [ -z "$key_b64" ]; then
    if [ "$GPUFLEET_ROLE" = slurm-head ]; then
        log "secret $GPUFLEET_MUNGE_SECRET_ID has no key yet: creating one"
        new_key=$(head -c 1024 /dev/urandom | base64 -w0)
        aws secretsmanager put-secret-value --region "$GPUFLEET_REGION" \
            --secret-id "$GPUFLEET_MUNGE_SECRET_ID" --secret-string "$new_key" > /dev/null
    fi
    # Nodes can boot before the head node has stored the key.
    key_b64=$(retry "${GPUFLEET_RETRY_ATTEMPTS:-10}" "${GPUFLEET_RETRY_DELAY_S:-5}" fetch_key)
fi

mkdir -p "$(dirname "$key_file")"
umask 077
printf '%s' "$key_b64" | base64 -d > "$key_file.tmp"
mv -f "$key_file.tmp" "$key_file"
chmod 0400 "$key_file"
chown munge:munge "$key_file" 2>/dev/null || log "no munge user yet: key left owned by root"
systemctl enable --now munge.service
log "munge key installed from $GPUFLEET_MUNGE_SECRET_ID"
