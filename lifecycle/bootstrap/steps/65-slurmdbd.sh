#!/bin/bash
# Slurm accounting on the head node: MariaDB there, slurmdbd on it, the cluster registered.
# Runs before 70-join starts slurmctld, so the controller finds slurmdbd up. The database user is
# the SlurmUser, authenticated by MariaDB's unix_socket plugin: no password exists anywhere.
# Parameters: GPUFLEET_ROLE; reads the bundle's slurm/slurmdbd.conf and slurm/slurm.conf.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ "${GPUFLEET_ROLE:-}" != slurm-head ]; then
    log "role ${GPUFLEET_ROLE:-none} runs no slurmdbd: skipped"
    exit 0
fi
bundle_slurm="$GPUFLEET_LIFECYCLE_DIR/slurm"
if [ ! -f "$bundle_slurm/slurmdbd.conf" ]; then
    log "the bundle has no slurm/slurmdbd.conf: accounting is off"
    exit 0
fi
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for program in mariadbd mariadb slurmdbd sacctmgr; do
    command -v "$program" > /dev/null || missing+=("$program")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "the image lacks ${missing[*]}: bake mariadb-server and slurmdbd into the head's image"
    exit 1
fi

conf_value() {
    sed -n "s/^$1=//p" "$2" | head -n 1
}
slurm_user=$(conf_value SlurmUser "$bundle_slurm/slurmdbd.conf")
database=$(conf_value StorageLoc "$bundle_slurm/slurmdbd.conf")
cluster=$(conf_value ClusterName "$bundle_slurm/slurm.conf")
require_var slurm_user database cluster

# Slurm's recommended InnoDB settings for slurmdbd (its log warns without them).
write_file /etc/mysql/mariadb.conf.d/60-gpufleet-slurmdbd.cnf 0644 <<CNF
[mysqld]
innodb_buffer_pool_size=1024M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
bind-address=127.0.0.1
CNF
systemctl enable --now mariadb.service
retry "${GPUFLEET_RETRY_ATTEMPTS:-10}" "${GPUFLEET_RETRY_DELAY_S:-2}" mariadb -e "SELECT 1" > /dev/null
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS \`$database\`;
CREATE USER IF NOT EXISTS '$slurm_user'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL ON \`$database\`.* TO '$slurm_user'@'localhost';
SQL
log "database $database ready for $slurm_user (unix_socket authentication)"

# slurmdbd refuses a slurmdbd.conf that anyone but the SlurmUser can read.
install -D -m 0600 "$bundle_slurm/slurmdbd.conf" "${GPUFLEET_ROOT:-}/etc/slurm/slurmdbd.conf"
install -D -m 0644 "$bundle_slurm/slurm.conf" "${GPUFLEET_ROOT:-}/etc/slurm/slurm.conf"
mkdir -p "${GPUFLEET_ROOT:-}/var/log/slurm" "${GPUFLEET_ROOT:-}/run/slurm"
chown "$slurm_user:$slurm_user" "${GPUFLEET_ROOT:-}/etc/slurm/slurmdbd.conf" "${GPUFLEET_ROOT:-}/var/log/slurm" \
    || { log "no user $slurm_user: slurmdbd would refuse its configuration"; exit 1; }
systemctl enable --now slurmdbd.service
retry "${GPUFLEET_RETRY_ATTEMPTS:-10}" "${GPUFLEET_RETRY_DELAY_S:-2}" sacctmgr -n list cluster > /dev/null
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$cluster"; then
    sacctmgr -i add cluster "$cluster"
fi
log "slurmdbd started; cluster $cluster registered"
