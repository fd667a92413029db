#!/bin/bash
# Join the cluster: slurmd as a dynamic node, slurmctld + slurmrestd on the head node, or
# on an EKS node nothing (nodeadm starts the kubelet).
# Parameters: GPUFLEET_ROLE; Slurm: GPUFLEET_NODE_GROUP, GPUFLEET_SLURM_NODE_CONF,
#             GPUFLEET_REGION, GPUFLEET_NUM_GPUS (GPU nodes register held: slurm/hold-node.sh); EKS: none
#             (nodeadm joins from the user data's NodeConfig). Head: GPUFLEET_PROMETHEUS (binary),
#             GPUFLEET_PYTHON (the node venv's python, for the scrape-target timer).
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
    # on shutdown (scale-in, reboot) it removes itself from the controller. A GPU node registers
    # held at every start of slurmd, not only the first: after a reboot (its record deleted on the
    # way down, or kept by a crash) or a restart of slurmd it goes back through the health gate.
    # A hold that cannot be made (slurmctld unreachable) keeps slurmd down, retried.
    local hold_pre=""
    if [ "${GPUFLEET_NUM_GPUS:-0}" -gt 0 ]; then
        hold_pre="ExecStartPre=/bin/bash $bundle_slurm/hold-node.sh $node \"$GPUFLEET_SLURM_NODE_CONF\""
    fi
    write_file /etc/systemd/system/slurmd.service.d/gpufleet.conf 0644 <<UNIT
[Unit]
After=munge.service network-online.target remote-fs.target

[Service]
Environment=GPUFLEET_SLURM_NODE=$node
EnvironmentFile=-/etc/gpufleet/nccl.env
$hold_pre
ExecStart=
ExecStart=/usr/sbin/slurmd -D -Z -N $node --conf "$GPUFLEET_SLURM_NODE_CONF"
Restart=on-failure
RestartSec=15
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
    install_head_collector
}

# The cluster's metrics collector (infra/slurm_collector.py): Prometheus in agent mode scraping
# every node's exporters, found through files a timer rewrites from slurmctld's node list, and
# remote-writing through the head role -> collector role -> platform remote-write role chain.
install_head_collector() {
    local conf_dir=/etc/gpufleet/collector config="$GPUFLEET_LIFECYCLE_DIR/nodes/slurm-head-collector.yml"
    local prometheus=${GPUFLEET_PROMETHEUS:-/usr/local/bin/prometheus}
    local python=${GPUFLEET_PYTHON:-/opt/gpufleet/venv/bin/python3}
    if [ ! -f "$config" ]; then
        log "no collector config in the bundle ($config): metrics are not collected on this cluster"
        return 0
    fi
    install -D -m 0644 "$config" "${GPUFLEET_ROOT:-}$conf_dir/prometheus.yml"
    install -D -m 0644 "$GPUFLEET_LIFECYCLE_DIR/nodes/slurm-head-collector-aws.conf" "${GPUFLEET_ROOT:-}$conf_dir/aws.conf"
    mkdir -p "${GPUFLEET_ROOT:-}$conf_dir/targets"
    write_file /etc/systemd/system/gpufleet-scrape-targets.service 0644 <<UNIT
[Unit]
Description=gpufleet: collector scrape targets from slurmctld's node list
After=slurmctld.service

[Service]
Type=oneshot
Environment=PYTHONPATH=$GPUFLEET_INSTALL_DIR
ExecStart=$python -m gpufleet.lifecycle.slurm.scrape_targets $conf_dir/targets
TimeoutStartSec=60
UNIT
    write_file /etc/systemd/system/gpufleet-scrape-targets.timer 0644 <<UNIT
[Unit]
Description=gpufleet: refresh the collector's scrape targets

[Timer]
OnBootSec=30s
OnUnitActiveSec=30s
AccuracySec=5s

[Install]
WantedBy=timers.target
UNIT
    write_file /etc/systemd/system/gpufleet-collector.service 0644 <<UNIT
[Unit]
Description=gpufleet: Prometheus agent (scrape Slurm nodes, remote write to the platform)
After=network-online.target gpufleet-scrape-targets.service
Wants=network-online.target

[Service]
Environment=AWS_CONFIG_FILE=$conf_dir/aws.conf AWS_SDK_LOAD_CONFIG=1
ExecStart=$prometheus --agent --config.file=$conf_dir/prometheus.yml --storage.agent.path=/var/lib/gpufleet-collector --web.listen-address=127.0.0.1:9090
StateDirectory=gpufleet-collector
DynamicUser=yes
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now gpufleet-scrape-targets.timer gpufleet-collector.service
    log "collector started: $prometheus --agent, targets in $conf_dir/targets"
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
