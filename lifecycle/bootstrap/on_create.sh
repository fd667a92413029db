#!/bin/bash
# Node bootstrap entry point, run once per boot by user data (and safe to run again).
#
#   on_create.sh [NODE_ENV]      NODE_ENV defaults to /etc/gpufleet/node.env
#
# Runs steps/NN-*.sh in order. A step that succeeds leaves a marker in the state directory and is
# skipped on the next run; a failing step stops the bootstrap (the node never joins) and is
# retried on the next run. The last marker, "done", means the node is configured and joined.
# Every line goes to the bootstrap log with a timestamp and the step's name.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
env_file=${1:-/etc/gpufleet/node.env}
if [ ! -r "$env_file" ]; then
    echo "on_create: cannot read $env_file" >&2
    exit 2
fi
set -a
# shellcheck source=/dev/null
. "$env_file"
set +a

export GPUFLEET_ROOT=${GPUFLEET_ROOT:-}
export GPUFLEET_LIFECYCLE_DIR=${GPUFLEET_LIFECYCLE_DIR:-$(dirname "$here")}
# The bundle is <install dir>/gpufleet/lifecycle: PYTHONPATH=<install dir> imports it as gpufleet.lifecycle.
case "$GPUFLEET_LIFECYCLE_DIR" in
    */gpufleet/lifecycle) ;;
    *) echo "on_create: the bundle must be installed as <dir>/gpufleet/lifecycle, not $GPUFLEET_LIFECYCLE_DIR" >&2
       exit 2 ;;
esac
export GPUFLEET_INSTALL_DIR=${GPUFLEET_INSTALL_DIR:-$(dirname "$(dirname "$GPUFLEET_LIFECYCLE_DIR")")}
# aws s3 cp keeps no file modes, and slurmd executes the Prolog, Epilog and HealthCheckProgram itself.
find "$GPUFLEET_LIFECYCLE_DIR" -name '*.sh' -type f -exec chmod 0755 {} +
export GPUFLEET_STATE_DIR=${GPUFLEET_STATE_DIR:-$GPUFLEET_ROOT/var/lib/gpufleet/bootstrap}
export GPUFLEET_LOG=${GPUFLEET_LOG:-$GPUFLEET_ROOT/var/log/gpufleet/bootstrap.log}
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

mkdir -p "$GPUFLEET_STATE_DIR" "$(dirname "$GPUFLEET_LOG")"

say() {
    log "$@" 2>&1 | tee -a "$GPUFLEET_LOG" >&2
}

# One bootstrap at a time: user data and an operator re-running it must not interleave.
exec 9> "$GPUFLEET_STATE_DIR/.lock"
if ! flock -w 600 9; then
    say "another bootstrap holds $GPUFLEET_STATE_DIR/.lock"
    exit 1
fi

if [ -f "$GPUFLEET_STATE_DIR/done" ]; then
    say "already bootstrapped ($GPUFLEET_STATE_DIR/done); nothing to do"
    exit 0
fi

say "bootstrap start: role=${GPUFLEET_ROLE:-?} group=${GPUFLEET_NODE_GROUP:-?} bundle=${GPUFLEET_BUNDLE_VERSION:-?}"
for step in "$here"/steps/[0-9][0-9]-*.sh; do
    name=$(basename "$step" .sh)
    if [ -f "$GPUFLEET_STATE_DIR/$name.done" ]; then
        say "skip $name: done before"
        continue
    fi
    say "start $name"
    started=$(date +%s)
    if GPUFLEET_STEP=$name bash "$step" >> "$GPUFLEET_LOG" 2>&1; then
        touch "$GPUFLEET_STATE_DIR/$name.done"
        say "done $name in $(( $(date +%s) - started ))s"
    else
        rc=$?
        say "FAILED $name (exit $rc) after $(( $(date +%s) - started ))s; see $GPUFLEET_LOG"
        exit "$rc"
    fi
done
date -u +%Y-%m-%dT%H:%M:%SZ > "$GPUFLEET_STATE_DIR/done"
say "bootstrap complete"
