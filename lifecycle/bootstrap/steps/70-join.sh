#!/bin/bash
# Join the cluster: slurmd as a dynamic node, slurmctld + slurmrestd on the head node, or
# on an EKS node nothing (nodeadm starts the kubelet).
# Parameters: GPUFLEET_ROLE; Slurm: GPUFLEET_NODE_GROUP, GPUFLEET_SLURM_NODE_CONF,
#             GPUFLEET_REGION, GPUFLEET_NUM_GPUS (GPU nodes register held: slurm/hold-node.sh); EKS: none
#             (nodeadm joins from the user data's NodeConfig).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

bundle_slurm="$GPUFLEET_LIFECYCLE_DIR/slurm"

instance_id() {
    local token
    token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" http://169.254.169.254/latest/api/token)
    curl -sf -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/instance-id
}

install_slurm_conf() {
    install -D -m 0644 "$bundle_slurm/slurm.conf" "${GPUFLEET_ROOT:-}/etc/slurm/slurm.conf"
    if [ -f "$bundle_slurm/cgroup.conf" ]; then
        install -D -m 0644 "$bundle_slurm/cgroup.conf" "${GPUFLEET_ROOT:-}/etc/slurm/cgroup.conf"
    fi
}

join_slurm_compute() {
    require_var GPUFLEET_NODE_GROUP GPUFLEET_SLURM_NODE_CONF
    local id node
    id=$(retry "${GPUFLEET_RETRY_ATTEMPTS:-5}" "${GPUFLEET_RETRY_DELAY_S:-5}" instance_id)
    # The node name carries the instance id, so drains and scale-in map nodes to instances.
    node="$GPUFLEET_NODE_GROUP-$id"
    install_slurm_conf
    install -D -m 0644 "$bundle_slurm/gres/$GPUFLEET_NODE_GROUP.conf" "${GPUFLEET_ROOT:-}/etc/slurm/gres.conf"
    mkdir -p "${GPUFLEET_ROOT:-}/var/spool/slurmd/$node" "${GPUFLEET_ROOT:-}/var/log/slurm" "${GPUFLEET_ROOT:-}/run/slurm"
    # A dynamic node: slurmd registers itself with its group's feature (its partition) and GRES;
    # on shutdown (scale-in) it removes itself from the controller.
    write_file /etc/systemd/system/slurmd.service.d/gpufleet.conf 0644 <<UNIT
[Unit]
After=munge.service network-online.target remote-fs.target

[Service]
Environment=GPUFLEET_SLURM_NODE=$node
EnvironmentFile=-/etc/gpufleet/nccl.env
ExecStart=
ExecStart=/usr/sbin/slurmd -D -Z -N $node --conf "$GPUFLEET_SLURM_NODE_CONF"
ExecStopPost=-/usr/bin/scontrol delete reservation=gpufleet-unverified-$node
ExecStopPost=-/usr/bin/scontrol delete nodename=$node
UNIT
    # A GPU node registers held (a reservation only the health gate uses) until the control
    # plane's gate has run on it and admits it: no job may land before that.
    if [ "${GPUFLEET_NUM_GPUS:-0}" -gt 0 ]; then
        retry "${GPUFLEET_RETRY_ATTEMPTS:-5}" "${GPUFLEET_RETRY_DELAY_S:-5}" \
            bash "$bundle_slurm/hold-node.sh" "$node" "$GPUFLEET_SLURM_NODE_CONF"
    fi
    systemctl daemon-reload
    systemctl enable --now slurmd.service
    log "slurmd started as dynamic node $node ($GPUFLEET_SLURM_NODE_CONF)"
}

join_slurm_head() {
    install_slurm_conf
    mkdir -p "${GPUFLEET_ROOT:-}/var/spool/slurmctld" "${GPUFLEET_ROOT:-}/var/log/slurm" "${GPUFLEET_ROOT:-}/run/slurm"
    chown -R slurm:slurm "${GPUFLEET_ROOT:-}/var/spool/slurmctld" "${GPUFLEET_ROOT:-}/var/log/slurm" 2>/dev/null \
        || log "no slurm user: state directories left owned by root"
    # slurmrestd refuses to run as root, and without slurmdbd only the controller's API loads:
    # openapi/v0.0.38 in 22.05, v0.0.39 in 23.02, openapi/slurmctld from 23.11. Local auth: unix socket only.
    local plugins=openapi/slurmctld
    case "$(slurmctld -V)" in
        *" 22.05"*) plugins=openapi/v0.0.38 ;;
        *" 23.02"*) plugins=openapi/v0.0.39 ;;
    esac
    write_file /etc/systemd/system/slurmrestd.service.d/gpufleet.conf 0644 <<UNIT
[Service]
DynamicUser=yes
ExecStart=
ExecStart=/usr/sbin/slurmrestd -a rest_auth/local -s $plugins unix:/run/slurmrestd/slurmrestd.socket
RuntimeDirectory=slurmrestd
RuntimeDirectoryMode=0755
UNIT
    systemctl daemon-reload
    systemctl enable --now slurmctld.service slurmrestd.service
    log "slurmctld and slurmrestd started"
}

join_slurm_login() {
    install_slurm_conf
    log "login node: slurm.conf installed, client commands ready"
}

join_eks() {
    # nodeadm joins, not this step: the user data's NodeConfig part (lifecycle/bootstrap/nodeadm.py)
    # registers the kubelet with the gpufleet.io/unverified hold, and nodeadm-run.service starts it
    # after cloud-init's scripts, this bootstrap among them. Whatever happens here, the node stays
    # held until the health gate lifts the taint.
    log "kubelet registers through nodeadm (NodeConfig in the user data), held until the health gate passes"
}

case "${GPUFLEET_ROLE:-}" in
    slurm-compute) join_slurm_compute ;;
    slurm-head) join_slurm_head ;;
    slurm-login) join_slurm_login ;;
    eks-node) join_eks ;;
    *) log "unknown GPUFLEET_ROLE '${GPUFLEET_ROLE:-}' (slurm-compute, slurm-head, slurm-login, eks-node)"; exit 2 ;;
esac
