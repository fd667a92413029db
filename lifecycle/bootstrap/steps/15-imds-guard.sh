#!/bin/bash
# Jobs never reach the instance's credentials: only root may talk to the instance metadata service.
# Slurm runs each job step as its user (slurmd forks and setuid()s), so an owner match on the
# OUTPUT chain rejects every job's connection to IMDS (IPv4 and IPv6) while the boot steps, slurmd,
# the SSM agent and the AWS CLI (all root) keep the node role. The launch template's hop limit 1
# and required tokens keep containers off it too; neither stops a process on the host, this does.
# A unit re-applies the rules at every boot before munge and slurmd start. Without the rules,
# a job could read the node role's credentials, fetch the munge key and forge any user's credential.
# Parameters: GPUFLEET_ROLE.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

case "${GPUFLEET_ROLE:-}" in
    slurm-head | slurm-compute | slurm-login) ;;
    *) log "role ${GPUFLEET_ROLE:-none} runs no Slurm jobs: skipped"; exit 0 ;;
esac

guard=/usr/local/sbin/gpufleet-imds-guard
write_file "$guard" 0755 <<'GUARD'
#!/bin/bash
# Reject non-root connections to the instance metadata service (gpufleet 15-imds-guard.sh).
set -euo pipefail
rule() {
    local tool=$1 address=$2
    local match=(-d "$address" -p tcp --dport 80 -m owner ! --uid-owner 0 -j REJECT)
    "$tool" -w -C OUTPUT "${match[@]}" 2>/dev/null || "$tool" -w -I OUTPUT 1 "${match[@]}"
}
rule iptables 169.254.169.254/32
rule ip6tables fd00:ec2::254/128
GUARD

write_file /etc/systemd/system/gpufleet-imds-guard.service 0644 <<UNIT
[Unit]
Description=Only root reaches the instance metadata service (gpufleet)
DefaultDependencies=no
After=network-pre.target
Before=network.target munge.service slurmd.service slurmctld.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$guard

[Install]
WantedBy=multi-user.target
UNIT

"${GPUFLEET_ROOT:-}$guard"
systemctl enable gpufleet-imds-guard.service
log "instance metadata service: root only (iptables and ip6tables owner match)"
